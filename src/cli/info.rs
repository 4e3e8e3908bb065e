//! `pspnet info`: what a checkpoint holds and what it costs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use pspnet_model::Precision;
use pspnet_resnet::{BlockKind, DilationRule, StemKind, StridePlacement};
use pspnet_tensor::Shape;

use super::{ModelArgs, OverrideArgs};

#[derive(Debug, Args)]
pub(crate) struct InfoArgs {
    /// Checkpoint (default: the embedded model).
    checkpoint: Option<PathBuf>,
    /// Input size for the FLOP count.
    #[arg(long, value_name = "HxW", default_value = "473x473")]
    size: String,
    #[command(flatten)]
    overrides: OverrideArgs,
}

fn parse_size(s: &str) -> Result<(usize, usize)> {
    let (h, w) = s.split_once(['x', 'X']).with_context(|| format!("--size {s:?}: expected HxW, e.g. 473x473"))?;
    let dim = |v: &str| {
        v.trim()
            .parse::<usize>()
            .ok()
            .filter(|&v| v > 0)
            .with_context(|| format!("--size {s:?}: {v:?} is not a positive size"))
    };
    Ok((dim(h)?, dim(w)?))
}

pub(crate) fn run(args: InfoArgs) -> Result<ExitCode> {
    let (h, w) = parse_size(&args.size)?;
    let model =
        ModelArgs { model: args.checkpoint.clone(), precision: Precision::F32 }.load(&args.overrides.overrides())?;
    let spec = &model.spec;
    let b = &spec.backbone;
    let depth = match (b.block, b.layers) {
        (BlockKind::Basic, [2, 2, 2, 2]) => "ResNet-18".to_string(),
        (BlockKind::Basic, [3, 4, 6, 3]) => "ResNet-34".to_string(),
        (BlockKind::Bottleneck, [3, 4, 6, 3]) => "ResNet-50".to_string(),
        (BlockKind::Bottleneck, [3, 4, 23, 3]) => "ResNet-101".to_string(),
        (BlockKind::Bottleneck, [3, 8, 36, 3]) => "ResNet-152".to_string(),
        (block, layers) => format!("ResNet ({block:?} blocks {layers:?})"),
    };
    let name = args.checkpoint.as_deref().map_or_else(|| "the embedded model".to_string(), |p| p.display().to_string());
    println!("model:        {name} ({} layout)", spec.layout.name());
    println!(
        "backbone:     {depth}, {} blocks {:?}{}, {} stem{}{}, output stride {}, {}",
        if b.block == BlockKind::Basic { "basic" } else { "bottleneck" },
        b.layers,
        match (b.block, b.stride_placement) {
            (BlockKind::Bottleneck, StridePlacement::Reduce) => " striding on the 1x1 reduce",
            (BlockKind::Bottleneck, StridePlacement::Middle) => " striding on the 3x3",
            (BlockKind::Basic, _) => "",
        },
        if b.stem == StemKind::Deep { "deep (3x3 x3)" } else { "classic (7x7)" },
        if b.pool_ceil { " with a ceil-mode max pool" } else { "" },
        if b.avg_down { ", average-pool shortcuts" } else { "" },
        b.output_stride,
        if b.dilation_rule == DilationRule::EveryBlock {
            "every dilated block at full dilation"
        } else {
            "contracted dilation"
        },
    );
    println!(
        "pyramid:      bins {:?}, {:?} pooling, align_corners {}{}",
        spec.ppm.bins,
        spec.ppm.pooling,
        spec.ppm.align_corners,
        if spec.ppm.reduction { "" } else { ", no dimension reduction" }
    );
    match &spec.class_names {
        Some(names) => println!("classes:      {} ({})", spec.classes, names.join(", ")),
        None => println!("classes:      {}", spec.classes),
    }
    println!("normalise:    mean {:?}, std {:?}", spec.mean, spec.std);
    println!(
        "parameters:   {:.2} M at inference{}",
        model.net.parameters() as f64 / 1e6,
        if model.net.has_aux() { " (auxiliary head not counted)" } else { "" }
    );
    let flops = model.net.flops(Shape::new(1, 3, h, w)?)?;
    println!("FLOPs:        {:.2} G at {h}x{w} (convolutions, 2 per multiply-add)", flops as f64 / 1e9);
    Ok(ExitCode::SUCCESS)
}
