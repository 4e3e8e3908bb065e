//! Bilinear resize equal to PyTorch's
//! `F.interpolate(x, size=(h, w), mode='bilinear', align_corners=...)`
//! (no antialiasing), up or down.

use ndarray::Array3;
use pspnet_tensor::{Shape, Tensor};
use rayon::prelude::*;

use crate::channels::beats;

use crate::KernelError;
use crate::planes::map_planes;

/// The two source indices and weights of one output coordinate.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Taps {
    i0: usize,
    i1: usize,
    w0: f32,
    w1: f32,
}

/// PyTorch's `area_pixel_compute_source_index` for linear modes, in `f32`
/// as its CPU kernel computes it.
fn taps(out_len: usize, in_len: usize, align_corners: bool) -> Vec<Taps> {
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
    let Resize { out, ys, xs } = Resize::new(input.shape(), out_hw, align_corners)?;
    let shape = input.shape();
    let w = shape.w();
    Ok(map_planes(input, out, |src, dst| {
        for (row, y) in dst.chunks_exact_mut(out.w()).zip(&ys) {
            let (r0, r1) = (&src[y.i0 * w..][..w], &src[y.i1 * w..][..w]);
            for (d, x) in row.iter_mut().zip(&xs) {
                *d = lerp(y, x, r0, r1);
            }
        }
    }))
}

/// The bilinear sample at taps `y`, `x` between rows `r0` and `r1`.
#[inline(always)]
fn lerp(y: &Taps, x: &Taps, r0: &[f32], r1: &[f32]) -> f32 {
    y.w0 * (x.w0 * r0[x.i0] + x.w1 * r0[x.i1]) + y.w1 * (x.w0 * r1[x.i0] + x.w1 * r1[x.i1])
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
    let (w, plane) = (shape.w(), shape.plane_len());
    let mut labels = Array3::<u32>::zeros((out.n(), out.h(), out.w()));
    let rows = labels.as_slice_mut().expect("fresh arrays are contiguous").par_chunks_mut(out.w());
    rows.enumerate().for_each(|(row, labels)| {
        let (n, y) = (row / out.h(), &ys[row % out.h()]);
        let image = &input.as_slice()[n * shape.image_len()..(n + 1) * shape.image_len()];
        let mut best = vec![f32::NEG_INFINITY; out.w()];
        for (c, src) in image.chunks_exact(plane).enumerate() {
            let (r0, r1) = (&src[y.i0 * w..][..w], &src[y.i1 * w..][..w]);
            for ((label, b), x) in labels.iter_mut().zip(best.iter_mut()).zip(&xs) {
                let v = lerp(y, x, r0, r1);
                if c == 0 || beats(v, *b) {
                    (*b, *label) = (v, c as u32);
                }
            }
        }
    });
    Ok(labels)
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
