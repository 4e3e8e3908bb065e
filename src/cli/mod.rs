//! The command-line interface: argument definitions and one module per
//! subcommand.

mod convert;
mod image_io;
mod outputs;
mod segment;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use pspnet_weights::Overrides;

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
    /// Convert a checkpoint to the pspnet-rs safetensors layout (optionally f16 or bf16).
    Convert(convert::ConvertArgs),
}

impl Cli {
    /// Runs the chosen subcommand.
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Segment(args) => segment::run(args),
            Command::Convert(args) => convert::run(args),
        }
    }
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
}

impl OverrideArgs {
    fn overrides(&self) -> Overrides {
        Overrides { align_corners: self.align_corners, bins: self.bins.clone(), output_stride: self.output_stride }
    }
}
