//! Convolutions over a handful of output pixels (the pyramid pooling
//! module's 1x1 convolutions on 1x1, 2x2 and 3x3 maps) are matrix-vector
//! products: an `MR x NR` register tile would be mostly padding. Here each
//! packed weight panel streams once, every `MR`-row step multiplying each
//! output pixel's input value into an `MR`-lane accumulator, so the cost is
//! the weight traffic and no second (row-major) copy of the weights is kept.

use rayon::prelude::*;

use crate::Isa;
use crate::gemm::ConvJob;
use crate::isa::multiversion;

/// The most output pixels this path takes (a third of the widest `NR`).
pub(crate) const MAX_PIXELS: usize = 16;

/// `out[m][j] = sum_k weights[m][k] * input[k][j]` for a 1x1 convolution
/// over `n <= MAX_PIXELS` pixels (`input` is `K x n`), then the epilogue.
pub(crate) fn convolve(isa: Isa, job: &ConvJob<'_>, out: &mut [f32]) {
    let (weights, input, n, epilogue) = (job.weights, job.input, job.geometry.pixels(), job.epilogue);
    debug_assert!(job.geometry.is_pointwise() && n <= MAX_PIXELS);
    let mr = weights.mr();
    out.par_chunks_mut(mr * n).enumerate().for_each(|(panel, out)| {
        panel_product(isa, weights.panel(panel, 0, weights.depth()), mr, input, n, out);
        for (r, row) in out.chunks_exact_mut(n).enumerate() {
            let channel = panel * mr + r;
            epilogue.apply(row, channel, channel * n);
        }
    });
}

multiversion! {
    /// One panel's rows (`out`: up to `mr` rows of `n` values).
    fn panel_product(panel: &[f32], mr: usize, input: &[f32], n: usize, out: &mut [f32]) {
        match mr {
            8 => panel_lanes::<8>(panel, input, n, out),
            4 => panel_lanes::<4>(panel, input, n, out),
            _ => unreachable!("micro-kernels have 4 or 8 rows"),
        }
    }
}

/// [`panel_product`] with `L = MR` lanes; the sum over `K` runs in order,
/// so the result is deterministic.
#[inline(always)]
fn panel_lanes<const L: usize>(panel: &[f32], input: &[f32], n: usize, out: &mut [f32]) {
    let mut acc = [[0.0f32; L]; MAX_PIXELS];
    for (w, x) in panel.chunks_exact(L).zip(input.chunks_exact(n)) {
        for (acc, &x) in acc.iter_mut().zip(x) {
            for (a, w) in acc.iter_mut().zip(w) {
                *a += w * x;
            }
        }
    }
    for (r, row) in out.chunks_exact_mut(n).enumerate() {
        for (o, acc) in row.iter_mut().zip(&acc) {
            *o = acc[r];
        }
    }
}
