//! `cargo xtask sanitize [asan|valgrind]`: the tests of the crates that hold
//! `unsafe` code (the kernels' disjoint-write helpers and SIMD paths, the
//! tensor crate's huge-page advice), under AddressSanitizer (nightly) and
//! under valgrind's memcheck. Both by default.
//!
//! The two see different code: ASan runs natively, so the AVX-512 kernels
//! this machine has run under it; valgrind emulates up to AVX2, and the
//! kernels' runtime detection then picks their AVX2 and portable paths.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The crates whose own code is `unsafe` somewhere.
const CRATES: &[&str] = &["pspnet-kernels", "pspnet-tensor"];

const TARGET: &str = "x86_64-unknown-linux-gnu";

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let which: Vec<&str> =
        if args.is_empty() { vec!["asan", "valgrind"] } else { args.iter().map(String::as_str).collect() };
    for tool in which {
        match tool {
            "asan" => asan(root)?,
            "valgrind" => valgrind(root)?,
            other => bail!("unknown checker {other} (usage: cargo xtask sanitize [asan|valgrind])"),
        }
    }
    Ok(())
}

fn packages() -> Vec<&'static str> {
    CRATES.iter().flat_map(|c| ["-p", c]).collect()
}

fn asan(root: &Path) -> Result<()> {
    println!("== AddressSanitizer: cargo +nightly test --target {TARGET} {} --lib --tests", packages().join(" "));
    let status = Command::new("cargo")
        .args(["+nightly", "test", "--target", TARGET, "--lib", "--tests"])
        .args(packages())
        .env("RUSTFLAGS", "-Zsanitizer=address")
        .env("CARGO_TARGET_DIR", root.join("target/asan"))
        .env("ASAN_OPTIONS", "detect_leaks=1")
        .env_remove("RUSTUP_TOOLCHAIN")
        .current_dir(root)
        .status()
        .context("running cargo +nightly test (needs the nightly toolchain)")?;
    if !status.success() {
        bail!("the tests under AddressSanitizer failed ({status})");
    }
    Ok(())
}

fn valgrind(root: &Path) -> Result<()> {
    let binaries = test_binaries(root)?;
    for (binary, folder) in &binaries {
        println!("== valgrind memcheck: {}", binary.display());
        let status = Command::new("valgrind")
            .args(["--tool=memcheck", "--error-exitcode=99", "--leak-check=no", "--track-origins=yes", "-q"])
            .arg(binary)
            .args(["--test-threads=2", "-q"])
            .current_dir(folder)
            .status()
            .context("running valgrind (apt-get install valgrind)")?;
        if !status.success() {
            bail!("{} under valgrind failed ({status})", binary.display());
        }
    }
    Ok(())
}

/// The test executables `cargo test --no-run` builds for [`CRATES`], each
/// with its crate's folder, where `cargo test` would run it.
fn test_binaries(root: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
    let output = Command::new("cargo")
        .args(["test", "--no-run", "--lib", "--tests", "--message-format=json"])
        .args(packages())
        .current_dir(root)
        .output()
        .context("running cargo test --no-run")?;
    if !output.status.success() {
        bail!("cargo test --no-run failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let mut binaries = Vec::new();
    for line in String::from_utf8(output.stdout)?.lines() {
        let message: serde_json::Value = serde_json::from_str(line)?;
        let field = |name: &str| message.get(name).and_then(|v| v.as_str()).map(PathBuf::from);
        if let (Some(executable), Some(manifest)) = (field("executable"), field("manifest_path")) {
            let folder = manifest.parent().context("a manifest path has a folder")?.to_path_buf();
            binaries.push((executable, folder));
        }
    }
    Ok(binaries)
}
