//! `cargo xtask bench`: whole-network inference, ours against PyTorch eager
//! and ONNX Runtime, on the same checkpoint and input, in one invocation.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use pspnet_model::{Overrides, Precision, Segmenter, StageTimes};
use serde_json::Value;

/// One benchmark configuration.
struct Case {
    name: &'static str,
    layout: &'static str,
    depth: usize,
    classes: usize,
    size: (usize, usize),
}

const CASES: [Case; 2] = [
    Case { name: "PSPNet-50", layout: "semseg", depth: 50, classes: 150, size: (473, 473) },
    Case { name: "PSPNet-101", layout: "semseg", depth: 101, classes: 19, size: (713, 713) },
];

/// Median, min and max of timed runs.
struct Timing {
    median: f64,
    min: f64,
    max: f64,
}

impl Timing {
    fn of(mut seconds: Vec<f64>) -> Timing {
        seconds.sort_by(f64::total_cmp);
        Timing { median: seconds[seconds.len() / 2], min: seconds[0], max: seconds[seconds.len() - 1] }
    }
}

/// The timings of one thread count: the whole forward pass and each stage.
struct Forward {
    total: Timing,
    stages: Vec<(&'static str, Timing)>,
}

/// Times the forward pass, stage by stage, on pools of each of `threads`,
/// after a warm-up on each: `runs` rounds, each running every pool once in
/// turn, so the machine's slower and faster phases fall on all of them
/// alike and their ratios compare like with like.
fn time_forward(model: &Segmenter, x: &pspnet_tensor::Tensor, threads: &[usize], runs: usize) -> Result<Vec<Forward>> {
    let pools = threads
        .iter()
        .map(|&n| rayon::ThreadPoolBuilder::new().num_threads(n).build())
        .collect::<Result<Vec<_>, _>>()?;
    let forward = |pool: &rayon::ThreadPool| -> Result<StageTimes> {
        pool.install(|| {
            let (logits, times) = model.net.profile(x)?;
            std::hint::black_box(logits);
            Ok(times)
        })
    };
    for pool in &pools {
        forward(pool)?;
    }
    let mut samples = vec![Vec::with_capacity(runs); pools.len()];
    for _ in 0..runs {
        for (pool, samples) in pools.iter().zip(&mut samples) {
            samples.push(forward(pool)?);
        }
    }
    Ok(samples
        .into_iter()
        .map(|samples| {
            let timing = |of: &dyn Fn(&StageTimes) -> Duration| {
                Timing::of(samples.iter().map(|times| of(times).as_secs_f64()).collect())
            };
            let stages = samples[0].iter().enumerate().map(|(i, (stage, _))| (*stage, timing(&|t| t[i].1))).collect();
            Forward { total: timing(&|t| t.iter().map(|(_, d)| *d).sum()), stages }
        })
        .collect())
}

/// Peak RSS in MiB of `pspnet segment` on one image, from `/usr/bin/time -v`.
fn segment_rss(root: &Path, checkpoint: &Path, image: &Path, out: &Path, precision: Precision) -> Result<f64> {
    let binary = root.join("target/release/pspnet");
    let output = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(&binary)
        .args(["segment", image.to_str().context("path")?, "--model", checkpoint.to_str().context("path")?])
        .args(["--out", out.to_str().context("path")?])
        .args(["--precision", if precision == Precision::Bf16 { "bf16" } else { "f32" }])
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .context("running /usr/bin/time (Debian package `time`)")?;
    let text = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("pspnet segment failed: {text}");
    }
    let kb: f64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
        .context("no maximum resident set size in /usr/bin/time's report")?
        .trim()
        .parse()?;
    Ok(kb / 1024.0)
}

fn peer(root: &Path, python: &str, engine: &str, case: &Case, checkpoint: &Path, runs: usize) -> Result<(Timing, f64)> {
    let (h, w) = case.size;
    let output = Command::new(python)
        .arg(root.join("xtask/python/bench_peers.py"))
        .args(["--engine", engine, "--checkpoint", checkpoint.to_str().context("path")?, "--layout", case.layout])
        .args(["--depth", &case.depth.to_string(), "--size", &format!("{h}x{w}"), "--threads", "2"])
        .args(["--runs", &runs.to_string()])
        .output()
        .with_context(|| format!("running {python}"))?;
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        bail!("{}", err.lines().last().unwrap_or("failed"));
    }
    let line = String::from_utf8_lossy(&output.stdout);
    let v: Value = serde_json::from_str(line.lines().last().unwrap_or_default())?;
    let f = |k: &str| v[k].as_f64().with_context(|| format!("{engine}: no {k} in {line}"));
    Ok((Timing { median: f("median_s")?, min: f("min_s")?, max: f("max_s")? }, f("peak_rss_mb")?))
}

/// `[--runs N] [--no-peers]`
pub(crate) fn run(root: &Path, python: &str, args: &[String]) -> Result<()> {
    let runs = match args.iter().position(|a| a == "--runs") {
        Some(i) => args.get(i + 1).context("--runs needs a number")?.parse()?,
        None => 5,
    };
    let peers = !args.iter().any(|a| a == "--no-peers");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "--bin", "pspnet"])
        .current_dir(root)
        .status()?;
    if !status.success() {
        bail!("cargo build --release failed");
    }
    let peak = crate::kernel_report::fma_peak(root, "2t").ok();
    let bf16_peak = crate::kernel_report::bf16_peak(root, "2t");
    for case in &CASES {
        let dir: PathBuf = root.join("target/bench").join(case.name);
        let checkpoint = dir.join("checkpoint.pth");
        if !checkpoint.exists() {
            let args: Vec<String> = ["--layout", case.layout, "--depth", &case.depth.to_string()]
                .into_iter()
                .map(str::to_string)
                .chain(["--classes".into(), case.classes.to_string(), "--out".into(), dir.display().to_string()])
                .collect();
            crate::crosscheck::reference(root, python, &args)
                .context("the benchmark checkpoints are written by reference.py (pip install torch numpy)")?;
        }
        let mut model = Segmenter::load(&checkpoint, &Overrides::default(), crate::conv_options()?)?;
        let (h, w) = case.size;
        let rgb: Vec<u8> = (0..h * w * 3).map(|i| ((i * 2_654_435_761) >> 13) as u8).collect();
        let image_path = dir.join("input.png");
        image::RgbImage::from_raw(w as u32, h as u32, rgb.clone()).context("image")?.save(&image_path)?;
        let x = model.normalization().image(&rgb, h, w)?;
        let flops = model.net.flops(x.shape())? as f64;
        println!(
            "\n## {} ({} layout, {} classes), {h}x{w}, {:.2} GFLOP, {runs} timed runs after a warm-up",
            case.name,
            case.layout,
            case.classes,
            flops / 1e9
        );
        let mut timings = time_forward(&model, &x, &[2, 1], runs)?;
        let (one, two) = (timings.remove(1), timings.remove(0));
        let rss = segment_rss(root, &checkpoint, &image_path, &dir.join("out"), Precision::F32)?;
        model.net.set_precision(Precision::Bf16);
        let bf16 = time_forward(&model, &x, &[2], runs)?.remove(0).total;
        let bf16_rss = segment_rss(root, &checkpoint, &image_path, &dir.join("out"), Precision::Bf16)?;
        let mut rows = vec![
            ("pspnet-rs (fp32)".to_string(), two.total.median, two.total.min, two.total.max, Some(rss), peak),
            ("pspnet-rs (bf16)".to_string(), bf16.median, bf16.min, bf16.max, Some(bf16_rss), bf16_peak),
        ];
        if peers {
            for (engine, label) in [("torch", "PyTorch eager (fp32)"), ("onnxruntime", "ONNX Runtime (CPU)")] {
                match peer(root, python, engine, case, &checkpoint, runs) {
                    Ok((t, rss)) => rows.push((label.to_string(), t.median, t.min, t.max, Some(rss), peak)),
                    Err(e) => println!("skipped {label}: {e:#}"),
                }
            }
        }
        println!(
            "| engine (2 threads) | median s | min-max s | our fp32 time / its | our bf16 time / its | GFLOP/s | % of FMA peak | % of its arithmetic's peak | peak RSS MiB |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        let percent =
            |gflops: f64, peak: Option<f64>| peak.map_or("n/a".into(), |p| format!("{:.0}%", 100.0 * gflops / p));
        for (label, median, min, max, rss, own_peak) in &rows {
            let gflops = flops / median / 1e9;
            println!(
                "| {label} | {median:.3} | {min:.3}-{max:.3} | {:.2}x | {:.2}x | {gflops:.1} | {} | {} | {} |",
                two.total.median / median,
                bf16.median / median,
                percent(gflops, peak),
                percent(gflops, *own_peak),
                rss.map_or("n/a".into(), |r| format!("{r:.0}")),
            );
        }
        println!(
            "1 thread (fp32): {:.3} s median; 2 threads are {:.2}x faster",
            one.total.median,
            one.total.median / two.total.median
        );
        println!("\n| stage (fp32) | 2 threads ms | % | 1 thread ms | 2 threads / 1 |");
        println!("|---|---|---|---|---|");
        for ((stage, two_t), (_, one_t)) in two.stages.iter().zip(&one.stages) {
            println!(
                "| {stage} | {:.1} | {:.0}% | {:.1} | {:.2}x |",
                two_t.median * 1e3,
                100.0 * two_t.median / two.total.median,
                one_t.median * 1e3,
                one_t.median / two_t.median
            );
        }
    }
    Ok(())
}
