//! `cargo xtask jpeg-diff JPEG_DIR PNG_DIR`: how far the `image` crate's JPEG
//! decoder lands from another decoder's output (e.g. libjpeg-turbo through
//! PIL, saved losslessly as PNG files of the same stems).

use std::path::Path;

use anyhow::{Context, Result, bail};

pub(crate) fn run(args: &[String]) -> Result<()> {
    let [jpegs, pngs] = args else { bail!("usage: cargo xtask jpeg-diff JPEG_DIR PNG_DIR") };
    let mut files: Vec<_> = std::fs::read_dir(jpegs)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jpg" || e == "jpeg"))
        .collect();
    files.sort();
    let (mut samples, mut differing, mut sum_abs, mut max_abs) = (0u64, 0u64, 0u64, 0u8);
    let mut histogram = [0u64; 4];
    for jpeg in &files {
        let ours = image::open(jpeg).with_context(|| format!("{}", jpeg.display()))?.to_rgb8();
        let stem = jpeg.file_stem().context("file name")?;
        let other = Path::new(pngs).join(stem).with_extension("png");
        let theirs = image::open(&other).with_context(|| format!("{}", other.display()))?.to_rgb8();
        if ours.dimensions() != theirs.dimensions() {
            bail!("{}: sizes differ", jpeg.display());
        }
        for (a, b) in ours.as_raw().iter().zip(theirs.as_raw()) {
            let d = a.abs_diff(*b);
            samples += 1;
            differing += u64::from(d > 0);
            sum_abs += u64::from(d);
            max_abs = max_abs.max(d);
            histogram[usize::from(d.min(3))] += 1;
        }
    }
    let pct = |n: u64| 100.0 * n as f64 / samples.max(1) as f64;
    println!(
        "{} images, {samples} samples: {:.2}% differ, mean |diff| {:.4} levels, max {max_abs}",
        files.len(),
        pct(differing),
        sum_abs as f64 / samples.max(1) as f64
    );
    println!(
        "|diff| = 0: {:.2}%, 1: {:.2}%, 2: {:.2}%, >= 3: {:.2}%",
        pct(histogram[0]),
        pct(histogram[1]),
        pct(histogram[2]),
        pct(histogram[3])
    );
    Ok(())
}
