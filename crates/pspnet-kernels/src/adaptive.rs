//! Adaptive pooling (PyTorch's `AdaptiveAvgPool2d` / `AdaptiveMaxPool2d`):
//! the pyramid pooling module's way of cutting any feature map into a fixed
//! grid of bins.

use pspnet_tensor::{Shape, Tensor};

use rayon::prelude::*;

use crate::KernelError;
use crate::planes::{backward_planes, first_maximum};

/// Bin `i` of `bins` over a length `len`: `[floor(i*len/bins), ceil((i+1)*len/bins))`.
/// Bins overlap when `bins` does not divide `len`, and repeat pixels when
/// `bins > len`.
fn bin(i: usize, bins: usize, len: usize) -> std::ops::Range<usize> {
    (i * len) / bins..((i + 1) * len).div_ceil(bins)
}

/// How one pooling reduces a bin: a fold from `init` with `step` over the
/// bin's pixels in row-major order (PyTorch's order), then `finish(acc,
/// pixel count)`.
struct Reduction<S, F> {
    init: f32,
    step: S,
    finish: F,
}

/// Pools every channel plane to each of `sizes` (`[height, width]` bins) in
/// one pass over the plane: a bin's fold is a chain of dependent additions,
/// and walking the plane once, row by row, advances the chains of every bin
/// of every size that reads the row side by side, where pooling one size
/// at a time left the single bin of a 1x1 pooling to run alone.
fn adaptive(
    input: &Tensor,
    sizes: &[[usize; 2]],
    reduction: Reduction<impl Fn(f32, f32) -> f32 + Sync, impl Fn(f32, usize) -> f32 + Sync>,
) -> Result<Vec<Tensor>, KernelError> {
    let shape = input.shape();
    let outs = sizes
        .iter()
        .map(|&out_hw| {
            if out_hw.contains(&0) {
                return Err(KernelError::InvalidParameter { what: "adaptive pooling output size", value: out_hw });
            }
            Ok(shape.with_hw(out_hw[0], out_hw[1])?)
        })
        .collect::<Result<Vec<_>, KernelError>>()?;
    let (h, w) = (shape.h(), shape.w());
    // Per size: the bin rows each input row belongs to (two where bins
    // overlap), the columns of each bin column, and each bin's pixel count.
    let rows_of: Vec<Vec<Vec<usize>>> = outs
        .iter()
        .map(|o| (0..h).map(|y| (0..o.h()).filter(|&oy| bin(oy, o.h(), h).contains(&y)).collect()).collect())
        .collect();
    let columns: Vec<Vec<std::ops::Range<usize>>> =
        outs.iter().map(|o| (0..o.w()).map(|ox| bin(ox, o.w(), w)).collect()).collect();
    let counts: Vec<usize> = outs
        .iter()
        .zip(&columns)
        .flat_map(|(o, xs)| (0..o.h()).flat_map(move |oy| xs.iter().map(move |x| bin(oy, o.h(), h).len() * x.len())))
        .collect();
    let total: usize = outs.iter().map(|o| o.plane_len()).sum();
    let Reduction { init, step, finish } = reduction;
    let pooled: Vec<Vec<f32>> = input
        .as_slice()
        .par_chunks(shape.plane_len())
        .map(|src| {
            let mut acc = vec![init; total];
            for y in 0..h {
                let row = &src[y * w..][..w];
                let mut base = 0;
                for ((o, rows), xs) in outs.iter().zip(&rows_of).zip(&columns) {
                    for &oy in &rows[y] {
                        for (a, x) in acc[base + oy * o.w()..][..o.w()].iter_mut().zip(xs) {
                            *a = row[x.clone()].iter().fold(*a, |a, &v| step(a, v));
                        }
                    }
                    base += o.plane_len();
                }
            }
            acc.iter_mut().zip(&counts).for_each(|(a, &count)| *a = finish(*a, count));
            acc
        })
        .collect();
    let mut base = 0;
    Ok(outs
        .iter()
        .map(|&o| {
            let data = pooled.iter().flat_map(|p| &p[base..base + o.plane_len()]).copied().collect();
            base += o.plane_len();
            Tensor::from_vec(o, data).expect("one pooled plane per input plane")
        })
        .collect())
}

fn average() -> Reduction<impl Fn(f32, f32) -> f32 + Sync, impl Fn(f32, usize) -> f32 + Sync> {
    Reduction { init: 0.0, step: |a, v| a + v, finish: |sum, count| sum / count as f32 }
}

fn maximum() -> Reduction<impl Fn(f32, f32) -> f32 + Sync, impl Fn(f32, usize) -> f32 + Sync> {
    Reduction { init: f32::NEG_INFINITY, step: |m, v: f32| if v > m || v.is_nan() { v } else { m }, finish: |m, _| m }
}

/// Adaptive average pooling to `out_hw = [height, width]` bins.
pub fn adaptive_avg_pool2d(input: &Tensor, out_hw: [usize; 2]) -> Result<Tensor, KernelError> {
    Ok(adaptive(input, &[out_hw], average())?.remove(0))
}

/// Adaptive max pooling to `out_hw = [height, width]` bins; NaN propagates.
pub fn adaptive_max_pool2d(input: &Tensor, out_hw: [usize; 2]) -> Result<Tensor, KernelError> {
    Ok(adaptive(input, &[out_hw], maximum())?.remove(0))
}

/// [`adaptive_avg_pool2d`] to several grids at once (a pyramid's levels),
/// reading the input once: the same values as one call per grid.
pub fn adaptive_avg_pool2d_levels(input: &Tensor, sizes: &[[usize; 2]]) -> Result<Vec<Tensor>, KernelError> {
    adaptive(input, sizes, average())
}

/// [`adaptive_max_pool2d`] to several grids at once, reading the input once.
pub fn adaptive_max_pool2d_levels(input: &Tensor, sizes: &[[usize; 2]]) -> Result<Vec<Tensor>, KernelError> {
    adaptive(input, sizes, maximum())
}

/// The input gradient of [`adaptive_avg_pool2d`] on an input of shape
/// `input`: each bin's gradient spread evenly over its pixels.
pub fn adaptive_avg_pool2d_backward(grad_output: &Tensor, input: Shape) -> Result<Tensor, KernelError> {
    let out = input.with_hw(grad_output.shape().h(), grad_output.shape().w())?;
    let (h, w) = (input.h(), input.w());
    backward_planes(input, out, grad_output, None, |go, _, g| {
        for (oy, row) in go.chunks_exact(out.w()).enumerate() {
            let ys = bin(oy, out.h(), h);
            for (ox, &d) in row.iter().enumerate() {
                let xs = bin(ox, out.w(), w);
                let share = d / (ys.len() * xs.len()) as f32;
                for y in ys.clone() {
                    g[y * w + xs.start..y * w + xs.end].iter_mut().for_each(|v| *v += share);
                }
            }
        }
    })
}

/// The input gradient of [`adaptive_max_pool2d`]: each bin's gradient goes
/// to the pixel its maximum came from, the first in row-major order (a NaN
/// wins), as PyTorch's kernel picks it.
pub fn adaptive_max_pool2d_backward(input: &Tensor, grad_output: &Tensor) -> Result<Tensor, KernelError> {
    let shape = input.shape();
    let out = shape.with_hw(grad_output.shape().h(), grad_output.shape().w())?;
    let (h, w) = (shape.h(), shape.w());
    backward_planes(shape, out, grad_output, Some(input), |go, src, g| {
        let src = src.expect("the input's values");
        for (oy, row) in go.chunks_exact(out.w()).enumerate() {
            let ys = bin(oy, out.h(), h);
            for (ox, &d) in row.iter().enumerate() {
                let xs = bin(ox, out.w(), w);
                g[first_maximum(src, w, ys.clone(), xs)] += d;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::bin;

    #[test]
    fn bins_follow_pytorch_bounds() {
        // 60 / 6: disjoint bins of 10.
        assert_eq!(bin(5, 6, 60), 50..60);
        // 45 rows in 6 bins: floor(i*7.5) .. ceil((i+1)*7.5): overlapping.
        let b: Vec<_> = (0..6).map(|i| bin(i, 6, 45)).collect();
        assert_eq!(b, vec![0..8, 7..15, 15..23, 22..30, 30..38, 37..45]);
        // More bins than pixels: each pixel repeats.
        assert_eq!((0..3).map(|i| bin(i, 3, 2)).collect::<Vec<_>>(), vec![0..1, 0..2, 1..2]);
    }
}
