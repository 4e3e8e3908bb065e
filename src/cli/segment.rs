//! `pspnet segment`: run the model on images and write label maps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use image::DynamicImage;
use ndarray::{Array3, Axis};
use pspnet_data::{Dataset, collect_inputs, read_rgb};
use pspnet_data::{parse_class_names, parse_palette};
use pspnet_kernels::argmax_channels;
use pspnet_model::{Protocol, Segmenter};

use super::legend::{class_shares, legend_image};
use pspnet::render::{color_image, labels_image, model_palette, overlay_image};

use super::outputs::{Staged, npy, png};

#[derive(Debug, Args)]
pub(crate) struct SegmentArgs {
    /// Image files, or folders whose image files (png, jpg/jpeg, bmp, tif/tiff, webp; not recursive) are taken in name order.
    #[arg(required_unless_present_any = ["dataset", "stdin"], conflicts_with_all = ["dataset", "stdin"])]
    inputs: Vec<PathBuf>,
    /// Read raw RGB24 frames of WIDTHxHEIGHT from standard input instead (ffmpeg's `-f rawvideo -pix_fmt rgb24 -`),
    /// writing each frame's result to standard output as --stdout says.
    #[arg(long, value_name = "WIDTHxHEIGHT", value_parser = super::stream::frame_size, requires = "stdout", conflicts_with = "dataset")]
    stdin: Option<[usize; 2]>,
    /// With --stdin: labels (W*H bytes per frame; u16 little-endian when there are more than 256 classes) or
    /// overlay (W*H*3 bytes of RGB24).
    #[arg(long, value_enum, requires = "stdin")]
    stdout: Option<super::stream::StreamOutput>,
    /// Segment a dataset split in its official layout instead (labels not needed: test-server splits too):
    /// camvid, ade20k, voc2012 or cityscapes, with --data-root and --split; the protocol defaults to its preset.
    #[arg(long, requires_all = ["data_root", "split"], value_parser = ["camvid", "ade20k", "voc2012", "cityscapes"])]
    dataset: Option<String>,
    /// The dataset's root folder.
    #[arg(long, requires = "dataset")]
    data_root: Option<PathBuf>,
    /// The split.
    #[arg(long, requires = "dataset")]
    split: Option<String>,
    #[command(flatten)]
    format: super::FormatArgs,
    /// Output folder (created if needed).
    #[arg(long, default_value = "pspnet-out")]
    out: PathBuf,
    #[command(flatten)]
    model: super::ModelArgs,
    #[command(flatten)]
    protocol: super::ProtocolArgs,
    /// Also write the f32 class scores at input resolution, shape (classes, H, W), as a NumPy .npy (one input image
    /// only): the logits in whole mode, else what the protocol averages (probabilities or logits).
    #[arg(long, value_name = "OUT.npy")]
    logits: Option<PathBuf>,
    #[command(flatten)]
    overrides: super::OverrideArgs,
    /// Class names: a text file with one name per line, or JSON (a list, or an object with "classes"). Overrides the checkpoint's.
    #[arg(long, value_name = "FILE")]
    classes: Option<PathBuf>,
    /// Class colours: a text file with "r g b" (or r,g,b) per line, or JSON (a list of [r, g, b], or an object with "palette"). Overrides the checkpoint's.
    #[arg(long, value_name = "FILE")]
    palette: Option<PathBuf>,
    /// Print the time of each stage (stem, stage1-4, ppm, head, upsample); whole-image mode only.
    #[arg(long)]
    profile: bool,
    /// Also write NAME.legend.png: the classes present, with their colour and pixel share.
    #[arg(long)]
    legend: bool,
    /// Weight of the class colours in NAME.overlay.png: per channel floor((1 - a) * photo + a * colour + 0.5).
    #[arg(long, default_value_t = 0.5, value_parser = super::opacity)]
    opacity: f64,
    /// Refuse images with more pixels than this (checked from the header, before decoding).
    #[arg(long, default_value_t = 100_000_000)]
    max_pixels: u64,
}

/// Reads a JSON value, or `None` if the file is not JSON.
/// Class names from a file (see [`parse_class_names`]).
pub(super) fn read_classes(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(parse_class_names(path, &text)?)
}

/// Class colours from a file (see [`parse_palette`]).
pub(super) fn read_palette(path: &Path) -> Result<Vec<[u8; 3]>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(parse_palette(path, &text)?)
}

/// What one image produced.
struct Segmented {
    size: (u32, u32),
    forward_ms: f64,
}

pub(crate) fn run(args: SegmentArgs) -> Result<ExitCode> {
    if let (Some(size), Some(output)) = (args.stdin, args.stdout) {
        let model = args.model.load(&args.overrides.overrides())?;
        let protocol = args.protocol.protocol(None)?;
        let palette = match &args.palette {
            Some(path) => read_palette(path)?,
            None => model_palette(&model.spec),
        };
        return super::stream::run(&model, &protocol, &palette, size, output, args.opacity);
    }
    let dataset = args.dataset.as_deref().map(str::parse::<Dataset>).transpose().map_err(anyhow::Error::msg)?;
    let files = match (dataset, &args.data_root, &args.split) {
        (Some(d), Some(root), Some(split)) => d.images(root, split)?,
        _ => collect_inputs(&args.inputs)?,
    };
    let mut stems: BTreeMap<String, Vec<&Path>> = BTreeMap::new();
    for file in &files {
        let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        stems.entry(stem).or_default().push(file);
    }
    if let Some((stem, paths)) = stems.iter().find(|(_, p)| p.len() > 1) {
        let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        bail!("inputs {} share the name {stem:?}: their outputs would collide", list.join(" and "));
    }
    if args.logits.is_some() && files.len() != 1 {
        bail!("--logits takes exactly one input image, got {}", files.len());
    }
    let overrides = args.overrides.overrides();
    let model = args.model.load(&overrides)?;
    let protocol = args.protocol.protocol(dataset.map(Dataset::name))?;
    if args.profile && protocol != Protocol::whole() {
        bail!("--profile times one whole-image pass: use it without protocol flags (--mode whole, no flip, scale 1)");
    }
    let classes = model.spec.classes;
    let names = match &args.classes {
        Some(path) => Some(read_classes(path)?),
        None => model.spec.class_names.clone(),
    };
    if let Some(names) = names.as_ref().filter(|n| n.len() != classes) {
        bail!("{} class names for a model with {classes} classes", names.len());
    }
    let names = names.unwrap_or_default();
    let palette = match &args.palette {
        Some(path) => read_palette(path)?,
        None => model_palette(&model.spec),
    };
    if palette.len() < classes {
        bail!("the palette has {} colours for {classes} classes", palette.len());
    }
    // Made before inference, so that an unwritable path fails fast; the
    // folders made here are removed again if no image gets through.
    let made = args.out.ancestors().take_while(|dir| !dir.as_os_str().is_empty() && !dir.exists()).last();
    let made = made.map(Path::to_path_buf);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create the output folder", args.out.display()))?;
    args.format.prepare(&args.out, classes)?;

    let mut failures = Vec::new();
    for file in &files {
        match segment_one(&model, &protocol, &palette, &names, file, &args) {
            Ok(s) => println!("{}: {}x{} in {:.0} ms", file.display(), s.size.0, s.size.1, s.forward_ms),
            Err(err) => {
                eprintln!("error: {}", super::report(&err));
                failures.push(file.display().to_string());
            }
        }
    }
    if failures.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("{} of {} images failed:", failures.len(), files.len());
    failures.iter().for_each(|f| eprintln!("  {f}"));
    if let Some(top) = made.filter(|_| failures.len() == files.len()) {
        // Innermost first; `remove_dir` leaves any folder that is not empty.
        for dir in args.out.ancestors().take_while(|dir| dir.starts_with(&top)) {
            if std::fs::remove_dir(dir).is_err() {
                break;
            }
        }
    }
    Ok(ExitCode::FAILURE)
}

fn segment_one(
    model: &Segmenter,
    protocol: &Protocol,
    palette: &[[u8; 3]],
    names: &[String],
    file: &Path,
    args: &SegmentArgs,
) -> Result<Segmented> {
    let photo = read_rgb(file, args.max_pixels)?;
    let (w, h) = photo.dimensions();
    let (rgb, height, width) = (photo.as_raw(), h as usize, w as usize);
    let started = Instant::now();
    let failed = || format!("{}: inference failed", file.display());
    // Scores are computed only when asked for: plain labels let the model
    // take its fastest path.
    let (labels, scores) = if args.profile {
        let (logits, times) = model.profile(rgb, height, width).with_context(failed)?;
        let total: f64 = times.iter().map(|(_, t)| t.as_secs_f64()).sum();
        for (stage, t) in &times {
            println!("  {stage:<9} {:8.1} ms {:5.1}%", t.as_secs_f64() * 1e3, 100.0 * t.as_secs_f64() / total);
        }
        (argmax_channels(&logits).index_axis_move(Axis(0), 0), Some(logits))
    } else if args.logits.is_some() {
        let scores = model.scores(rgb, height, width, protocol).with_context(failed)?;
        (argmax_channels(&scores).index_axis_move(Axis(0), 0), Some(scores))
    } else {
        (model.labels(rgb, height, width, protocol).with_context(failed)?, None)
    };
    let forward_ms = started.elapsed().as_secs_f64() * 1e3;
    let labels = labels.view();

    let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let out = |suffix: &str| args.out.join(format!("{stem}.{suffix}"));
    let mut staged = Staged::default();
    args.format.stage(&mut staged, &args.out, file, labels)?;
    if !args.format.format_only {
        let color = color_image(labels, palette);
        staged.add(out("labels.png"), png(labels_image(labels, model.spec.classes)))?;
        staged.add(out("overlay.png"), png(DynamicImage::ImageRgb8(overlay_image(&photo, &color, args.opacity))))?;
        staged.add(out("color.png"), png(DynamicImage::ImageRgb8(color)))?;
    }
    if args.legend {
        let shares = class_shares(labels, model.spec.classes);
        staged.add(out("legend.png"), png(DynamicImage::ImageRgb8(legend_image(&shares, names, palette))))?;
    }
    if let (Some(path), Some(scores)) = (&args.logits, scores) {
        let [_, c, lh, lw] = scores.shape().dims();
        let array = Array3::from_shape_vec((c, lh, lw), scores.into_vec()).context("logits shape")?;
        staged.add(path.clone(), npy(array))?;
    }
    staged.commit()?;
    Ok(Segmented { size: (w, h), forward_ms })
}
