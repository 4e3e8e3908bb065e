//! `cargo xtask bench-train`: a training iteration, ours against PyTorch
//! CPU eager, in one invocation, 2 threads each.
//!
//! Ours: `pspnet train` on CamVid (`../shared/datasets/camvid`, train split,
//! `--augment flip,crop`) from a reference.py checkpoint of the model, 6
//! iterations, the median of iterations 2..6 of log.jsonl's `seconds`, and
//! the peak resident memory (`/usr/bin/time`). PyTorch:
//! `xtask/python/train_bench.py`, the same model, batch and crop on random
//! tensors, the median of its iterations 2..6 and its peak memory.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// One configuration of the table.
struct Case {
    name: &'static str,
    layout: &'static str,
    depth: usize,
    batch: usize,
    crop: &'static str,
}

const CASES: [Case; 2] = [
    Case { name: "PSPNet-R18 (CamVid recipe)", layout: "mmseg", depth: 18, batch: 8, crop: "360x360" },
    Case { name: "PSPNet-50", layout: "semseg", depth: 50, batch: 2, crop: "473x473" },
];
const ITERS: usize = 6;
const CLASSES: usize = 11;

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The `seconds` of iterations 2.. in a run's log.jsonl (the first warms up).
pub(crate) fn logged_seconds(out: &Path) -> Result<Vec<f64>> {
    let log = std::fs::read_to_string(out.join("log.jsonl"))?;
    Ok(log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["iter"].as_u64().is_some_and(|i| i >= 2))
        .filter_map(|v| v["seconds"].as_f64())
        .collect())
}

/// The CamVid data beside the checkout and the release binary, both needed.
pub(crate) fn camvid_and_binary(root: &Path) -> Result<(PathBuf, PathBuf)> {
    let data = root.join("../shared/datasets/camvid");
    if !data.is_dir() {
        bail!("{}: the CamVid data is needed (../shared beside the checkout)", data.display());
    }
    let pspnet = root.join("target/release/pspnet");
    if !pspnet.is_file() {
        bail!("{}: build it first (cargo build --release)", pspnet.display());
    }
    Ok((data, pspnet))
}

pub(crate) fn run(root: &Path, python: &str) -> Result<()> {
    let (data, pspnet) = camvid_and_binary(root)?;
    let work = root.join("target/bench-train");
    std::fs::create_dir_all(&work)?;
    println!("| model | batch, crop | ours s/iter | PyTorch s/iter | ratio | ours peak MB | PyTorch peak MB | ratio |");
    println!("|---|---|---|---|---|---|---|---|");
    for case in CASES {
        let ckpt_dir = work.join(format!("{}_r{}", case.layout, case.depth));
        let checkpoint = ckpt_dir.join("checkpoint.pth");
        if !checkpoint.is_file() {
            let status = Command::new(python)
                .arg(root.join("xtask/python/reference.py"))
                .args(["--layout", case.layout, "--depth", &case.depth.to_string(), "--classes", &CLASSES.to_string()])
                .arg("--out")
                .arg(&ckpt_dir)
                .status()
                .context("running reference.py (pip install torch numpy)")?;
            if !status.success() {
                bail!("reference.py failed ({status})");
            }
        }
        let out = work.join(format!("run_{}_{}", case.layout, case.depth));
        let _ = std::fs::remove_dir_all(&out);
        let ours = Command::new("/usr/bin/time")
            .args(["-f", "peak %M"])
            .arg(&pspnet)
            .args(["train", "--dataset", "camvid", "--split", "train", "--augment", "flip,crop", "--crop", case.crop])
            .arg("--data-root")
            .arg(&data)
            .arg("--init")
            .arg(&checkpoint)
            .args(["--batch", &case.batch.to_string(), "--iters", &ITERS.to_string()])
            .arg("--out")
            .arg(&out)
            .env("RAYON_NUM_THREADS", "2")
            .output()
            .context("running pspnet train under /usr/bin/time")?;
        let stderr = String::from_utf8_lossy(&ours.stderr);
        if !ours.status.success() {
            bail!("pspnet train failed: {stderr}");
        }
        let our_peak: f64 = stderr
            .lines()
            .filter_map(|l| l.strip_prefix("peak "))
            .next_back()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .context("no peak memory from /usr/bin/time")?
            / 1024.0;
        let ours_s = logged_seconds(&out)?;
        let torch = Command::new(python)
            .arg(root.join("xtask/python/train_bench.py"))
            .args(["--layout", case.layout, "--depth", &case.depth.to_string(), "--classes", &CLASSES.to_string()])
            .args(["--batch", &case.batch.to_string(), "--crop", case.crop, "--iters", &ITERS.to_string()])
            .args(["--threads", "2"])
            .output()
            .context("running train_bench.py")?;
        if !torch.status.success() {
            bail!("train_bench.py failed: {}", String::from_utf8_lossy(&torch.stderr));
        }
        let report: Value = serde_json::from_slice(&torch.stdout).context("train_bench.py's JSON")?;
        let torch_s: Vec<f64> =
            report["seconds"].as_array().into_iter().flatten().skip(1).filter_map(Value::as_f64).collect();
        let torch_peak = report["peak_rss_mb"].as_f64().unwrap_or(f64::NAN);
        let (ours_m, torch_m) = (median(ours_s), median(torch_s));
        println!(
            "| {} | {}, {} | {ours_m:.2} | {torch_m:.2} | {:.2}x | {our_peak:.0} | {torch_peak:.0} | {:.2}x |",
            case.name,
            case.batch,
            case.crop,
            ours_m / torch_m,
            our_peak / torch_peak
        );
    }
    Ok(())
}
