//! Adaptive pooling (PyTorch's `AdaptiveAvgPool2d` / `AdaptiveMaxPool2d`):
//! the pyramid pooling module's way of cutting any feature map into a fixed
//! grid of bins.

use pspnet_tensor::Tensor;

use crate::KernelError;
use crate::planes::map_planes;

/// Bin `i` of `bins` over a length `len`: `[floor(i*len/bins), ceil((i+1)*len/bins))`.
/// Bins overlap when `bins` does not divide `len`, and repeat pixels when
/// `bins > len`.
fn bin(i: usize, bins: usize, len: usize) -> std::ops::Range<usize> {
    (i * len) / bins..((i + 1) * len).div_ceil(bins)
}

fn adaptive(
    input: &Tensor,
    out_hw: [usize; 2],
    reduce: impl Fn(&mut dyn Iterator<Item = f32>, usize) -> f32 + Sync,
) -> Result<Tensor, KernelError> {
    if out_hw.contains(&0) {
        return Err(KernelError::InvalidParameter { what: "adaptive pooling output size", value: out_hw });
    }
    let shape = input.shape();
    let out = shape.with_hw(out_hw[0], out_hw[1])?;
    let (h, w) = (shape.h(), shape.w());
    Ok(map_planes(input, out, |src, dst| {
        for (oy, dst_row) in dst.chunks_exact_mut(out.w()).enumerate() {
            let ys = bin(oy, out.h(), h);
            for (ox, d) in dst_row.iter_mut().enumerate() {
                let xs = bin(ox, out.w(), w);
                let count = ys.len() * xs.len();
                *d = reduce(&mut ys.clone().flat_map(|y| src[y * w + xs.start..y * w + xs.end].iter().copied()), count);
            }
        }
    }))
}

/// Adaptive average pooling to `out_hw = [height, width]` bins.
pub fn adaptive_avg_pool2d(input: &Tensor, out_hw: [usize; 2]) -> Result<Tensor, KernelError> {
    adaptive(input, out_hw, |values, count| values.sum::<f32>() / count as f32)
}

/// Adaptive max pooling to `out_hw = [height, width]` bins; NaN propagates.
pub fn adaptive_max_pool2d(input: &Tensor, out_hw: [usize; 2]) -> Result<Tensor, KernelError> {
    adaptive(input, out_hw, |values, _| values.fold(f32::NEG_INFINITY, |m, v| if v > m || v.is_nan() { v } else { m }))
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
