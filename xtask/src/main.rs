//! `cargo xtask`: developer tasks that need more than cargo.
//!
//! - `kernel-fixtures`: runs `xtask/python/kernel_fixtures.py` (needs Python
//!   with `torch` and `numpy`) to regenerate the PyTorch reference values the
//!   kernel tests compare against.
//! - `reference ARGS`: runs `xtask/python/reference.py ARGS` (PyTorch mirror
//!   of both checkpoint layouts: random checkpoints + float64 reference outputs).
//! - `crosscheck --model CKPT --reference REF.safetensors`: runs our forward
//!   and prints the per-stage error table; fails over tolerance.
//! - `jpeg-diff JPEG_DIR PNG_DIR`: compares the `image` crate's JPEG decoding
//!   with another decoder's output saved as PNG (the JPEG study of docs/evaluation.md).
//! - `bench [--runs N] [--no-peers]`: PSPNet-50 at 473 and PSPNet-101 at 713,
//!   ours against PyTorch eager and ONNX Runtime (`xtask/python/bench_peers.py`).
//! - `bench-train`: a training iteration of PSPNet-R18 (batch 8, 360x360) and
//!   PSPNet-50 (batch 2, 473x473), ours against PyTorch eager
//!   (`xtask/python/train_bench.py`): time per iteration and peak memory.
//! - `bench-loader`: PSPNet-R18's training iteration fed pre-decoded batches
//!   against `pspnet train` decoding and augmenting on its worker thread.
//! - `bench-video`: `pspnet video`'s frames per second against pure
//!   inference per frame (the embedded model, 480x360, 2 threads).
//! - `caffe-check`: the Caffe loader against a float64 evaluation of the
//!   Caffe graph at the authors' deploy sizes (`xtask/python/caffe_reference.py`).
//! - `fuzz [--seconds N] [--runs N] [TARGET...]`: runs the fuzz targets of `fuzz/`
//!   (nightly, cargo-fuzz) two at a time and prints their table.
//! - `sanitize [asan|valgrind]`: the tests of the crates with `unsafe` code
//!   under AddressSanitizer (nightly) and valgrind's memcheck.
//! - `kernel-report`: prints the markdown table of docs/performance.md from
//!   the criterion results of `cargo bench --bench conv`.

mod bench;
mod bench_loader;
mod bench_train;
mod bench_video;
mod caffe_check;
mod crosscheck;
mod fuzz;
mod jpeg_diff;
mod kernel_report;
mod sanitize;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("kernel-fixtures") => kernel_fixtures(),
        Some("kernel-report") => kernel_report::run(&workspace_root()),
        Some("reference") => crosscheck::reference(&workspace_root(), &python(), &args[1..]),
        Some("crosscheck") => crosscheck::crosscheck(&args[1..]),
        Some("jpeg-diff") => jpeg_diff::run(&args[1..]),
        Some("bench") => bench::run(&workspace_root(), &python(), &args[1..]),
        Some("bench-train") => bench_train::run(&workspace_root(), &python()),
        Some("bench-loader") => bench_loader::run(&workspace_root()),
        Some("bench-video") => bench_video::run(&workspace_root()),
        Some("caffe-check") => caffe_check::run(&workspace_root(), &python()),
        Some("fuzz") => fuzz::run(&workspace_root(), &args[1..]),
        Some("sanitize") => sanitize::run(&workspace_root(), &args[1..]),
        _ => {
            eprintln!("usage: cargo xtask kernel-fixtures");
            eprintln!("  kernel-fixtures   regenerate crates/pspnet-kernels/tests/fixtures with PyTorch");
            bail!("unknown or missing task");
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace root").to_path_buf()
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// The convolutions' options as `PSPNET_ISA` and `PSPNET_CONV` choose them,
/// as the `pspnet` binary reads them.
fn conv_options() -> Result<pspnet_model::ConvOptions> {
    let (isa, algorithm) = (std::env::var("PSPNET_ISA").ok(), std::env::var("PSPNET_CONV").ok());
    pspnet_model::ConvOptions::from_names(isa.as_deref(), algorithm.as_deref()).context("PSPNET_ISA / PSPNET_CONV")
}

fn kernel_fixtures() -> Result<()> {
    let root = workspace_root();
    let script = root.join("xtask/python/kernel_fixtures.py");
    let out = root.join("crates/pspnet-kernels/tests/fixtures");
    let status = Command::new(python())
        .arg(&script)
        .arg(&out)
        .status()
        .with_context(|| format!("running {} (set PYTHON to choose the interpreter)", script.display()))?;
    if !status.success() {
        bail!("{} failed ({status}); it needs `pip install torch numpy`", script.display());
    }
    Ok(())
}
