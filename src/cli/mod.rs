//! The command-line interface: argument definitions and one module per
//! subcommand.

mod convert;
mod image_io;
mod outputs;
mod segment;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
