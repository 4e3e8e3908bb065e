//! Bilinear resize equal to PyTorch's
//! `F.interpolate(x, size=(h, w), mode='bilinear', align_corners=...)`
//! (no antialiasing), up or down.

use ndarray::Array3;
use pspnet_tensor::{Shape, Tensor, TensorError};
use rayon::prelude::*;

use std::ops::Range;

use crate::channels::beats;
use crate::isa::multiversion;
use crate::planes::backward_planes;
use crate::{Isa, KernelError};

/// The two source indices and weights of one output coordinate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Taps {
    pub(crate) i0: usize,
    pub(crate) i1: usize,
    pub(crate) w0: f32,
    pub(crate) w1: f32,
}

/// PyTorch's `area_pixel_compute_source_index` for linear modes, in `f32`
/// as its CPU kernel computes it.
pub(crate) fn taps(out_len: usize, in_len: usize, align_corners: bool) -> Vec<Taps> {
    let scale = if align_corners {
        if out_len > 1 { (in_len - 1) as f32 / (out_len - 1) as f32 } else { 0.0 }
    } else {
        in_len as f32 / out_len as f32
    };
    (0..out_len)
        .map(|dst| {
            let src = if align_corners { scale * dst as f32 } else { (scale * (dst as f32 + 0.5) - 0.5).max(0.0) };
            let i0 = (src as usize).min(in_len - 1);
            let i1 = if i0 < in_len - 1 { i0 + 1 } else { i0 };
            let w1 = src - i0 as f32;
            Taps { i0, i1, w0: 1.0 - w1, w1 }
        })
        .collect()
}

/// The output shape and the source taps of every output row and column.
struct Resize {
    out: Shape,
    ys: Vec<Taps>,
    xs: Vec<Taps>,
}

impl Resize {
    fn new(shape: Shape, out_hw: [usize; 2], align_corners: bool) -> Result<Self, KernelError> {
        if out_hw.contains(&0) {
            return Err(KernelError::InvalidParameter { what: "resize output size", value: out_hw });
        }
        let out = shape.with_hw(out_hw[0], out_hw[1])?;
        let ys = taps(out.h(), shape.h(), align_corners);
        let xs = taps(out.w(), shape.w(), align_corners);
        Ok(Resize { out, ys, xs })
    }
}

/// Resizes every channel plane to `out_hw = [height, width]`.
pub fn resize_bilinear(input: &Tensor, out_hw: [usize; 2], align_corners: bool) -> Result<Tensor, KernelError> {
    let resize = Resize::new(input.shape(), out_hw, align_corners)?;
    let mut out = Tensor::zeros(resize.out);
    resize.run(input, &mut out, 0)?;
    Ok(out)
}

/// Resizes every channel plane of `input` to the height and width of `out`,
/// writing them into channels `channel0 ..` of `out` (same batch size): a
/// concatenation's slot filled with no intermediate tensor.
pub fn resize_bilinear_into(
    input: &Tensor,
    out: &mut Tensor,
    channel0: usize,
    align_corners: bool,
) -> Result<(), KernelError> {
    let (s, o) = (input.shape(), out.shape());
    if s.n() != o.n() || channel0.checked_add(s.c()).is_none_or(|end| end > o.c()) {
        return Err(TensorError::ChannelRange { target: o.dims(), channel0, part: s.dims() }.into());
    }
    Resize::new(s, [o.h(), o.w()], align_corners)?.run(input, out, channel0)
}

impl Resize {
    /// Writes the resized planes of `input` into channels `channel0 ..` of
    /// `out` (checked by the callers to hold them).
    fn run(&self, input: &Tensor, out: &mut Tensor, channel0: usize) -> Result<(), KernelError> {
        let Resize { out: shape, ys, xs } = self;
        let (s, o) = (input.shape(), out.shape());
        let (w, isa) = (s.w(), Isa::best());
        let plane = |src: &[f32], dst: &mut [f32]| {
            let (mut top, mut bottom) = (vec![0.0; shape.w()], vec![0.0; shape.w()]);
            // The source row `bottom` holds: when upsampling, the next run's top.
            let mut held = None;
            for rows in bands(ys) {
                let y = &ys[rows.start];
                if held == Some(y.i0) {
                    std::mem::swap(&mut top, &mut bottom);
                } else {
                    resize_row(&src[y.i0 * w..][..w], xs, &mut top);
                }
                resize_row(&src[y.i1 * w..][..w], xs, &mut bottom);
                held = Some(y.i1);
                for (row, y) in
                    dst[rows.start * shape.w()..rows.end * shape.w()].chunks_exact_mut(shape.w()).zip(&ys[rows])
                {
                    blend_rows(isa, y, &top, &bottom, row, false);
                }
            }
        };
        for n in 0..s.n() {
            let slot = &mut out.image_slice_mut(n)?[channel0 * o.plane_len()..][..s.c() * o.plane_len()];
            slot.par_chunks_mut(o.plane_len())
                .zip(input.image_slice(n)?.par_chunks(s.plane_len()))
                .for_each(|(dst, src)| plane(src, dst));
        }
        Ok(())
    }
}

/// The runs of consecutive output rows that share their two source rows:
/// a source row is resized horizontally once per run that reads it (once
/// in all for [`resize_bilinear`]), not once per output pixel.
fn bands(ys: &[Taps]) -> Vec<Range<usize>> {
    let mut bands: Vec<Range<usize>> = Vec::new();
    for (row, y) in ys.iter().enumerate() {
        match bands.last_mut() {
            Some(rows) if (ys[rows.start].i0, ys[rows.start].i1) == (y.i0, y.i1) => rows.end = row + 1,
            _ => bands.push(row..row + 1),
        }
    }
    bands
}

/// One source row resized to the output width: `x.w0 * src[x.i0] + x.w1 * src[x.i1]`.
fn resize_row(src: &[f32], xs: &[Taps], out: &mut [f32]) {
    for (o, x) in out.iter_mut().zip(xs) {
        *o = x.w0 * src[x.i0] + x.w1 * src[x.i1];
    }
}

multiversion! {
    /// The output row between two horizontally resized source rows (added
    /// to `out` if `add`): the same products and sums, in the same order,
    /// as PyTorch's bilinear kernel, so the result does not depend on the
    /// instruction set.
    pub(crate) fn blend_rows(y: &Taps, top: &[f32], bottom: &[f32], out: &mut [f32], add: bool) {
        let rows = out.iter_mut().zip(top).zip(bottom);
        if add {
            rows.for_each(|((o, &t), &b)| *o += y.w0 * t + y.w1 * b);
        } else {
            rows.for_each(|((o, &t), &b)| *o = y.w0 * t + y.w1 * b);
        }
    }
}

/// `argmax_channels(resize_bilinear(input, out_hw, align_corners))`, row by
/// row, without materialising the resized scores: for a 150-class map at
/// 473x473 that is 134 MB never allocated. Values and ties are exactly those
/// of the two-step computation.
pub fn resize_bilinear_argmax(
    input: &Tensor,
    out_hw: [usize; 2],
    align_corners: bool,
) -> Result<Array3<u32>, KernelError> {
    let Resize { out, ys, xs } = Resize::new(input.shape(), out_hw, align_corners)?;
    let shape = input.shape();
    let (w, plane, ow, isa) = (shape.w(), shape.plane_len(), out.w(), Isa::best());
    let mut labels = Array3::<u32>::zeros((out.n(), out.h(), ow));
    // Work items: one run of rows sharing source rows, in one image.
    let mut items = Vec::new();
    let mut rest = labels.as_slice_mut().expect("fresh arrays are contiguous");
    for n in 0..out.n() {
        for rows in bands(&ys) {
            let (band, tail) = rest.split_at_mut(rows.len() * ow);
            items.push((n, rows, band));
            rest = tail;
        }
    }
    items.into_par_iter().for_each(|(n, rows, band)| {
        let y = &ys[rows.start];
        let image = &input.as_slice()[n * shape.image_len()..(n + 1) * shape.image_len()];
        let (mut top, mut bottom) = (vec![0.0; shape.c() * ow], vec![0.0; shape.c() * ow]);
        for ((src, top), bottom) in
            image.chunks_exact(plane).zip(top.chunks_exact_mut(ow)).zip(bottom.chunks_exact_mut(ow))
        {
            resize_row(&src[y.i0 * w..][..w], &xs, top);
            resize_row(&src[y.i1 * w..][..w], &xs, bottom);
        }
        let mut best = vec![0.0; ow];
        for (labels, y) in band.chunks_exact_mut(ow).zip(&ys[rows]) {
            // Class 0 starts the maximum; `labels` are still its zeros.
            blend_rows(isa, y, &top[..ow], &bottom[..ow], &mut best, false);
            for (c, (top, bottom)) in top.chunks_exact(ow).zip(bottom.chunks_exact(ow)).enumerate().skip(1) {
                argmax_step(isa, y, top, bottom, c as u32, &mut best, labels);
            }
        }
    });
    Ok(labels)
}

multiversion! {
    /// Folds class `class`'s blended row into the running maximum and its
    /// label, with [`beats`]'s rule (ties keep the earlier class, NaN wins).
    fn argmax_step(y: &Taps, top: &[f32], bottom: &[f32], class: u32, best: &mut [f32], labels: &mut [u32]) {
        for (((&t, &b), best), label) in top.iter().zip(bottom).zip(best.iter_mut()).zip(labels.iter_mut()) {
            let v = y.w0 * t + y.w1 * b;
            let wins = beats(v, *best);
            *best = if wins { v } else { *best };
            *label = if wins { class } else { *label };
        }
    }
}

/// The input gradient of [`resize_bilinear`] to an input of shape `input`:
/// each output's gradient goes to its four source pixels by their weights.
pub fn resize_bilinear_backward(
    grad_output: &Tensor,
    input: Shape,
    align_corners: bool,
) -> Result<Tensor, KernelError> {
    let out_hw = [grad_output.shape().h(), grad_output.shape().w()];
    let Resize { out, ys, xs } = Resize::new(input, out_hw, align_corners)?;
    let w = input.w();
    backward_planes(input, out, grad_output, None, |go, _, g| {
        for (y, row) in ys.iter().zip(go.chunks_exact(out.w())) {
            for (x, &d) in xs.iter().zip(row) {
                g[y.i0 * w + x.i0] += y.w0 * x.w0 * d;
                g[y.i0 * w + x.i1] += y.w0 * x.w1 * d;
                g[y.i1 * w + x.i0] += y.w1 * x.w0 * d;
                g[y.i1 * w + x.i1] += y.w1 * x.w1 * d;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_corners_maps_corners_to_corners() {
        let t = taps(5, 3, true);
        assert_eq!((t[0].i0, t[0].w1), (0, 0.0));
        assert_eq!((t[2].i0, t[2].w1), (1, 0.0));
        assert_eq!((t[4].i0, t[4].i1, t[4].w1), (2, 2, 0.0));
        assert_eq!((t[1].i0, t[1].i1, t[1].w1), (0, 1, 0.5));
    }

    #[test]
    fn every_instruction_set_blends_and_picks_like_the_portable_path() {
        let y = Taps { i0: 0, i1: 1, w0: 0.375, w1: 0.625 };
        let top: Vec<f32> = (0..37).map(|i| ((i * 7919) % 23) as f32 * 0.5 - 5.0).collect();
        let mut bottom: Vec<f32> = (0..37).map(|i| ((i * 104_729) % 19) as f32 * 0.25 - 2.0).collect();
        bottom[3] = f32::NAN;
        let run = |isa: Isa| {
            let mut blended = vec![0.0; 37];
            blend_rows(isa, &y, &top, &bottom, &mut blended, false);
            let (mut best, mut labels) = (vec![0.0; 37], vec![0; 37]);
            argmax_step(isa, &y, &bottom, &top, 1, &mut best, &mut labels);
            argmax_step(isa, &y, &top, &bottom, 2, &mut best, &mut labels);
            (
                blended.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                best.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                labels,
            )
        };
        let portable = run(Isa::Portable);
        assert_eq!(portable.2[3], 1, "NaN beats a number");
        for isa in Isa::available() {
            assert_eq!(run(isa), portable, "{isa}");
        }
    }

    #[test]
    fn half_pixel_mode_clamps_at_both_ends() {
        // 2 -> 4: src = (dst + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25.
        let t = taps(4, 2, false);
        assert_eq!((t[0].i0, t[0].w1), (0, 0.0));
        assert_eq!((t[1].i0, t[1].w1), (0, 0.25));
        assert_eq!((t[3].i0, t[3].i1, t[3].w1), (1, 1, 0.25));
        // One output pixel with align_corners samples the first input pixel.
        assert_eq!(taps(1, 7, true)[0].i0, 0);
    }
}
