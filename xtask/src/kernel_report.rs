//! `cargo xtask kernel-report`: turns the criterion results of
//! `cargo bench --bench conv` into the markdown table of docs/performance.md.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// One criterion measurement: median time and what one iteration processes.
struct Measurement {
    median_ns: f64,
    /// FLOP (for `Elements`) or bytes (for `Bytes`) per iteration.
    work: f64,
}

impl Measurement {
    /// GFLOP/s or GB/s (10^9 units per second).
    fn rate(&self) -> f64 {
        self.work / self.median_ns
    }
}

/// `group -> (function/value) -> measurement`.
type Results = BTreeMap<String, BTreeMap<String, Measurement>>;

fn collect(dir: &Path, results: &mut Results) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, results)?;
        } else if path.ends_with("new/benchmark.json") {
            let bench: Value = serde_json::from_str(&fs::read_to_string(&path)?)?;
            let estimates: Value = serde_json::from_str(&fs::read_to_string(path.with_file_name("estimates.json"))?)?;
            let group = bench["group_id"].as_str().unwrap_or_default().to_string();
            let id = format!(
                "{}/{}",
                bench["function_id"].as_str().unwrap_or_default(),
                bench["value_str"].as_str().unwrap_or_default()
            );
            let throughput = &bench["throughput"];
            let work = throughput["Elements"].as_f64().or_else(|| throughput["Bytes"].as_f64()).unwrap_or(0.0);
            let median_ns = estimates["median"]["point_estimate"].as_f64().context("estimates.json has no median")?;
            results.entry(group).or_default().insert(id, Measurement { median_ns, work });
        }
    }
    Ok(())
}

fn results(root: &Path) -> Result<Results> {
    let dir: PathBuf = root.join("target/criterion");
    if !dir.is_dir() {
        bail!("{} not found: run `cargo bench --bench conv` first", dir.display());
    }
    let mut results = Results::new();
    collect(&dir, &mut results)?;
    Ok(results)
}

/// The FMA peak in GFLOP/s on `threads` threads ("1t" or "2t") measured by
/// the last `cargo bench --bench conv`.
pub(crate) fn fma_peak(root: &Path, threads: &str) -> Result<f64> {
    let results = results(root)?;
    let peak = results.get("peak").context("no `peak` group: run the whole conv bench")?;
    let rate = |id: &str| peak.get(id).map(Measurement::rate);
    rate(&format!("fma-avx512/{threads}"))
        .or_else(|| rate(&format!("fma-avx2/{threads}")))
        .context("no FMA peak measurement: run `cargo bench --bench conv -- peak`")
}

/// The AVX512-BF16 dot-product peak in GFLOP/s on `threads` threads, if
/// this CPU has one and the last `cargo bench --bench conv` measured it.
pub(crate) fn bf16_peak(root: &Path, threads: &str) -> Option<f64> {
    results(root).ok()?.get("peak")?.get(&format!("dpbf16-avx512/{threads}")).map(Measurement::rate)
}

pub(crate) fn run(root: &Path) -> Result<()> {
    let results = results(root)?;
    let peak = results.get("peak").context("no `peak` group: run the whole conv bench")?;
    let rate = |id: &str| peak.get(id).map(Measurement::rate);
    let fma = |t: &str| fma_peak(root, t).unwrap_or(f64::NAN);
    let stream = |t: &str| rate(&format!("stream-read/{t}")).unwrap_or(f64::NAN);
    let (fma1, fma2, bw1, bw2) = (fma("1t"), fma("2t"), stream("1t"), stream("2t"));
    println!("| ceiling | 1 thread | 2 threads |");
    println!("|---|---|---|");
    println!("| FMA peak (GFLOP/s) | {fma1:.1} | {fma2:.1} |");
    println!("| streaming read (GB/s) | {bw1:.1} | {bw2:.1} |");
    println!();
    println!(
        "| layer | unit | ours 1t | % peak | baseline 1t | ratio | ours 2t | % peak | baseline 2t | ratio | 2t/1t |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (group, m) in &results {
        let Some(layer) = group.strip_prefix("conv/") else { continue };
        let ours = |t: &str| m.iter().find(|(id, _)| id.starts_with("ours") && id.ends_with(t)).map(|(_, v)| v);
        let base = |t: &str| m.get(&format!("im2col-matrixmultiply/{t}"));
        let (Some(o1), Some(o2), Some(b1), Some(b2)) = (ours("/1t"), ours("/2t"), base("1t"), base("2t")) else {
            continue;
        };
        let ppm = layer.starts_with("ppm");
        let (unit, c1, c2) = if ppm { ("GB/s", bw1, bw2) } else { ("GFLOP/s", fma1, fma2) };
        println!(
            "| {layer} | {unit} | {:.1} | {:.0}% | {:.1} | {:.2}x | {:.1} | {:.0}% | {:.1} | {:.2}x | {:.2}x |",
            o1.rate(),
            100.0 * o1.rate() / c1,
            b1.rate(),
            b1.median_ns / o1.median_ns,
            o2.rate(),
            100.0 * o2.rate() / c2,
            b2.rate(),
            b2.median_ns / o2.median_ns,
            o1.median_ns / o2.median_ns,
        );
    }
    Ok(())
}
