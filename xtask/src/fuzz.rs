//! `cargo xtask fuzz [--seconds N] [--runs N] [TARGET...]`: every fuzz
//! target of `fuzz/` (cargo-fuzz, nightly), two at a time, each until it
//! has run `--runs` inputs (default 10^7) or for `--seconds` (default
//! 1200), whichever comes first, then a table of what each run did.
//!
//! Each target grows a scratch corpus under `fuzz/target/corpus/TARGET`,
//! seeded from the committed `fuzz/corpus/TARGET`, which it leaves as it
//! is; crashes land in `fuzz/target/artifacts/TARGET/` and fail the task.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};

/// Targets running at once: this machine has two cores.
const AT_ONCE: usize = 2;

/// The flags of every run: the inputs the corpora were minimised for, a
/// per-input time limit, and the memory limits of the contracts' scale.
const LIBFUZZER_FLAGS: &[&str] = &["-max_len=65536", "-timeout=10", "-malloc_limit_mb=1024", "-rss_limit_mb=4096"];

/// What one run printed, read back from its log.
struct Run {
    target: String,
    executions: u64,
    per_second: u64,
    edges: u64,
    /// Coverage when two thirds of the executions had run.
    edges_at_two_thirds: u64,
    artifacts: Vec<PathBuf>,
    succeeded: bool,
}

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let (mut seconds, mut runs) = (1200u64, 10_000_000u64);
    let mut chosen = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut number = |flag: &str| -> Result<u64> {
            let value = args.next().with_context(|| format!("{flag} needs a value"))?;
            value.parse().with_context(|| format!("{flag} {value}: not a whole number"))
        };
        match arg.as_str() {
            "--seconds" => seconds = number("--seconds")?,
            "--runs" => runs = number("--runs")?,
            name if !name.starts_with('-') => chosen.push(name.to_owned()),
            other => bail!("unknown argument {other} (usage: cargo xtask fuzz [--seconds N] [--runs N] [TARGET...])"),
        }
    }
    let fuzz = root.join("fuzz");
    let targets = list_targets(&fuzz)?;
    if let Some(unknown) = chosen.iter().find(|c| !targets.contains(c)) {
        bail!("no fuzz target `{unknown}` (there are: {})", targets.join(", "));
    }
    let targets = if chosen.is_empty() { targets } else { chosen };

    println!("building the fuzz targets (cargo +nightly fuzz build -O)");
    let status = cargo_fuzz(&fuzz).args(["build", "-O"]).status().context("running cargo +nightly fuzz build")?;
    if !status.success() {
        bail!("cargo +nightly fuzz build -O failed ({status})");
    }

    let queue = Mutex::new(targets.iter());
    let finished = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..AT_ONCE {
            scope.spawn(|| {
                loop {
                    // Taken in its own statement: the guard must not live through the run.
                    let next = queue.lock().expect("queue").next();
                    let Some(target) = next else { break };
                    println!("fuzzing {target} for {runs} inputs or {seconds} s");
                    let run = fuzz_one(&fuzz, target, seconds, runs);
                    finished.lock().expect("finished").push(run);
                }
            });
        }
    });
    let mut runs = finished.into_inner().expect("finished").into_iter().collect::<Result<Vec<_>>>()?;
    runs.sort_by(|a, b| a.target.cmp(&b.target));

    println!("\n| target | executions | exec/s | coverage (edges) | grew in the last third | crashes |");
    println!("|---|---|---|---|---|---|");
    for run in &runs {
        let grew = if run.edges > run.edges_at_two_thirds {
            format!("yes (+{})", run.edges - run.edges_at_two_thirds)
        } else {
            "no".to_owned()
        };
        println!(
            "| `{}` | {} | {} | {} | {grew} | {} |",
            run.target,
            run.executions,
            run.per_second,
            run.edges,
            run.artifacts.len()
        );
    }
    let failed: Vec<_> = runs.iter().filter(|r| !r.succeeded || !r.artifacts.is_empty()).collect();
    for run in &failed {
        println!("{}: see fuzz/target/fuzz-{}.log", run.target, run.target);
        for artifact in &run.artifacts {
            println!("  {}", artifact.display());
        }
    }
    if !failed.is_empty() {
        bail!("{} of {} targets failed", failed.len(), runs.len());
    }
    Ok(())
}

/// `cargo +nightly fuzz` in `fuzz/`, free of the outer cargo's settings.
fn cargo_fuzz(fuzz: &Path) -> Command {
    let mut command = Command::new("cargo");
    command.arg("+nightly").arg("fuzz").current_dir(fuzz);
    for var in ["CARGO_TARGET_DIR", "RUSTUP_TOOLCHAIN", "RUSTFLAGS", "CARGO_BUILD_TARGET"] {
        command.env_remove(var);
    }
    command
}

fn list_targets(fuzz: &Path) -> Result<Vec<String>> {
    let output = cargo_fuzz(fuzz)
        .arg("list")
        .output()
        .context("running cargo +nightly fuzz list: needs the nightly toolchain and `cargo install cargo-fuzz`")?;
    if !output.status.success() {
        bail!(
            "cargo +nightly fuzz list failed: {} (needs the nightly toolchain and `cargo install cargo-fuzz`)",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8(output.stdout)?.lines().map(str::to_owned).filter(|l| !l.is_empty()).collect())
}

fn fuzz_one(fuzz: &Path, target: &str, seconds: u64, runs: u64) -> Result<Run> {
    let scratch = fuzz.join("target/corpus").join(target);
    let artifacts = fuzz.join("target/artifacts").join(target);
    fs::create_dir_all(&scratch)?;
    fs::create_dir_all(&artifacts)?;
    let seeds = fuzz.join("corpus").join(target);
    let log = fuzz.join(format!("target/fuzz-{target}.log"));
    let mut command = cargo_fuzz(fuzz);
    command.args(["run", "-O", target]).arg(&scratch);
    if seeds.is_dir() {
        command.arg(&seeds);
    }
    command
        .arg("--")
        .args(LIBFUZZER_FLAGS)
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-runs={runs}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg("-print_final_stats=1");
    // stdout and stderr share one file description, so neither overwrites the other.
    let file = fs::File::create(&log)?;
    command.stdout(file.try_clone()?).stderr(file);
    let status = command.status().with_context(|| format!("running cargo +nightly fuzz run {target}"))?;
    let text = fs::read_to_string(&log).with_context(|| format!("reading {}", log.display()))?;
    let mut found: Vec<PathBuf> = fs::read_dir(&artifacts)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    found.sort();
    Ok(parse_log(target, &text, status.success(), found))
}

/// Reads libFuzzer's progress lines (`#N ... cov: E ...`) and final stats.
fn parse_log(target: &str, text: &str, succeeded: bool, artifacts: Vec<PathBuf>) -> Run {
    let stat = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("stat::{name}:")))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let progress: Vec<(u64, u64)> = text
        .lines()
        .filter_map(|l| {
            let execs = l.strip_prefix('#')?.split_whitespace().next()?.parse().ok()?;
            let cov = l.split_whitespace().skip_while(|w| *w != "cov:").nth(1)?.parse().ok()?;
            Some((execs, cov))
        })
        .collect();
    let executions = stat("number_of_executed_units");
    let edges = progress.iter().map(|&(_, cov)| cov).max().unwrap_or(0);
    let edges_at_two_thirds =
        progress.iter().filter(|&&(execs, _)| execs * 3 <= executions * 2).map(|&(_, cov)| cov).max().unwrap_or(0);
    Run {
        target: target.to_owned(),
        executions,
        per_second: stat("average_exec_per_sec"),
        edges,
        edges_at_two_thirds,
        artifacts,
        succeeded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzer_progress_and_stats() {
        let log = "INFO: Seed: 1\n#2\tINITED cov: 100 ft: 120 corp: 5/1Kb exec/s: 0 rss: 40Mb\n\
                   #500\tNEW    cov: 140 ft: 200 corp: 9/2Kb\n#800\tREDUCE cov: 150 ft: 210\n\
                   #1000\tDONE   cov: 150 ft: 210 corp: 10/2Kb exec/s: 333 rss: 60Mb\n\
                   stat::number_of_executed_units: 1000\nstat::average_exec_per_sec:     333\n";
        let run = parse_log("t", log, true, Vec::new());
        assert_eq!((run.executions, run.per_second, run.edges, run.edges_at_two_thirds), (1000, 333, 150, 140));
    }
}
