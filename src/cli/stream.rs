//! `pspnet segment --stdin WxH --stdout labels|overlay`: raw RGB24 frames in,
//! one result per frame out, for pipes between ffmpeg and ffplay.

use std::io::{ErrorKind, Read, Write};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use image::RgbImage;
use pspnet::render::overlay_labels;
use pspnet_model::{Protocol, Segmenter};

/// What `--stdout` writes for each frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum StreamOutput {
    /// The class of each pixel: one byte, or two (little-endian) above 256 classes.
    Labels,
    /// The class colours blended over the frame, RGB24.
    Overlay,
}

/// `WIDTHxHEIGHT`, ffmpeg's order.
pub(crate) fn frame_size(s: &str) -> Result<[usize; 2], String> {
    let parse = |v: &str| v.trim().parse::<usize>().ok().filter(|&n| n > 0);
    match s.split_once(['x', 'X']).map(|(w, h)| (parse(w), parse(h))) {
        Some((Some(w), Some(h))) => Ok([w, h]),
        _ => Err(format!("{s:?}: expected WIDTHxHEIGHT, e.g. 480x360")),
    }
}

/// Reads into `buf` until it is full or the input ends; how many bytes came.
pub(crate) fn fill(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

/// Fills `frame` from `input`: `Ok(false)` at the end of the stream between
/// frames; an error naming the byte count if it ends inside one.
fn read_frame(input: &mut impl Read, frame: &mut [u8], index: u64, [w, h]: [usize; 2]) -> Result<bool> {
    match fill(input, frame).context("reading standard input")? {
        0 => Ok(false),
        n if n == frame.len() => Ok(true),
        n => bail!(
            "standard input ended {n} bytes into frame {index} (a {w}x{h} RGB24 frame is {} bytes): \
             is --stdin the stream's size?",
            frame.len()
        ),
    }
}

/// Segments frame after frame until standard input ends, flushing each
/// frame's result as soon as it is made.
pub(crate) fn run(
    model: &Segmenter,
    protocol: &Protocol,
    palette: &[[u8; 3]],
    [w, h]: [usize; 2],
    output: StreamOutput,
    opacity: f64,
) -> Result<ExitCode> {
    let mut input = std::io::stdin().lock();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut frame = vec![0u8; w.checked_mul(h).and_then(|p| p.checked_mul(3)).context("frame size overflows")?];
    let mut index = 1;
    while read_frame(&mut input, &mut frame, index, [w, h])? {
        let labels =
            model.labels(&frame, h, w, protocol).with_context(|| format!("frame {index}: inference failed"))?;
        let bytes: Vec<u8> = match output {
            StreamOutput::Labels if model.spec.classes <= 256 => labels.iter().map(|&c| c as u8).collect(),
            StreamOutput::Labels => labels.iter().flat_map(|&c| (c as u16).to_le_bytes()).collect(),
            StreamOutput::Overlay => {
                let photo = RgbImage::from_raw(w as u32, h as u32, frame.clone()).context("frame size")?;
                overlay_labels(&photo, labels.view(), palette, opacity).into_raw()
            }
        };
        match out.write_all(&bytes).and_then(|()| out.flush()) {
            // The reader went away (ffplay closed): a normal end.
            Err(err) if err.kind() == ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
            result => result.context("writing standard output")?,
        }
        index += 1;
    }
    Ok(ExitCode::SUCCESS)
}
