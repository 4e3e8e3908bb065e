//! `pspnet video IN OUT`: a video segmented frame by frame into an overlay
//! video, through the `ffmpeg` and `ffprobe` executables on PATH (pipes, no
//! C bindings). Decoding, inference and encoding run on their own threads;
//! the output is written under a temporary name and renamed when complete,
//! so a failure leaves nothing behind and Ctrl-C leaves a playable file of
//! the frames so far.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::sync_channel;
use std::thread;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use image::{RgbImage, imageops};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array2;
use pspnet::render::{labels_image, model_class_names, model_palette, overlay_labels};
use serde_json::Value;

use super::legend::{class_shares, legend_image};
use super::outputs::{Staged, png};
use super::{ModelArgs, OverrideArgs, ProtocolArgs, STOP};

#[derive(Debug, Args)]
pub(crate) struct VideoArgs {
    /// The video to segment: anything ffmpeg reads.
    input: PathBuf,
    /// The overlay video to write, its container chosen by the extension (.mp4, .mkv, ...).
    output: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    protocol: ProtocolArgs,
    #[command(flatten)]
    overrides: OverrideArgs,
    /// Weight of the class colours: per channel floor((1 - a) * frame + a * colour + 0.5).
    #[arg(long, default_value_t = 0.5, value_parser = super::opacity)]
    opacity: f64,
    /// The frame and its overlay side by side (twice the width).
    #[arg(long)]
    side_by_side: bool,
    /// A legend of the classes in view, with their share of the pixels, in the top-left corner.
    #[arg(long)]
    legend: bool,
    /// Segment frames 1, 1+N, 1+2N, ...; every frame is still written, overlaid with the latest labels.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    every: u64,
    /// Encode losslessly with FFV1 (in .mkv, .avi, .mov or .nut) instead of libx264 -preset veryfast -crf 18.
    #[arg(long)]
    lossless: bool,
    /// Write each segmented frame's label PNG as DIR/frame-000001.png, ... (its 1-based index in decode order).
    #[arg(long, value_name = "DIR")]
    labels_dir: Option<PathBuf>,
}

/// What ffprobe says of the first video stream.
struct Probe {
    width: usize,
    height: usize,
    /// The frame rate as ffmpeg writes it (`25/1`, `30000/1001`).
    rate: String,
    /// The frame count, when the container records it.
    frames: Option<u64>,
}

/// `name` run in its own process group, so that Ctrl-C reaches this
/// process only and it decides how the children end.
fn tool(name: &str) -> Command {
    let mut command = Command::new(name);
    command.process_group(0);
    command
}

/// The error of a missing ffmpeg or ffprobe.
fn missing(name: &str) -> String {
    format!("{name} was not found on PATH: pspnet video runs ffmpeg and ffprobe (on Debian: apt-get install ffmpeg)")
}

/// The last line ffmpeg or ffprobe wrote to standard error.
fn last_line(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr).lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message").to_string()
}

fn probe(input: &Path) -> Result<Probe> {
    let output = tool("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height,r_frame_rate,nb_frames"])
        .args(["-of", "json"])
        .arg(input)
        .output();
    let output = match output {
        Err(err) if err.kind() == ErrorKind::NotFound => bail!(missing("ffprobe")),
        result => result.context("running ffprobe")?,
    };
    if !output.status.success() {
        bail!("{}: ffprobe cannot read it: {}", input.display(), last_line(&output.stderr));
    }
    let json: Value = serde_json::from_slice(&output.stdout).context("ffprobe's answer is not JSON")?;
    let stream = json["streams"].get(0).with_context(|| format!("{}: no video stream", input.display()))?;
    let size = |key: &str| stream[key].as_u64().filter(|&v| v > 0).map(|v| v as usize);
    let (Some(width), Some(height)) = (size("width"), size("height")) else {
        bail!("{}: the video stream has no size", input.display());
    };
    let rate = stream["r_frame_rate"].as_str().filter(|r| !r.starts_with('0')).unwrap_or("25/1").to_string();
    let frames = stream["nb_frames"].as_str().and_then(|n| n.parse().ok());
    Ok(Probe { width, height, rate, frames })
}

/// Waits for a child; its last message if it failed.
fn finish(mut child: Child, what: &str) -> Result<()> {
    let mut stderr = Vec::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_end(&mut stderr).ok();
    }
    let status = child.wait().with_context(|| format!("waiting for ffmpeg ({what})"))?;
    if !status.success() {
        bail!("ffmpeg ({what}) failed: {}", last_line(&stderr));
    }
    Ok(())
}

/// How an output picture is drawn from a frame and its labels.
struct Look {
    width: usize,
    height: usize,
    palette: Vec<[u8; 3]>,
    opacity: f64,
    side_by_side: bool,
}

impl Look {
    /// The overlay (with the legend of `legend`'s names and class count),
    /// beside the frame when side by side.
    fn picture(&self, frame: Vec<u8>, labels: &Array2<u32>, legend: Option<&(Vec<String>, usize)>) -> RgbImage {
        let (w, h) = (self.width as u32, self.height as u32);
        let photo = RgbImage::from_raw(w, h, frame).expect("decoded frames are w * h * 3 bytes");
        let mut overlay = overlay_labels(&photo, labels.view(), &self.palette, self.opacity);
        if let Some((names, classes)) = legend {
            let legend = legend_image(&class_shares(labels.view(), *classes), names, &self.palette);
            imageops::overlay(&mut overlay, &legend, 0, 0);
        }
        if !self.side_by_side {
            return overlay;
        }
        let mut both = RgbImage::new(2 * w, h);
        imageops::overlay(&mut both, &photo, 0, 0);
        imageops::overlay(&mut both, &overlay, i64::from(w), 0);
        both
    }
}

pub(crate) fn run(args: VideoArgs) -> Result<ExitCode> {
    let extension = args.output.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
    if args.lossless && !["mkv", "avi", "mov", "nut"].contains(&extension.as_str()) {
        bail!("{}: --lossless writes FFV1, which needs .mkv, .avi, .mov or .nut", args.output.display());
    }
    let Probe { width: w, height: h, rate, frames } = probe(&args.input)?;
    match tool("ffmpeg").arg("-version").stdout(Stdio::null()).status() {
        Err(err) if err.kind() == ErrorKind::NotFound => bail!(missing("ffmpeg")),
        result => drop(result.context("running ffmpeg")?),
    }
    let model = args.model.load(&args.overrides.overrides())?;
    let protocol = args.protocol.protocol(None)?;
    let palette = model_palette(&model.spec);
    let classes = model.spec.classes;
    let names = model_class_names(&model.spec);
    if let Some(dir) = &args.labels_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    let folder = args.output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let partial = tempfile::Builder::new()
        .prefix(".pspnet-video-")
        .suffix(&format!(".{extension}"))
        .tempfile_in(folder)
        .with_context(|| format!("{}: cannot create a file there", folder.display()))?;

    let mut decoder = tool("ffmpeg")
        .args(["-v", "error", "-nostdin", "-threads", "1", "-i"])
        .arg(&args.input)
        .args(["-map", "0:v:0", "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting ffmpeg to decode")?;
    let out_width = if args.side_by_side { 2 * w } else { w };
    let codec: &[&str] = if args.lossless {
        &["-c:v", "ffv1", "-pix_fmt", "bgr0"]
    } else {
        &[
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-crf",
            "18",
            "-pix_fmt",
            "yuv420p",
            "-vf",
            "pad=ceil(iw/2)*2:ceil(ih/2)*2",
        ]
    };
    let mut encoder = tool("ffmpeg")
        .args(["-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", &format!("{out_width}x{h}")])
        .args(["-r", &rate, "-i", "-", "-threads", "1"])
        .args(codec)
        .arg(partial.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting ffmpeg to encode")?;

    super::catch_interrupt();
    let (frames_in, decoded) = sync_channel::<Vec<u8>>(4);
    let mut source = decoder.stdout.take().context("the decoder's output")?;
    let reader = thread::spawn(move || -> std::io::Result<()> {
        loop {
            let mut frame = vec![0u8; w * h * 3];
            if STOP.load(Ordering::Relaxed)
                || super::stream::fill(&mut source, &mut frame)? < frame.len()
                || frames_in.send(frame).is_err()
            {
                return Ok(());
            }
        }
    });
    // The pictures are drawn on the encoding thread, beside the inference.
    let (frames_out, to_encode) = sync_channel::<(Vec<u8>, Arc<Array2<u32>>)>(4);
    let mut sink = encoder.stdin.take().context("the encoder's input")?;
    let look = Look { width: w, height: h, palette, opacity: args.opacity, side_by_side: args.side_by_side };
    let legend = args.legend.then_some((names, classes));
    let writer = thread::spawn(move || -> std::io::Result<()> {
        for (frame, labels) in to_encode {
            sink.write_all(&look.picture(frame, &labels, legend.as_ref()).into_raw())?;
        }
        Ok(())
    });

    let progress = match frames {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::no_length(),
    };
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} frames, {per_sec}, {elapsed} elapsed, ETA {eta}")
            .expect("valid template"),
    );
    let mut latest: Option<Arc<Array2<u32>>> = None;
    let mut started: Option<Instant> = None;
    let mut written = 0u64;
    let result = (|| -> Result<()> {
        for (i, frame) in decoded.into_iter().enumerate() {
            started.get_or_insert_with(Instant::now);
            let index = i as u64 + 1;
            if (index - 1).is_multiple_of(args.every) {
                let labels = model.labels(&frame, h, w, &protocol).with_context(|| format!("frame {index}"))?;
                if let Some(dir) = &args.labels_dir {
                    let mut staged = Staged::default();
                    staged.add(dir.join(format!("frame-{index:06}.png")), png(labels_image(labels.view(), classes)))?;
                    staged.commit()?;
                }
                latest = Some(Arc::new(labels));
            }
            let labels = latest.as_ref().expect("frame 1 is always segmented");
            if frames_out.send((frame, Arc::clone(labels))).is_err() {
                break;
            }
            written += 1;
            progress.inc(1);
        }
        Ok(())
    })();
    progress.finish_and_clear();
    drop(frames_out);
    let interrupted = STOP.load(Ordering::Relaxed);
    if interrupted || result.is_err() {
        let _ = decoder.kill();
    }
    let wrote = writer.join().map_err(|_| anyhow::anyhow!("the encoding thread panicked"))?;
    let read = reader.join().map_err(|_| anyhow::anyhow!("the decoding thread panicked"))?;
    result?;
    let encoded = finish(encoder, "encoding");
    wrote.context("writing frames to ffmpeg").and(encoded)?;
    if !interrupted {
        read.context("reading frames from ffmpeg")?;
        finish(decoder, &format!("decoding {}", args.input.display()))?;
    } else {
        let _ = decoder.wait();
    }
    // Temporary files are private (0600); the video is an ordinary file.
    std::fs::set_permissions(partial.path(), std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    partial.persist(&args.output).with_context(|| format!("{}: cannot rename into place", args.output.display()))?;
    if interrupted {
        eprintln!("interrupted: {} holds the first {written} frames", args.output.display());
        return Ok(ExitCode::from(130));
    }
    let seconds = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
    println!(
        "{}: {written} frames, {w}x{h} at {rate} fps; {:.2} frames per second from the first decoded frame",
        args.output.display(),
        written as f64 / seconds.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}
