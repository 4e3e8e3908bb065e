//! `pspnet evaluate`, `pspnet score` and `pspnet merge`: mIoU, mAcc and aAcc
//! over a dataset split, whole or in shards, from the network or from the
//! predictions an evaluation saved.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use image::DynamicImage;
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array2;
use pspnet::render::{color_image, labels_image, model_class_names, model_palette, numbered_class_names};
use pspnet::{Evaluation, prediction_path};
use pspnet_data::{Dataset, Sample};
use pspnet_model::{ConfusionMatrix, Scores, Segmenter};
use serde_json::{Value, json};

use super::confusion::{confusion_csv, confusion_image};
use super::outputs::{Staged, png};
use super::segment::read_classes;
use super::{DataArgs, ModelArgs, OverrideArgs, ProtocolArgs};

/// Shard `index` of `count`: images at positions index, index + count, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shard {
    index: usize,
    count: usize,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parse = |v: &str| v.trim().parse::<usize>().map_err(|_| format!("{s:?} is not I/N"));
        let (i, n) = s.split_once('/').ok_or_else(|| format!("{s:?} is not I/N"))?;
        let (index, count) = (parse(i)?, parse(n)?);
        if count == 0 || index >= count {
            return Err(format!("shard {index}/{count}: I must be in 0..N"));
        }
        Ok(Shard { index, count })
    }
}

#[derive(Debug, Args)]
pub(crate) struct EvaluateArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Custom data: the class count, or a file of names as `segment --classes` reads it (default: the model's).
    #[arg(long, value_name = "N|FILE")]
    classes: Option<String>,
    #[command(flatten)]
    model: ModelArgs,
    /// Also write the results as JSON (percent, full precision).
    #[arg(long, value_name = "OUT.json")]
    json: Option<PathBuf>,
    /// Save each image's predictions as DIR/STEM.labels.png and DIR/STEM.color.png (STEM: the image's file stem),
    /// and the confusion matrix as DIR/confusion.csv (raw counts) and DIR/confusion.png (rows normalised).
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    #[command(flatten)]
    format: super::FormatArgs,
    /// Evaluate only shard I of N (images at positions I, I+N, ...); requires --partial.
    #[arg(long, value_name = "I/N", requires = "partial")]
    shard: Option<Shard>,
    /// Where a shard writes its confusion matrix, for `pspnet merge`.
    #[arg(long, value_name = "FILE", requires = "shard")]
    partial: Option<PathBuf>,
    #[command(flatten)]
    protocol: ProtocolArgs,
    #[command(flatten)]
    overrides: OverrideArgs,
    /// Refuse images with more pixels than this (checked from the header, before decoding).
    #[arg(long, default_value_t = 100_000_000)]
    max_pixels: u64,
}

#[derive(Debug, Args)]
pub(crate) struct ScoreArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The folder `evaluate --out-dir` wrote: STEM.labels.png for each image.
    #[arg(long, value_name = "DIR")]
    pred_dir: PathBuf,
    /// Custom data: the class count, or a file of names as `segment --classes` reads it.
    #[arg(long, value_name = "N|FILE")]
    classes: Option<String>,
    /// Also write the results as JSON, as `evaluate --json` does.
    #[arg(long, value_name = "OUT.json")]
    json: Option<PathBuf>,
    /// Refuse label maps with more pixels than this (checked from the header, before decoding).
    #[arg(long, default_value_t = 100_000_000)]
    max_pixels: u64,
}

#[derive(Debug, Args)]
pub(crate) struct MergeArgs {
    /// Partial results written by `evaluate --shard I/N --partial FILE`.
    #[arg(required = true)]
    partials: Vec<PathBuf>,
    /// Also write the results as JSON.
    #[arg(long, value_name = "OUT.json")]
    json: Option<PathBuf>,
}

pub(crate) fn run(args: EvaluateArgs) -> Result<ExitCode> {
    let source = args.data.source()?;
    let mut samples = source.samples()?;
    if let Some(shard) = args.shard {
        samples = samples.into_iter().skip(shard.index).step_by(shard.count).collect();
    }
    let model = args.model.load(&args.overrides.overrides())?;
    let names = class_names(args.classes.as_deref(), source.dataset(), Some(&model))?;
    if model.spec.classes != names.len() {
        bail!("the model has {} classes, {} has {}", model.spec.classes, source.name(), names.len());
    }
    let protocol = args.protocol.protocol(source.dataset().map(|d| d.name()))?;
    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create the output folder", dir.display()))?;
        args.format.prepare(dir, names.len())?;
    } else if args.format.format.is_some() {
        bail!("--format writes into --out-dir DIR: give one");
    }
    let palette = model_palette(&model.spec);
    let progress = progress_bar(samples.len());
    let started = Instant::now();
    let mut unsaved = Vec::new();
    let Evaluation { matrix, failures } =
        pspnet::evaluate(&model, &samples, source.rule(), &protocol, args.max_pixels, |sample, predicted| {
            match (predicted, &args.out_dir) {
                (Ok(predicted), Some(dir)) => {
                    if let Err(err) = save_prediction(dir, sample, predicted, &palette, names.len(), &args.format) {
                        progress.suspend(|| eprintln!("error: {}", super::report(&err)));
                        unsaved.push(sample.image.clone());
                    }
                }
                (Ok(_), None) => {}
                (Err(err), _) => progress.suspend(|| eprintln!("error: {err}")),
            }
            progress.inc(1);
        });
    progress.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("{} images in {seconds:.1} s ({:.2} s per image)", samples.len(), seconds / samples.len().max(1) as f64);
    let failed: Vec<_> = failures.iter().map(|(sample, _)| sample.image.clone()).chain(unsaved).collect();
    if !failed.is_empty() {
        eprintln!("{} of {} images failed; no results written:", failed.len(), samples.len());
        failed.iter().for_each(|image| eprintln!("  {}", image.display()));
        return Ok(ExitCode::FAILURE);
    }
    let split = source.split();
    if let (Some(shard), Some(partial)) = (args.shard, &args.partial) {
        let value = json!({
            "dataset": source.name(),
            "split": split,
            "shard": format!("{}/{}", shard.index, shard.count),
            "images": samples.len(),
            "classes": names,
            "confusion": matrix.counts(),
        });
        write_json(partial, &value)?;
        eprintln!("partial confusion matrix written to {}", partial.display());
    }
    if let Some(dir) = &args.out_dir {
        let mut staged = Staged::default();
        let csv = confusion_csv(&names, &matrix);
        staged.add(dir.join("confusion.csv"), |w| Ok(w.write_all(csv.as_bytes())?))?;
        staged.add(dir.join("confusion.png"), png(DynamicImage::ImageRgb8(confusion_image(&names, &matrix))))?;
        staged.commit()?;
    }
    report(source.name(), &split, samples.len(), &names, &matrix, args.json.as_deref())?;
    Ok(ExitCode::SUCCESS)
}

/// `pspnet score`: the saved predictions of `evaluate --out-dir` scored
/// again, without a network.
pub(crate) fn score(args: ScoreArgs) -> Result<ExitCode> {
    let source = args.data.source()?;
    let samples = source.samples()?;
    let names = class_names(args.classes.as_deref(), source.dataset(), None)?;
    let progress = progress_bar(samples.len());
    let Evaluation { matrix, failures } =
        pspnet::score(&args.pred_dir, &samples, source.rule(), names.len(), args.max_pixels, |_, scored| {
            if let Err(err) = scored {
                progress.suspend(|| eprintln!("error: {err}"));
            }
            progress.inc(1);
        });
    progress.finish_and_clear();
    if !failures.is_empty() {
        eprintln!("{} of {} images failed; no results written:", failures.len(), samples.len());
        failures.iter().for_each(|(sample, _)| eprintln!("  {}", sample.image.display()));
        return Ok(ExitCode::FAILURE);
    }
    report(source.name(), &source.split(), samples.len(), &names, &matrix, args.json.as_deref())?;
    Ok(ExitCode::SUCCESS)
}

fn progress_bar(images: usize) -> ProgressBar {
    ProgressBar::new(images as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} images, {elapsed} elapsed, ETA {eta}")
            .expect("valid template"),
    )
}

/// `DIR/STEM.labels.png` and `DIR/STEM.color.png`, as `segment` writes them.
fn save_prediction(
    dir: &Path,
    sample: &Sample,
    predicted: &Array2<u32>,
    palette: &[[u8; 3]],
    classes: usize,
    format: &super::FormatArgs,
) -> Result<()> {
    let mut staged = Staged::default();
    format.stage(&mut staged, dir, &sample.image, predicted.view())?;
    if !format.format_only {
        let labels = prediction_path(dir, sample);
        let color = labels.with_file_name(
            labels.file_name().and_then(|n| n.to_str()).unwrap_or_default().replace(".labels.png", ".color.png"),
        );
        staged.add(labels, png(labels_image(predicted.view(), classes)))?;
        staged.add(color, png(DynamicImage::ImageRgb8(color_image(predicted.view(), palette))))?;
    }
    staged.commit()
}

/// The class names: the named dataset's table; for custom data `--classes`
/// (a count or a file of names), else the model's.
fn class_names(classes: Option<&str>, dataset: Option<Dataset>, model: Option<&Segmenter>) -> Result<Vec<String>> {
    match (dataset, classes, model) {
        (Some(d), None, _) => Ok(d.class_names()),
        (Some(d), Some(_), _) => bail!("--classes is for --dataset custom; {} has its own table", d.name()),
        (None, Some(c), _) => match c.parse::<usize>() {
            Ok(n) => Ok(numbered_class_names(n)),
            Err(_) => read_classes(Path::new(c)),
        },
        (None, None, Some(model)) => Ok(model_class_names(&model.spec)),
        (None, None, None) => bail!("--dataset custom needs --classes N|FILE"),
    }
}

pub(crate) fn merge(args: MergeArgs) -> Result<ExitCode> {
    let mut total: Option<(String, String, Vec<String>, ConfusionMatrix, usize)> = None;
    for path in &args.partials {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let v: Value = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
        let field =
            |k: &str| v.get(k).with_context(|| format!("{}: no field {k:?}; not a partial result", path.display()));
        let dataset = field("dataset")?.as_str().unwrap_or_default().to_string();
        let split = field("split")?.as_str().unwrap_or_default().to_string();
        let names: Vec<String> = serde_json::from_value(field("classes")?.clone())
            .with_context(|| format!("{}: classes", path.display()))?;
        let counts: Vec<u64> = serde_json::from_value(field("confusion")?.clone())
            .with_context(|| format!("{}: confusion", path.display()))?;
        let images = field("images")?.as_u64().unwrap_or(0) as usize;
        let matrix = ConfusionMatrix::from_counts(names.len(), counts)
            .with_context(|| format!("{}: the confusion matrix is not {0}x{0}", path.display()))?;
        match &mut total {
            None => total = Some((dataset, split, names, matrix, images)),
            Some((d, s, n, m, i)) => {
                if (d.as_str(), s.as_str(), &*n) != (dataset.as_str(), split.as_str(), &names) {
                    bail!("{}: {dataset}/{split} does not match the first partial's {d}/{s}", path.display());
                }
                m.merge(&matrix).context("class counts differ")?;
                *i += images;
            }
        }
    }
    let (dataset, split, names, matrix, images) = total.context("no partial results given")?;
    report(&dataset, &split, images, &names, &matrix, args.json.as_deref())?;
    Ok(ExitCode::SUCCESS)
}

fn percent(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.2}"))
}

/// Prints the per-class table and the means; writes JSON if asked.
fn report(
    dataset: &str,
    split: &str,
    images: usize,
    names: &[String],
    matrix: &ConfusionMatrix,
    json_path: Option<&Path>,
) -> Result<()> {
    let Scores { per_class, miou, macc, aacc } = matrix.scores();
    let width = names.iter().map(String::len).max().unwrap_or(5).max(5);
    println!("{dataset} {split}: {images} images");
    println!("{:width$}  {:>6}  {:>6}", "class", "IoU", "Acc");
    for (name, s) in names.iter().zip(&per_class) {
        println!("{name:width$}  {:>6}  {:>6}", percent(s.iou), percent(s.acc));
    }
    println!("mIoU {miou:.2}  mAcc {macc:.2}  aAcc {aacc:.2}");
    if let Some(path) = json_path {
        let value = pspnet::summary(dataset, split, images, names, matrix);
        write_json(path, &value)?;
    }
    Ok(())
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    let mut staged = Staged::default();
    staged.add(path.to_path_buf(), |w| Ok(serde_json::to_writer_pretty(w, value)?))?;
    staged.commit()
}
