//! `pspnet convert`: any supported checkpoint to the project's safetensors.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use pspnet_model::{StorageDtype, read_checkpoint, save_native};

#[derive(Debug, Args)]
pub(crate) struct ConvertArgs {
    /// Checkpoint to read: a semseg or mmsegmentation .pth (zip or legacy), a pspnet-rs .safetensors, or a .caffemodel.
    input: PathBuf,
    /// The .safetensors file to write (canonical names; the architecture, normalisation, class names and palette in its metadata).
    output: PathBuf,
    /// Storage type of the weights (compute is always f32).
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16", "bf16"])]
    dtype: String,
    #[command(flatten)]
    overrides: super::OverrideArgs,
}

pub(crate) fn run(args: ConvertArgs) -> Result<ExitCode> {
    if args.output.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        bail!("{}: the output must be a .safetensors file", args.output.display());
    }
    let dtype: StorageDtype = args.dtype.parse().map_err(anyhow::Error::msg)?;
    let overrides = args.overrides.overrides();
    let (params, spec) = read_checkpoint(&args.input, &overrides)?;
    save_native(&args.output, &params, &spec, dtype)?;
    let count: usize = params.iter().map(|(_, p)| p.data().len()).sum();
    println!(
        "{} ({} layout, {} classes, {count} parameters) -> {} ({})",
        args.input.display(),
        spec.layout.name(),
        spec.classes,
        args.output.display(),
        args.dtype
    );
    Ok(ExitCode::SUCCESS)
}
