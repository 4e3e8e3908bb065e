//! `pspnet convert`: any supported checkpoint to the project's safetensors,
//! or back to a published layout's PyTorch `.pth`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use pspnet_model::{Layout, SPEC_KEY, StorageDtype, export_pth, read_checkpoint, save_native};

#[derive(Debug, Args)]
pub(crate) struct ConvertArgs {
    /// Checkpoint to read: a semseg or mmsegmentation .pth (zip or legacy), a pspnet-rs .safetensors, or a .caffemodel.
    input: PathBuf,
    /// The .safetensors file to write (canonical names; the architecture, normalisation, class names and palette in its
    /// metadata), or a .pth in the --layout's own keys and wrapping (loads into mmsegmentation or semseg).
    output: PathBuf,
    /// For a .pth output: mmseg or semseg (default: the layout the model came from).
    #[arg(long, value_name = "mmseg|semseg")]
    layout: Option<String>,
    /// Storage type of the weights (compute is always f32).
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16", "bf16"])]
    dtype: String,
    #[command(flatten)]
    overrides: super::OverrideArgs,
}

pub(crate) fn run(args: ConvertArgs) -> Result<ExitCode> {
    let extension = args.output.extension().and_then(|e| e.to_str());
    if extension == Some("pth") {
        return to_pth(&args);
    }
    if extension != Some("safetensors") {
        bail!("{}: the output must be a .safetensors or a .pth file", args.output.display());
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

/// Writes the model as a `.pth` of `--layout` (default: where it came from;
/// a training checkpoint's iteration becomes `num_batches_tracked`).
fn to_pth(args: &ConvertArgs) -> Result<ExitCode> {
    let (params, spec) = read_checkpoint(&args.input, &args.overrides.overrides())?;
    let metadata = match spec.layout {
        Layout::Native => pspnet_weights::load_safetensors(&args.input)?.1,
        _ => Default::default(),
    };
    let origin = metadata
        .get(SPEC_KEY)
        .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        .and_then(|v| v["source_layout"].as_str().map(str::to_string));
    let layout = match args.layout.as_deref().or(origin.as_deref()).unwrap_or(spec.layout.name()) {
        "semseg" => Layout::Semseg,
        "mmseg" => Layout::Mmseg,
        other => bail!("a .pth is written in a PyTorch layout, not {other:?}: give --layout mmseg or semseg"),
    };
    let steps = metadata
        .get(pspnet_train::STATE_KEY)
        .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        .and_then(|v| v["iteration"].as_u64())
        .unwrap_or(0);
    export_pth(&args.output, &params, &spec, layout, steps)?;
    println!(
        "{} -> {} ({} layout, {} classes)",
        args.input.display(),
        args.output.display(),
        layout.name(),
        spec.classes
    );
    Ok(ExitCode::SUCCESS)
}
