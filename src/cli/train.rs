//! `pspnet train`: semseg's training recipe on a dataset in its official
//! layout or a custom one, from a checkpoint or a backbone, writing
//! checkpoints every command loads, `log.jsonl` and the effective settings.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use pspnet::render::numbered_class_names;
use pspnet_data::{Dataset, LabelRule, custom_samples};
use pspnet_kernels::{ConvAlgorithm, ConvOptions, Precision};
use pspnet_model::{Layout, ModelError, Normalization, Overrides, read_checkpoint};
use pspnet_nn::train::BnMode;
use pspnet_ppm::Pooling;
use pspnet_train::{
    Augmentation, Loader, Scratch, TrainError, TrainOptions, Trainer, config_flags, initialise, is_imagenet_resnet,
    reclassify, run, scratch, with_imagenet_backbone,
};

use super::segment::{read_classes, read_palette};

/// Arguments of `pspnet train`.
#[derive(Debug, Args)]
pub(crate) struct TrainArgs {
    #[command(flatten)]
    data: super::DataArgs,
    /// The class count, or a file of names (JSON with "classes" and optional "palette", or one name per line).
    /// Default: the dataset's table.
    #[arg(long)]
    classes: Option<String>,
    /// Where checkpoints, log.jsonl and config.toml go.
    #[arg(long)]
    out: PathBuf,
    /// Start from any checkpoint the tool loads (classifiers re-initialised when the class count differs).
    #[arg(long, conflicts_with_all = ["backbone", "layout", "resume"])]
    init: Option<PathBuf>,
    /// Start from a backbone: a PSPNet checkpoint's (the rest of its architecture re-initialised), or an ImageNet
    /// ResNet in torchvision, mmcv ResNetV1c or semseg resnet*_v2 form (fc.* ignored; --layout chooses the heads).
    #[arg(long, conflicts_with_all = ["resume"])]
    backbone: Option<PathBuf>,
    /// From scratch (with --depth), or the heads of an ImageNet --backbone: the layout (mmseg or semseg).
    #[arg(long)]
    layout: Option<String>,
    /// From scratch: the ResNet depth (18, 34, 50, 101, 152).
    #[arg(long)]
    depth: Option<usize>,
    /// From scratch: the pyramid's bins.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,6")]
    bins: Vec<usize>,
    /// From scratch: the pyramid's pooling, avg or max.
    #[arg(long, default_value = "avg", value_name = "avg|max")]
    pool: String,
    /// From scratch: the pyramid without its 1x1 dimension reductions (the paper's ablation).
    #[arg(long)]
    no_reduction: bool,
    /// From scratch: the backbone's output stride (8, 16 or 32).
    #[arg(long, default_value_t = 8)]
    output_stride: usize,
    /// Continue a run from its last.safetensors, exactly as it would have gone on.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Images per iteration.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Iterations.
    #[arg(long)]
    iters: u64,
    /// Crop size HxW.
    #[arg(long, value_parser = parse_hw)]
    crop: Option<[usize; 2]>,
    /// Base learning rate (the backbone's).
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    /// Every other parameter's rate, as a multiple of --lr.
    #[arg(long, default_value_t = 10.0)]
    head_lr_mult: f64,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f32,
    /// L2 weight decay, on every parameter.
    #[arg(long, default_value_t = 1e-4)]
    weight_decay: f32,
    /// Power of the poly schedule.
    #[arg(long, default_value_t = 0.9)]
    power: f64,
    /// Linear warm-up iterations.
    #[arg(long, default_value_t = 0)]
    warmup: usize,
    /// Micro-batches per iteration (their gradients add up).
    #[arg(long, default_value_t = 1)]
    accumulate: usize,
    /// Weight of the auxiliary loss (0: the auxiliary head does not run).
    #[arg(long, default_value_t = 0.4)]
    aux_weight: f32,
    /// Dropout2d before both classifiers.
    #[arg(long, default_value_t = 0.1)]
    dropout: f32,
    /// Batch-norm: train (batch statistics) or frozen (running statistics).
    #[arg(long, value_enum, default_value = "train")]
    bn: BnArg,
    /// Transforms: a comma list of scale, rotate, blur, flip, crop; semseg = all five; none.
    #[arg(long, default_value = "semseg")]
    augment: String,
    /// Take the samples in file-name order instead of a new permutation per epoch.
    #[arg(long)]
    no_shuffle: bool,
    /// Seed of every random draw.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write OUT/iter-N.safetensors every this many iterations (and at the end).
    #[arg(long, default_value_t = 1000)]
    save_every: u64,
    /// Keep only the newest N iteration checkpoints.
    #[arg(long)]
    keep: Option<usize>,
    /// Validate on this split of the named dataset (same --data-root).
    #[arg(long, conflicts_with_all = ["val_images", "val_labels"])]
    val_split: Option<String>,
    /// Validate on these custom images (with --val-labels).
    #[arg(long, requires = "val_labels")]
    val_images: Option<PathBuf>,
    /// Validate on these custom label PNGs.
    #[arg(long, requires = "val_images")]
    val_labels: Option<PathBuf>,
    /// Validate every this many iterations (and at the end); 0: never. Writes OUT/val.jsonl and OUT/best.safetensors.
    #[arg(long, default_value_t = 0)]
    val_every: u64,
    /// Arithmetic: training runs in f32 only.
    #[arg(long, env = "PSPNET_PRECISION", default_value = "f32")]
    precision: Precision,
    /// The largest image accepted, in pixels.
    #[arg(long, default_value_t = 100_000_000)]
    max_pixels: u64,
    /// A TOML file of settings, its keys the long flag names with `_` (as OUT/config.toml is written);
    /// flags on the command line override it.
    #[arg(long)]
    config: Option<PathBuf>,
}

/// The command line with a `train --config FILE`'s settings spliced in as
/// flags right after `train`, where the command line's own flags (later)
/// override them.
pub(crate) fn expand_config(args: Vec<std::ffi::OsString>) -> Result<Vec<std::ffi::OsString>> {
    let Some(train) = args.iter().position(|a| a == "train") else { return Ok(args) };
    let Some(at) = args.iter().skip(train).position(|a| a == "--config").map(|i| i + train) else { return Ok(args) };
    let path = PathBuf::from(args.get(at + 1).context("--config needs a file")?);
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let flags = config_flags(&path, &text)?;
    let mut expanded: Vec<_> = args[..=train].to_vec();
    expanded.extend(flags.into_iter().map(std::ffi::OsString::from));
    expanded.extend(args[train + 1..at].iter().cloned());
    expanded.extend(args[at + 2..].iter().cloned());
    Ok(expanded)
}

/// `--bn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BnArg {
    /// Batch statistics, running statistics updated (the recipe).
    Train,
    /// Running statistics, unchanged.
    Frozen,
}

fn parse_hw(s: &str) -> Result<[usize; 2], String> {
    let (h, w) = s.split_once('x').ok_or_else(|| format!("{s:?}: expected HxW"))?;
    let n = |v: &str| v.parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(|| format!("{s:?}: expected HxW"));
    Ok([n(h)?, n(w)?])
}

pub(crate) fn run_train(args: TrainArgs) -> Result<ExitCode> {
    if args.precision != Precision::F32 {
        bail!("--precision {:?}: training runs in f32 only (bf16 is an inference option)", args.precision);
    }
    pspnet_train::keep_freed_memory();
    let augmentation: Augmentation = args.augment.parse()?;
    if augmentation.crop && args.crop.is_none() {
        bail!("--augment crop needs --crop HxW");
    }
    let source = args.data.source()?;
    let (samples, rule, table) = (source.samples()?, source.rule(), source.dataset());
    let validation = validation_samples(&args, rule)?;
    if args.val_every > 0 && validation.is_none() {
        bail!("--val-every {} needs --val-split or --val-images/--val-labels", args.val_every);
    }
    let (class_names, palette) = class_table(&args, table)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("{}: cannot create", args.out.display()))?;

    let conv = ConvOptions { algorithm: ConvAlgorithm::SmallWinograd, ..ConvOptions::default() };
    let (mut trainer, log_mode) = start(&args, class_names, palette, conv)?;
    let spec = trainer.spec().clone();
    write_config(&args)?;
    let loader = Loader {
        samples,
        rule,
        classes: spec.classes,
        augmentation,
        crop: args.crop,
        normalization: Normalization { mean: spec.mean, std: spec.std },
        seed: args.seed,
        max_pixels: args.max_pixels,
    };
    let val_loader = validation.map(|samples| Loader { samples, ..loader.clone() });
    let val_path = args.out.join("val.jsonl");
    let mut best = f64::NEG_INFINITY;
    let log_path = args.out.join("log.jsonl");
    let mut log = OpenOptions::new()
        .create(true)
        .write(true)
        .append(log_mode)
        .truncate(!log_mode)
        .open(&log_path)
        .with_context(|| format!("{}: cannot write", log_path.display()))?;
    let progress = ProgressBar::new(args.iters).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} iterations, loss {msg}, {elapsed} elapsed, ETA {eta}")
            .expect("valid template"),
    );
    progress.set_position(trainer.done());
    super::catch_interrupt();
    let result = run(
        &mut trainer,
        Arc::new(loader),
        |record| {
            writeln!(log, "{}", record.json())
                .and_then(|()| log.flush())
                .map_err(|source| TrainError::Io { path: log_path.clone(), source })?;
            progress.set_message(format!("{:.4}", record.loss));
            progress.set_position(record.iter);
            Ok(())
        },
        |trainer| {
            let (Some(val), true) = (&val_loader, args.val_every > 0) else { return Ok(()) };
            let done = trainer.done();
            if !(done.is_multiple_of(args.val_every) || done == args.iters) {
                return Ok(());
            }
            let scores = trainer.validate(val, conv)?;
            let line = serde_json::json!({
                "iter": done, "mIoU": scores.miou, "mAcc": scores.macc, "aAcc": scores.aacc,
            });
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&val_path)
                .map_err(|source| TrainError::Io { path: val_path.clone(), source })?;
            writeln!(file, "{line}").map_err(|source| TrainError::Io { path: val_path.clone(), source })?;
            progress.suspend(|| eprintln!("iteration {done}: validation mIoU {:.2}", scores.miou));
            if scores.miou > best {
                best = scores.miou;
                trainer.save(&args.out.join("best.safetensors"), false)?;
            }
            Ok(())
        },
        &super::STOP,
    );
    progress.finish_and_clear();
    result?;
    if super::STOP.load(Ordering::Relaxed) && trainer.done() < args.iters {
        eprintln!(
            "interrupted after {} iterations: {} holds the run (--resume it)",
            trainer.done(),
            args.out.join("last.safetensors").display()
        );
        return Ok(ExitCode::from(130));
    }
    println!("trained {} iterations: {}", trainer.done(), args.out.join("last.safetensors").display());
    Ok(ExitCode::SUCCESS)
}

/// The validation samples, when asked for: a split of the named dataset, or
/// custom images and labels (read by the training data's label rule).
fn validation_samples(args: &TrainArgs, rule: LabelRule) -> Result<Option<Vec<pspnet_data::Sample>>> {
    match (&args.val_split, &args.val_images, &args.val_labels, rule) {
        (Some(split), _, _, LabelRule::Dataset(dataset)) => {
            let root = args.data.data_root.as_ref().context("--val-split needs --data-root")?;
            Ok(Some(dataset.samples(root, split)?))
        }
        (Some(_), _, _, LabelRule::Custom { .. }) => {
            bail!("--val-split needs a named --dataset; use --val-images/--val-labels")
        }
        (None, Some(images), Some(labels), _) => Ok(Some(custom_samples(images, labels)?)),
        _ => Ok(None),
    }
}

/// Class names and, when a file gives one, a palette.
type ClassTable<Names> = (Names, Option<Vec<[u8; 3]>>);

/// The class names (numbered when only a count is given) and palette, from
/// --classes or the dataset.
fn class_table(args: &TrainArgs, dataset: Option<Dataset>) -> Result<ClassTable<Vec<String>>> {
    let table: ClassTable<Option<Vec<String>>> = match (&args.classes, dataset) {
        (Some(c), _) if c.parse::<usize>().is_ok() => (None, None),
        (Some(file), _) => {
            let path = Path::new(file);
            (Some(read_classes(path)?), read_palette(path).ok())
        }
        (None, Some(d)) => (Some(d.class_names()), None),
        (None, None) => bail!("--dataset custom needs --classes FILE"),
    };
    let count = match (&args.classes, &table.0) {
        (Some(c), _) if c.parse::<usize>().is_ok() => c.parse::<usize>()?,
        (_, Some(names)) => names.len(),
        _ => unreachable!("a count or names"),
    };
    if let (Some(d), Some(c)) = (dataset, args.classes.as_deref().and_then(|c| c.parse::<usize>().ok())) {
        if c != d.class_names().len() {
            bail!("--classes {c}: {} has {} classes", d.name(), d.class_names().len());
        }
        return Ok((d.class_names(), None));
    }
    if count == 0 {
        bail!("--classes: no classes");
    }
    Ok((table.0.unwrap_or_else(|| numbered_class_names(count)), table.1))
}

/// Which parameters start fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fresh {
    /// The classifiers, when the class count changed (`--init`).
    Classifiers,
    /// All but the backbone (`--backbone`).
    AllButBackbone,
    /// Everything (`--layout --depth`).
    All,
}

/// The trainer at the run's start, and whether the log continues (resume).
fn start(
    args: &TrainArgs,
    names: Vec<String>,
    palette: Option<Vec<[u8; 3]>>,
    conv: ConvOptions,
) -> Result<(Trainer, bool)> {
    let options = TrainOptions {
        out: args.out.clone(),
        batch: args.batch,
        iters: args.iters,
        lr: args.lr,
        head_lr_mult: args.head_lr_mult,
        momentum: args.momentum,
        weight_decay: args.weight_decay,
        power: args.power,
        warmup: args.warmup,
        accumulate: args.accumulate,
        aux_weight: args.aux_weight,
        dropout: args.dropout,
        bn: if args.bn == BnArg::Train { BnMode::Train } else { BnMode::Frozen },
        shuffle: !args.no_shuffle,
        seed: args.seed,
        save_every: args.save_every,
        keep: args.keep,
    };
    if let Some(path) = &args.resume {
        let trainer = Trainer::resume(path, options, conv)?;
        if trainer.spec().classes != names.len() {
            bail!("{}: {} classes, the data has {}", path.display(), trainer.spec().classes, names.len());
        }
        return Ok((trainer, true));
    }
    let head = |depth: usize| -> Result<Scratch> {
        let layout = match args.layout.as_deref() {
            Some("semseg") => Layout::Semseg,
            Some("mmseg") => Layout::Mmseg,
            Some(other) => bail!("--layout {other:?}: semseg or mmseg"),
            None => bail!("--layout mmseg|semseg chooses the heads"),
        };
        let pooling = match args.pool.as_str() {
            "avg" => Pooling::Average,
            "max" => Pooling::Max,
            other => bail!("--pool {other:?}: avg or max"),
        };
        Ok(Scratch {
            layout,
            depth,
            width: 64,
            classes: names.len(),
            bins: args.bins.clone(),
            pooling,
            reduction: !args.no_reduction,
            output_stride: args.output_stride,
        })
    };
    let (mut params, mut spec, fresh_from) = match (&args.init, &args.backbone, args.depth) {
        (Some(p), ..) => {
            let (params, spec) = read_checkpoint(p, &Overrides::default())?;
            (params, spec, Fresh::Classifiers)
        }
        (_, Some(p), _) => match read_checkpoint(p, &Overrides::default()) {
            Ok((params, spec)) if args.layout.is_none() => (params, spec, Fresh::AllButBackbone),
            Ok(_) => {
                bail!("{}: a PSPNet checkpoint brings its own heads; --layout is for ImageNet backbones", p.display())
            }
            Err(ModelError::UnknownLayout { .. }) => {
                let state = pspnet_weights::load(p)?.state_dict;
                if !is_imagenet_resnet(&state) {
                    bail!("{}: neither a PSPNet checkpoint nor an ImageNet ResNet", p.display());
                }
                let (params, spec) = with_imagenet_backbone(state, &head(0)?, p)?;
                (params, spec, Fresh::AllButBackbone)
            }
            Err(e) => return Err(e.into()),
        },
        (_, _, Some(depth)) => {
            let (params, spec) = scratch(&head(depth)?)?;
            (params, spec, Fresh::All)
        }
        _ => bail!("give --init CKPT, --backbone CKPT, --layout L --depth D, or --resume OUT/last.safetensors"),
    };
    let reclassify = reclassify(&mut params, names.len())?;
    spec.classes = names.len();
    spec.class_names = Some(names);
    spec.palette = palette;
    let mut trainer = Trainer::new(params, spec, options, conv, 0, &BTreeMap::new())?;
    let fresh = |name: &str| match fresh_from {
        Fresh::All => true,
        Fresh::AllButBackbone => !name.starts_with("backbone."),
        Fresh::Classifiers => {
            reclassify && (name.starts_with("decode.classifier.") || name.starts_with("aux.classifier."))
        }
    };
    initialise(trainer.net(), args.seed, fresh);
    Ok((trainer, false))
}

/// Writes OUT/config.toml: every setting of the run, as flags would give it.
fn write_config(args: &TrainArgs) -> Result<()> {
    let mut lines = vec![format!("dataset = {:?}", args.data.dataset)];
    if let Some(classes) = &args.classes {
        lines.push(format!("classes = {classes:?}"));
    }
    let mut path = |key: &str, p: &Option<PathBuf>| {
        if let Some(p) = p {
            lines.push(format!("{key} = {:?}", p.display().to_string()));
        }
    };
    path("data_root", &args.data.data_root);
    path("images", &args.data.images);
    path("labels", &args.data.labels);
    path("init", &args.init);
    path("backbone", &args.backbone);
    path("resume", &args.resume);
    path("val_images", &args.val_images);
    path("val_labels", &args.val_labels);
    let split = args.data.split.as_ref().map(|s| format!("split = {s:?}"));
    let val_split = args.val_split.as_ref().map(|s| format!("val_split = {s:?}"));
    let crop = args.crop.map(|[h, w]| format!("crop = \"{h}x{w}\""));
    let keep = args.keep.map(|k| format!("keep = {k}"));
    let layout = args.layout.as_ref().map(|l| format!("layout = {l:?}"));
    let depth = args.depth.map(|d| format!("depth = {d}"));
    lines.extend(split.into_iter().chain(val_split).chain(crop).chain(keep).chain(layout).chain(depth));
    lines.extend([
        format!("out = {:?}", args.out.display().to_string()),
        format!("batch = {}", args.batch),
        format!("iters = {}", args.iters),
        format!("lr = {}", args.lr),
        format!("head_lr_mult = {}", args.head_lr_mult),
        format!("momentum = {}", args.momentum),
        format!("weight_decay = {}", args.weight_decay),
        format!("power = {}", args.power),
        format!("warmup = {}", args.warmup),
        format!("accumulate = {}", args.accumulate),
        format!("aux_weight = {}", args.aux_weight),
        format!("dropout = {}", args.dropout),
        format!("bn = {:?}", if args.bn == BnArg::Train { "train" } else { "frozen" }),
        format!("augment = {:?}", args.augment),
        format!("no_shuffle = {}", args.no_shuffle),
        format!("seed = {}", args.seed),
        format!("bins = {:?}", args.bins),
        format!("pool = {:?}", args.pool),
        format!("no_reduction = {}", args.no_reduction),
        format!("output_stride = {}", args.output_stride),
        format!("save_every = {}", args.save_every),
        format!("val_every = {}", args.val_every),
        format!("ignore_index = {}", args.data.ignore_index),
        format!("reduce_zero_label = {}", args.data.reduce_zero_label),
    ]);
    let path = args.out.join("config.toml");
    let temporary = args.out.join(".config.toml.partial");
    std::fs::write(&temporary, lines.join("\n") + "\n")
        .and_then(|()| std::fs::rename(&temporary, &path))
        .with_context(|| format!("{}: cannot write", path.display()))
}
