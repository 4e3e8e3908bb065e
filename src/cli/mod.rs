//! The command-line interface: argument definitions shared by the
//! subcommands, and one module per subcommand.

mod confusion;
mod convert;
mod evaluate;
mod info;
mod legend;
mod outputs;
mod segment;
mod stream;
pub(crate) mod train;
mod video;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use ndarray::ArrayView2;
use outputs::Staged;
use pspnet_data::{DataSource, Dataset, Submission};
use pspnet_model::{Average, ConvOptions, Overrides, Precision, Protocol, ProtocolChoice, Segmenter, WindowMode};

/// PSPNet scene parsing: a class for every pixel, from the convolution kernel up.
#[derive(Debug, Parser)]
#[command(name = "pspnet", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Segment images: writes NAME.labels.png, NAME.color.png and NAME.overlay.png per image.
    Segment(segment::SegmentArgs),
    /// Score a model on a dataset split in its official layout: mIoU, mAcc, aAcc, per-class IoU and accuracy.
    Evaluate(evaluate::EvaluateArgs),
    /// Segment a video (anything ffmpeg reads) into an overlay video, through the ffmpeg executable on PATH.
    Video(Box<video::VideoArgs>),
    /// Add up the partial results of sharded `evaluate --shard I/N` runs and report them.
    Merge(evaluate::MergeArgs),
    /// Score the predictions `evaluate --out-dir` saved, without running the network: evaluate's numbers.
    Score(evaluate::ScoreArgs),
    /// Convert a checkpoint to the pspnet-rs safetensors layout (optionally f16 or bf16).
    Convert(convert::ConvertArgs),
    /// Describe a checkpoint: architecture, classes, parameter count, FLOPs at a given size.
    Info(info::InfoArgs),
    /// Train (or fine-tune) a PSPNet: semseg's recipe, checkpoints every command loads, log.jsonl.
    #[command(args_override_self = true)]
    Train(Box<train::TrainArgs>),
}

impl Cli {
    /// Runs the chosen subcommand.
    pub(crate) fn run(self) -> Result<ExitCode> {
        match self.command {
            Command::Segment(args) => segment::run(args),
            Command::Evaluate(args) => evaluate::run(args),
            Command::Video(args) => video::run(*args),
            Command::Merge(args) => evaluate::merge(args),
            Command::Score(args) => evaluate::score(args),
            Command::Convert(args) => convert::run(args),
            Command::Info(args) => info::run(args),
            Command::Train(args) => train::run_train(*args),
        }
    }
}

/// Labelled data: a named dataset's split, or custom folders.
#[derive(Debug, Args)]
struct DataArgs {
    /// camvid (ROOT/SPLIT/{images,labels}/NAME.png; 11 = void), ade20k (ADEChallengeData2016:
    /// ROOT/{images,annotations}/SPLIT; 0 = void), voc2012 (ROOT/JPEGImages, ROOT/SegmentationClass for the names in
    /// ROOT/ImageSets/Segmentation/SPLIT.txt; 255 = border), cityscapes (ROOT/leftImg8bit/SPLIT/CITY,
    /// ROOT/gtFine/SPLIT/CITY/*_gtFine_labelIds.png; label ids -> 19 train ids), each with --data-root and --split;
    /// or custom (with --images and --labels).
    #[arg(long, value_parser = ["camvid", "ade20k", "voc2012", "cityscapes", "custom"])]
    dataset: String,
    /// The dataset's root folder, in its official layout.
    #[arg(long)]
    data_root: Option<PathBuf>,
    /// The split (camvid: train, test; ade20k: training, validation; voc2012: train, val; cityscapes: train, val).
    #[arg(long)]
    split: Option<String>,
    /// Custom data: the images, paired with --labels by file stem.
    #[arg(long)]
    images: Option<PathBuf>,
    /// Custom data: label PNGs, values 0..N-1.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Custom data: the label that counts for nothing.
    #[arg(long, default_value_t = 255)]
    ignore_index: u16,
    /// Custom data: 0 is ignored and v stands for class v-1 (mmsegmentation's reduce_zero_label).
    #[arg(long)]
    reduce_zero_label: bool,
}

impl DataArgs {
    /// Where the samples come from, with the flags each kind needs.
    fn source(&self) -> Result<DataSource> {
        if self.dataset == "custom" {
            let (Some(images), Some(labels)) = (&self.images, &self.labels) else {
                bail!("--dataset custom needs --images DIR and --labels DIR");
            };
            return Ok(DataSource::Custom {
                images: images.clone(),
                labels: labels.clone(),
                ignore: self.ignore_index,
                reduce_zero_label: self.reduce_zero_label,
            });
        }
        let dataset: Dataset = self.dataset.parse().map_err(anyhow::Error::msg)?;
        let (Some(root), Some(split)) = (&self.data_root, &self.split) else {
            bail!("--dataset {} needs --data-root DIR and --split NAME", dataset.name());
        };
        Ok(DataSource::Named { dataset, root: root.clone(), split: split.clone() })
    }
}

/// A benchmark server's format for the predictions.
#[derive(Debug, Args)]
struct FormatArgs {
    /// Also write each prediction in a benchmark server's format, under OUT/FORMAT/: cityscapes (label ids,
    /// STEM.png with the *_leftImg8bit stem), voc (palette PNG, ID.png), ade20k (ids 1..150, 0 = other, STEM.png).
    #[arg(long, value_name = "cityscapes|voc|ade20k")]
    format: Option<Submission>,
    /// Write only the server's format, not the label and colour PNGs.
    #[arg(long, requires = "format")]
    format_only: bool,
}

impl FormatArgs {
    /// Checks the model fits the format and makes its folder under `out`.
    fn prepare(&self, out: &Path, classes: usize) -> Result<()> {
        let Some(format) = self.format else { return Ok(()) };
        if classes != format.classes() {
            bail!("--format {}: the format has {} classes, the model {classes}", format.name(), format.classes());
        }
        let dir = out.join(format.name());
        std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))
    }

    /// Stages the prediction of `image` in the format, if one was asked for.
    fn stage(&self, staged: &mut Staged, out: &Path, image: &Path, labels: ArrayView2<'_, u32>) -> Result<()> {
        let Some(format) = self.format else { return Ok(()) };
        let (h, w) = labels.dim();
        let flat: Vec<u32> = labels.iter().copied().collect();
        let bytes = format.encode(&flat, w as u32, h as u32)?;
        staged.add(format.path(out, image), |file| Ok(file.write_all(&bytes)?))
    }
}

/// Which checkpoint to run.
#[derive(Debug, Args)]
struct ModelArgs {
    /// Checkpoint: a .pth in the semseg or mmsegmentation layout (zip or legacy format), a pspnet-rs .safetensors,
    /// or a .caffemodel of the authors' Caffe release (with --prototxt when its layers lack parameters).
    /// Default: the embedded model (PSPNet ResNet-18, trained on CamVid street scenes, 11 classes, f16).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Arithmetic of the convolutions: f32, or bf16 (bf16 operands, f32 sums; faster where the CPU has
    /// AVX512-BF16), whatever dtype the checkpoint stores.
    #[arg(long, env = "PSPNET_PRECISION", default_value = "f32", value_name = "f32|bf16")]
    precision: Precision,
}

impl ModelArgs {
    fn load(&self, overrides: &Overrides) -> Result<Segmenter> {
        let options = ConvOptions { precision: self.precision, ..conv_options()? };
        Ok(match &self.model {
            Some(path) => Segmenter::load(path, overrides, options)?,
            None => pspnet::embedded_model(overrides, options)?,
        })
    }
}

/// The convolutions' instruction set and algorithm, as `PSPNET_ISA`
/// (`portable`, `avx2`, `avx512`; default: the best this CPU has) and
/// `PSPNET_CONV` (`auto`, `direct`; default `auto`) choose them.
fn conv_options() -> Result<ConvOptions> {
    let (isa, algorithm) = (std::env::var("PSPNET_ISA").ok(), std::env::var("PSPNET_CONV").ok());
    ConvOptions::from_names(isa.as_deref(), algorithm.as_deref()).context("PSPNET_ISA / PSPNET_CONV")
}

/// What a checkpoint's weights cannot tell, when the layout's default is wrong.
#[derive(Debug, Args)]
struct OverrideArgs {
    /// Bilinear corner convention of the pyramid and the final upsampling (default: the layout's; semseg true, mmseg false).
    #[arg(long, value_name = "true|false")]
    align_corners: Option<bool>,
    /// Pyramid bins, e.g. 1,2,3,6 (default: the layout's).
    #[arg(long, value_delimiter = ',', value_name = "1,2,3,6")]
    bins: Option<Vec<usize>>,
    /// Backbone output stride: 8, 16 or 32 (default 8).
    #[arg(long, value_name = "8|16")]
    output_stride: Option<usize>,
    /// Deploy prototxt of a .caffemodel: its layers' parameters (the released files may lack them).
    #[arg(long, value_name = "FILE")]
    prototxt: Option<PathBuf>,
}

impl OverrideArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            align_corners: self.align_corners,
            bins: self.bins.clone(),
            output_stride: self.output_stride,
            prototxt: self.prototxt.clone(),
        }
    }
}

/// Whole image or sliding windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// One pass over the whole (rescaled) image.
    Whole,
    /// Crop-sized windows, overlapping by a third (the references' test protocol).
    Slide,
}

/// What is averaged over windows, flips and scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AverageArg {
    /// Softmax probabilities (semseg's test.py).
    Probs,
    /// Raw logits (mmsegmentation's slide inference).
    Logits,
}

/// The inference protocol: a preset, adjusted by explicit flags.
#[derive(Debug, Args)]
struct ProtocolArgs {
    /// Reproduce semseg's test.py for a dataset (ade20k, voc2012, cityscapes: sliding windows, flip, base size),
    /// the authors' MATLAB evaluation of their Caffe models (caffe-ade20k, caffe-voc2012, caffe-cityscapes),
    /// or camvid (whole image). `evaluate` uses its dataset's preset unless told otherwise.
    #[arg(long, value_name = "ade20k|voc2012|cityscapes|caffe-ade20k|caffe-voc2012|caffe-cityscapes|camvid")]
    preset: Option<String>,
    /// Whole image (default for `segment`: native size, no flip) or sliding windows.
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    /// Window size for --mode slide.
    #[arg(long)]
    crop: Option<usize>,
    /// Window step for --mode slide (default: 2/3 of the crop, rounded up).
    #[arg(long)]
    stride: Option<usize>,
    /// Scales of the long side relative to --base-size (or the image's own size), e.g. 0.5,0.75,1.0.
    #[arg(long, value_delimiter = ',', value_name = "0.5,1.0,...")]
    scales: Option<Vec<f64>>,
    /// Also run each window mirrored and average the two.
    #[arg(long, value_name = "true|false")]
    flip: Option<bool>,
    /// Long side that scale 1.0 resizes the image to.
    #[arg(long)]
    base_size: Option<usize>,
    /// Average probabilities (semseg) or logits (mmsegmentation).
    #[arg(long, value_enum)]
    average: Option<AverageArg>,
}

impl ProtocolArgs {
    /// The protocol: `--preset`, else `default_preset`, else whole image;
    /// then the explicit flags.
    fn protocol(&self, default_preset: Option<&str>) -> Result<Protocol> {
        let choice = ProtocolChoice {
            preset: self.preset.clone(),
            mode: self.mode.map(|m| match m {
                Mode::Whole => WindowMode::Whole,
                Mode::Slide => WindowMode::Slide,
            }),
            crop: self.crop,
            stride: self.stride,
            scales: self.scales.clone(),
            flip: self.flip,
            base_size: self.base_size,
            average: self.average.map(|a| match a {
                AverageArg::Probs => Average::Probs,
                AverageArg::Logits => Average::Logits,
            }),
        };
        Ok(choice.protocol(default_preset)?)
    }
}

/// `--opacity`: a number from 0 to 1.
pub(crate) fn opacity(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|a| (0.0..=1.0).contains(a))
        .ok_or_else(|| format!("{s:?} is not a number from 0 to 1"))
}

/// Set by Ctrl-C: a training run writes last.safetensors and stops, a video
/// closes its file after the frames written so far.
pub(crate) static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Routes SIGINT to [`STOP`].
pub(crate) fn catch_interrupt() {
    // SAFETY: the handler only stores to an atomic, which is
    // async-signal-safe; the function pointer has the signature signal()
    // expects.
    unsafe {
        libc::signal(libc::SIGINT, on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t);
    }
}

/// An error and its causes on one line, `error: what: why: ...`. The
/// library errors already quote their cause in their own message, so a
/// cause whose text the line holds already is not repeated.
pub(crate) fn report(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let quoted = anyhow::Error::new(io).context("model.pth: no such file");
        assert_eq!(report(&quoted), "model.pth: no such file");
        let plain = anyhow::anyhow!("bad byte").context("model.pth").context("cannot load");
        assert_eq!(report(&plain), "cannot load: model.pth: bad byte");
    }
}
