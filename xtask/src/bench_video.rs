//! `cargo xtask bench-video`: the throughput of `pspnet video` (ffmpeg's
//! decoding and encoding included) against pure inference per frame, in
//! the same run, with the embedded model at 360x480 on 2 threads.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use pspnet_kernels::ConvOptions;
use pspnet_model::{Overrides, Protocol, Segmenter};

/// Frames in the benchmark video: the three examples, twenty times over.
const FRAMES: usize = 60;

fn ffmpeg(args: &[&str]) -> Result<()> {
    let status = Command::new("ffmpeg").args(["-v", "error", "-y"]).args(args).status().context("running ffmpeg")?;
    if !status.success() {
        bail!("ffmpeg {args:?} failed");
    }
    Ok(())
}

pub(crate) fn run(root: &Path) -> Result<()> {
    let pspnet = root.join("target/release/pspnet");
    if !pspnet.is_file() {
        bail!("{}: build it first (cargo build --release)", pspnet.display());
    }
    let work = root.join("target/bench-video");
    std::fs::create_dir_all(&work)?;
    let (three, video) = (work.join("three.mkv"), work.join("in.mkv"));
    let pattern = format!("{}/camvid_*.png", root.join("examples").display());
    ffmpeg(&[
        "-framerate",
        "10",
        "-pattern_type",
        "glob",
        "-i",
        &pattern,
        "-c:v",
        "ffv1",
        three.to_str().context("path")?,
    ])?;
    let loops = (FRAMES / 3 - 1).to_string();
    ffmpeg(&[
        "-stream_loop",
        &loops,
        "-i",
        three.to_str().context("path")?,
        "-c",
        "copy",
        video.to_str().context("path")?,
    ])?;

    let out = work.join("out.mp4");
    let started = Instant::now();
    let output = Command::new(&pspnet)
        .args(["video", video.to_str().context("path")?, out.to_str().context("path")?])
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .context("running pspnet video")?;
    let video_seconds = started.elapsed().as_secs_f64();
    if !output.status.success() {
        bail!("pspnet video failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    // Its own count: from the first decoded frame to the encoder's end.
    let said = String::from_utf8_lossy(&output.stdout);
    let streaming_fps: f64 = said
        .split("; ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no frames per second in {said:?}"))?;

    let model = root.join("models/pspnet_r18-d8_camvid.f16.safetensors");
    let model = Segmenter::load(&model, &Overrides::default(), ConvOptions::default())?;
    let frames: Vec<image::RgbImage> = ["camvid_0001TP_008550", "camvid_Seq05VD_f01110", "camvid_Seq05VD_f04110"]
        .iter()
        .map(|name| Ok(image::open(root.join(format!("examples/{name}.png")))?.to_rgb8()))
        .collect::<Result<_>>()?;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build()?;
    let infer = |frame: &image::RgbImage| -> Result<()> {
        model.labels(frame.as_raw(), 360, 480, &Protocol::whole())?;
        Ok(())
    };
    pool.install(|| infer(&frames[0]))?;
    let started = Instant::now();
    for i in 0..FRAMES {
        pool.install(|| infer(&frames[i % 3]))?;
    }
    let infer_seconds = started.elapsed().as_secs_f64();

    let (video_fps, infer_fps) = (FRAMES as f64 / video_seconds, FRAMES as f64 / infer_seconds);
    println!("embedded model (PSPNet ResNet-18, CamVid), 480x360, {FRAMES} frames, 2 threads");
    println!();
    println!("| what | frames per second | against inference |");
    println!("|---|---|---|");
    println!("| pure inference per frame (model loaded, {infer_seconds:.2} s) | {infer_fps:.2} | 1.00x |");
    println!(
        "| `pspnet video`, from its first decoded frame (ffmpeg decoding FFV1 and encoding libx264 included) | {streaming_fps:.2} | {:.2}x |",
        streaming_fps / infer_fps
    );
    println!(
        "| `pspnet video`, the whole command ({video_seconds:.2} s: model loading and ffprobe too) | {video_fps:.2} | {:.2}x |",
        video_fps / infer_fps
    );
    Ok(())
}
