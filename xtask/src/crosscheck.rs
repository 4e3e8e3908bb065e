//! `cargo xtask reference` and `cargo xtask crosscheck`: PyTorch reference
//! outputs, and the stage-by-stage comparison of our forward against them.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use pspnet_model::{Comparison, Overrides, Segmenter};
use pspnet_tensor::{Shape, Tensor};

/// Runs `xtask/python/reference.py` with the given arguments.
pub(crate) fn reference(root: &Path, python: &str, args: &[String]) -> Result<()> {
    let script = root.join("xtask/python/reference.py");
    let status = Command::new(python)
        .arg(&script)
        .args(args)
        .status()
        .with_context(|| format!("running {} (set PYTHON to choose the interpreter)", script.display()))?;
    if !status.success() {
        bail!("{} failed ({status}); it needs `pip install torch numpy`", script.display());
    }
    Ok(())
}

/// Tolerances of the cross-check on the final logits.
const MAX_REL_L2: f64 = 1e-5;
const MIN_ARGMAX: f64 = 0.9999;

fn tensor(dims: &[usize], values: Vec<f32>) -> Result<Tensor> {
    let &[n, c, h, w] = dims else { bail!("expected an NCHW tensor, got shape {dims:?}") };
    Ok(Tensor::from_vec(Shape::new(n, c, h, w)?, values)?)
}

/// `--model CKPT --reference REF.safetensors [--align-corners true|false] [--output-stride 8|16|32]`
pub(crate) fn crosscheck(args: &[String]) -> Result<()> {
    let mut model: Option<PathBuf> = None;
    let mut reference: Option<PathBuf> = None;
    let mut overrides = Overrides::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => model = Some(value()?.into()),
            "--reference" => reference = Some(value()?.into()),
            "--align-corners" => {
                overrides.align_corners = Some(value()?.parse().context("--align-corners true|false")?)
            }
            "--output-stride" => overrides.output_stride = Some(value()?.parse().context("--output-stride 8|16|32")?),
            other => bail!("unknown argument {other} (usage: crosscheck --model CKPT --reference REF.safetensors)"),
        }
    }
    let (model, reference) = (model.context("--model is required")?, reference.context("--reference is required")?);
    let loaded = Segmenter::load(&model, &overrides, crate::conv_options()?)?;
    let (outputs, _) = pspnet_weights::load_safetensors(&reference)?;
    let (dims, input) = outputs.f32("input").map_err(|e| e.in_file(&reference))?;
    let input = tensor(&dims, input)?;
    let started = std::time::Instant::now();
    let trace = loaded.net.trace(&input)?;
    println!(
        "{} ({} layout, {} classes) on {}x{}: forward {:.2} s",
        model.display(),
        loaded.spec.layout.name(),
        loaded.spec.classes,
        dims[2],
        dims[3],
        started.elapsed().as_secs_f64()
    );
    let f = &trace.features;
    let mut stages: Vec<(&str, &Tensor)> = vec![("stem", &f.stem), ("layer1", &f.stages[0]), ("layer2", &f.stages[1])];
    stages.extend([("layer3", &f.stages[2]), ("layer4", &f.stages[3]), ("ppm", &trace.ppm), ("head", &trace.head)]);
    stages.push(("logits_low", &trace.logits_low));
    if let Some(aux) = &trace.aux_logits {
        stages.push(("aux_logits", aux));
    }
    stages.push(("logits", &trace.logits));
    println!("| stage | shape | max abs error | relative L2 | argmax agreement |");
    println!("|---|---|---|---|---|");
    let mut verdict = None;
    for (name, got) in stages {
        let Ok((want_dims, want)) = outputs.f32(name) else {
            println!("| {name} | {} | (no reference) | | |", got.shape());
            continue;
        };
        let c = Comparison::of(got, &want)
            .with_context(|| format!("{name}: ours {} vs reference {want_dims:?}", got.shape()))?;
        println!(
            "| {name} | {} | {:.3e} | {:.3e} | {:.4}% |",
            got.shape(),
            c.max_abs,
            c.rel_l2,
            100.0 * c.argmax_agreement
        );
        if name == "logits" {
            verdict = Some(c);
        }
    }
    let c = verdict.context("the reference has no `logits`")?;
    if c.rel_l2 > MAX_REL_L2 || c.argmax_agreement < MIN_ARGMAX {
        bail!(
            "logits out of tolerance: relative L2 {:.3e} (max {MAX_REL_L2:e}), argmax {:.4}% (min {}%)",
            c.rel_l2,
            100.0 * c.argmax_agreement,
            100.0 * MIN_ARGMAX
        );
    }
    println!("ok: logits within relative L2 {MAX_REL_L2:e} and argmax agreement {}%", 100.0 * MIN_ARGMAX);
    Ok(())
}
