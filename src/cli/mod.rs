//! The command-line interface: argument definitions shared by the
//! subcommands, and one module per subcommand.

mod convert;
mod evaluate;
mod info;
mod legend;
mod outputs;
mod segment;
pub(crate) mod train;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use pspnet_model::{Average, ConvOptions, Overrides, Precision, Protocol, Segmenter, Window};

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
    /// Add up the partial results of sharded `evaluate --shard I/N` runs and report them.
    Merge(evaluate::MergeArgs),
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
            Command::Merge(args) => evaluate::merge(args),
            Command::Convert(args) => convert::run(args),
            Command::Info(args) => info::run(args),
            Command::Train(args) => train::run_train(*args),
        }
    }
}

/// The default model, embedded so that the binary needs no download: the
/// CamVid checkpoint of ../shared/models converted with
/// `pspnet convert pspnet_r18-d8_camvid.pth models/pspnet_r18-d8_camvid.f16.safetensors --dtype f16`.
const DEFAULT_MODEL: &[u8] = include_bytes!("../../models/pspnet_r18-d8_camvid.f16.safetensors");
const DEFAULT_MODEL_NAME: &str = "<embedded pspnet_r18-d8_camvid.f16.safetensors>";

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
            None => Segmenter::load_bytes(Path::new(DEFAULT_MODEL_NAME), DEFAULT_MODEL.to_vec(), overrides, options)?,
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
        let mut p = match self.preset.as_deref().or(default_preset) {
            Some(name) => Protocol::preset(name)?,
            None => Protocol::whole(),
        };
        let preset_crop = match p.window {
            Window::Slide { crop, .. } => Some(crop),
            Window::Whole => None,
        };
        match self.mode {
            Some(Mode::Whole) => p.window = Window::Whole,
            Some(Mode::Slide) => {
                let crop =
                    self.crop.or(preset_crop).context("--mode slide needs --crop (or a --preset that sets it)")?;
                p.window = Window::Slide { crop, stride: self.stride };
            }
            None => {
                if let Window::Slide { crop, stride } = &mut p.window {
                    *crop = self.crop.unwrap_or(*crop);
                    *stride = self.stride.or(*stride);
                }
            }
        }
        if let Some(scales) = &self.scales {
            p.scales = scales.clone();
        }
        if let Some(flip) = self.flip {
            p.flip = flip;
        }
        if let Some(base) = self.base_size {
            p.base_size = Some(base);
        }
        if let Some(average) = self.average {
            p.average = match average {
                AverageArg::Probs => Average::Probs,
                AverageArg::Logits => Average::Logits,
            };
        }
        Ok(p)
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
