//! `pspnet video` and `pspnet segment --stdin` on a short lossless video made
//! from the bundled examples: every frame's labels equal `pspnet segment`'s
//! on the same decoded frame, frame count and rate are kept, and a missing
//! ffmpeg, an unreadable video or a wrong frame size are refused without
//! leaving output behind. Needs ffmpeg on PATH (CI installs it); says it
//! skipped otherwise.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn pspnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pspnet")).args(args).output().expect("the pspnet binary runs")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn ffmpeg(args: &[&str]) -> Output {
    let out = Command::new("ffmpeg").args(["-v", "error", "-y"]).args(args).output().expect("ffmpeg runs");
    assert!(out.status.success(), "ffmpeg {args:?}: {}", text(&out));
    out
}

fn have_ffmpeg() -> bool {
    let found = Command::new("ffmpeg").arg("-version").stdout(Stdio::null()).status().is_ok();
    if !found {
        eprintln!("skipped: ffmpeg is not on PATH (on Debian: apt-get install ffmpeg)");
    }
    found
}

/// `count,rate` of a video's first stream, frames counted by decoding.
fn frames_and_rate(video: &Path) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames,r_frame_rate", "-of", "csv=p=0"])
        .arg(video)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `pspnet segment --stdin SIZE --stdout labels` (and `flags`) fed `input`.
fn stream_labels(size: &str, flags: &[&str], input: Vec<u8>) -> Output {
    stream(size, "labels", flags, input)
}

/// `pspnet segment --stdin SIZE --stdout OUTPUT` (and `flags`) fed `input`.
fn stream(size: &str, output: &str, flags: &[&str], input: Vec<u8>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pspnet"))
        .args(["segment", "--stdin", size, "--stdout", output])
        .args(flags)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || pipe.write_all(&input));
    let output = child.wait_with_output().unwrap();
    // A command that refuses its arguments reads nothing: the pipe breaks.
    if let Err(e) = writer.join().unwrap() {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    output
}

/// The three bundled 480x360 examples as a 5 fps FFV1 video, and the
/// frames decoded back from it as PNGs.
fn example_video(dir: &Path) -> (PathBuf, Vec<PathBuf>) {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let video = dir.join("in.mkv");
    let pattern = format!("{}/camvid_*.png", examples.display());
    ffmpeg(&["-framerate", "5", "-pattern_type", "glob", "-i", &pattern, "-c:v", "ffv1", video.to_str().unwrap()]);
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    ffmpeg(&["-i", video.to_str().unwrap(), frames.join("frame-%06d.png").to_str().unwrap()]);
    let mut decoded: Vec<PathBuf> = std::fs::read_dir(&frames).unwrap().map(|e| e.unwrap().path()).collect();
    decoded.sort();
    (video, decoded)
}

#[test]
fn video_and_stdin_give_segment_s_labels_for_every_frame() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (video, frames) = example_video(dir.path());
    assert_eq!(frames.len(), 3);
    let segmented = dir.path().join("segmented");
    let mut args = vec!["segment", "--out", segmented.to_str().unwrap()];
    args.extend(frames.iter().map(|f| f.to_str().unwrap()));
    assert!(pspnet(&args).status.success());
    let labels_of = |frame: &Path| {
        let stem = frame.file_stem().unwrap().to_str().unwrap();
        image::open(segmented.join(format!("{stem}.labels.png"))).unwrap().to_luma8()
    };

    let (out, labels) = (dir.path().join("out.mkv"), dir.path().join("labels"));
    let run = pspnet(&[
        "video",
        video.to_str().unwrap(),
        out.to_str().unwrap(),
        "--lossless",
        "--labels-dir",
        labels.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(frames_and_rate(&out), "5/1,3", "frame rate and count kept");
    for frame in &frames {
        let name = frame.file_name().unwrap();
        assert_eq!(image::open(labels.join(name)).unwrap().to_luma8(), labels_of(frame), "{name:?}");
    }
    // Lossless: the first frame of the output is segment's overlay of the first frame.
    let first = dir.path().join("out-first.png");
    ffmpeg(&["-i", out.to_str().unwrap(), "-frames:v", "1", first.to_str().unwrap()]);
    let overlay = segmented.join("frame-000001.overlay.png");
    assert_eq!(image::open(&first).unwrap().to_rgb8(), image::open(&overlay).unwrap().to_rgb8());

    // --every 2: frames 1 and 3 segmented, all three written.
    let (sparse, sparse_labels) = (dir.path().join("sparse.mp4"), dir.path().join("sparse-labels"));
    let args = ["video", video.to_str().unwrap(), sparse.to_str().unwrap(), "--every", "2", "--side-by-side"];
    let run = pspnet(&[&args[..], &["--labels-dir", sparse_labels.to_str().unwrap()]].concat());
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(frames_and_rate(&sparse), "5/1,3");
    let mut names: Vec<String> =
        std::fs::read_dir(&sparse_labels).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["frame-000001.png", "frame-000003.png"]);

    // The same frames as raw RGB24 on standard input.
    let raw = ffmpeg(&["-i", video.to_str().unwrap(), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]).stdout;
    let streamed = stream_labels("480x360", &[], raw);
    assert!(streamed.status.success());
    let expected: Vec<u8> = frames.iter().flat_map(|f| labels_of(f).into_raw()).collect();
    assert_eq!(streamed.stdout, expected, "--stdout labels: W*H bytes per frame");
}

#[test]
fn missing_ffmpeg_unreadable_video_and_wrong_frame_size_are_refused() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (video, _) = example_video(dir.path());
    let out = dir.path().join("out.mp4");
    let run = Command::new(env!("CARGO_BIN_EXE_pspnet"))
        .args(["video", video.to_str().unwrap(), out.to_str().unwrap()])
        .env("PATH", dir.path().join("nowhere"))
        .output()
        .unwrap();
    assert!(!run.status.success() && text(&run).contains("ffprobe was not found on PATH"), "{}", text(&run));
    let garbage = dir.path().join("garbage.mp4");
    std::fs::write(&garbage, b"not a video at all").unwrap();
    let run = pspnet(&["video", garbage.to_str().unwrap(), out.to_str().unwrap()]);
    assert!(!run.status.success() && text(&run).contains("garbage.mp4: ffprobe cannot read it"), "{}", text(&run));
    let run = pspnet(&["video", video.to_str().unwrap(), dir.path().join("out.mp4").to_str().unwrap(), "--lossless"]);
    assert!(!run.status.success() && text(&run).contains("--lossless writes FFV1"), "{}", text(&run));
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(
        !left.iter().any(|n| n.to_string_lossy().contains("out") || n.to_string_lossy().starts_with(".pspnet")),
        "{left:?}"
    );

    // 1.5 frames of 480x360: the first frame's labels, then an error naming the bytes.
    let frame = image::open(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/camvid_0001TP_008550.png"))
        .unwrap()
        .to_rgb8()
        .into_raw();
    let half = frame.len() / 2;
    let run = stream_labels("480x360", &[], [&frame[..], &frame[..half]].concat());
    assert!(!run.status.success());
    assert_eq!(run.stdout.len(), 480 * 360, "the complete frame's labels came out first");
    assert!(text(&run).contains(&format!("standard input ended {half} bytes into frame 2")), "{}", text(&run));
}

/// Ctrl-C (SIGINT) mid-video: the file holds the frames written so far and
/// plays; the exit code is 130.
#[test]
fn ctrl_c_leaves_a_playable_video_of_the_frames_so_far() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (three, _) = example_video(dir.path());
    let long = dir.path().join("long.mkv");
    ffmpeg(&["-stream_loop", "9", "-i", three.to_str().unwrap(), "-c", "copy", long.to_str().unwrap()]);
    let (out, labels) = (dir.path().join("cut.mp4"), dir.path().join("labels"));
    let child = Command::new(env!("CARGO_BIN_EXE_pspnet"))
        .args(["video", long.to_str().unwrap(), out.to_str().unwrap(), "--labels-dir", labels.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !labels.join("frame-000002.png").exists() {
        assert!(started.elapsed().as_secs() < 120, "no second frame after two minutes");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: kill() with a live child's pid and a valid signal number.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) }, 0);
    let run = child.wait_with_output().unwrap();
    assert_eq!(run.status.code(), Some(130), "{}", text(&run));
    assert!(text(&run).contains("holds the first"), "{}", text(&run));
    let counted = frames_and_rate(&out);
    let frames: u32 = counted.split(',').nth(1).unwrap().parse().unwrap();
    assert!((2..30).contains(&frames), "{counted}: the frames so far, not all 30");
}

/// Above 256 classes `--stdout labels` writes two bytes per pixel,
/// little-endian: a 300-class model trained for one step from scratch.
#[test]
fn many_classes_stream_as_u16_little_endian() {
    let dir = tempfile::tempdir().unwrap();
    let (images, labels) = (dir.path().join("images"), dir.path().join("labels"));
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&labels).unwrap();
    for (i, name) in ["a", "b"].iter().enumerate() {
        let rgb = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, (i * 90) as u8]));
        rgb.save(images.join(format!("{name}.png"))).unwrap();
        let ids = image::ImageBuffer::<image::Luma<u16>, _>::from_fn(64, 48, |x, y| {
            image::Luma([((x * 7 + y) % 300) as u16])
        });
        ids.save(labels.join(format!("{name}.png"))).unwrap();
    }
    let run = dir.path().join("run");
    let train = pspnet(&[
        "train",
        "--dataset",
        "custom",
        "--images",
        images.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
        "--classes",
        "300",
        "--layout",
        "mmseg",
        "--depth",
        "18",
        "--batch",
        "2",
        "--iters",
        "1",
        "--crop",
        "48x64",
        "--augment",
        "crop",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(train.status.success(), "{}", text(&train));
    let model = run.join("last.safetensors");
    let photo = images.join("a.png");
    let out = dir.path().join("seg");
    let seg = pspnet(&[
        "segment",
        photo.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(seg.status.success(), "{}", text(&seg));
    let expected = image::open(out.join("a.labels.png")).unwrap().to_luma16().into_raw();
    let raw = image::open(&photo).unwrap().to_rgb8().into_raw();
    let streamed = stream_labels("64x48", &["--model", model.to_str().unwrap()], raw);
    assert!(streamed.status.success());
    let got: Vec<u16> = streamed.stdout.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
    assert_eq!(got, expected);
}

#[test]
fn an_overlay_stream_equals_segment_s_overlay_and_bad_sizes_are_refused() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/camvid_0001TP_008550.png");
    let dir = tempfile::tempdir().unwrap();
    let seg =
        pspnet(&["segment", example.to_str().unwrap(), "--out", dir.path().to_str().unwrap(), "--opacity", "0.3"]);
    assert!(seg.status.success(), "{}", text(&seg));
    let expected = image::open(dir.path().join("camvid_0001TP_008550.overlay.png")).unwrap().to_rgb8().into_raw();
    let frame = image::open(&example).unwrap().to_rgb8().into_raw();
    let run = stream("480x360", "overlay", &["--opacity", "0.3"], [&frame[..], &frame[..]].concat());
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(run.stdout, [&expected[..], &expected[..]].concat(), "two frames, each segment's overlay");

    for bad in ["480", "480x", "0x360", "480x-3", "axb"] {
        let run = stream(bad, "labels", &[], frame.clone());
        assert!(!run.status.success() && run.stdout.is_empty(), "--stdin {bad}");
        assert!(text(&run).contains(&format!("\"{bad}\": expected WIDTHxHEIGHT")), "{}", text(&run));
    }
}
