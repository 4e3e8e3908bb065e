//! Convolutions over a handful of output pixels (the pyramid pooling
//! module's 1x1 convolutions on 1x1, 2x2 and 3x3 maps) are matrix-vector
//! products: an `MR x NR` register tile would be mostly padding. Here each
//! output is a dot product of a weight row with an input column, streaming
//! the weights once, so the cost is the weight traffic.

use rayon::prelude::*;

use super::Epilogue;
use crate::Isa;

/// Output channels per parallel work item.
const ROWS: usize = 16;

/// `out[m][j] = sum_k weights[m][k] * input[k][j]` for a row-major `M x K`
/// weight matrix and a `K x N` input, then the epilogue.
pub(crate) fn pointwise(
    isa: Isa,
    weights: &[f32],
    k: usize,
    input: &[f32],
    n: usize,
    epilogue: Epilogue<'_>,
    out: &mut [f32],
) {
    let mut columns = vec![0.0f32; n * k];
    for (kk, row) in input.chunks_exact(n).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            columns[j * k + kk] = v;
        }
    }
    out.par_chunks_mut(ROWS * n).zip(weights.par_chunks(ROWS * k)).enumerate().for_each(|(chunk, (out, w))| {
        rows(isa, w, k, &columns, out);
        for (r, row) in out.chunks_exact_mut(n).enumerate() {
            let channel = chunk * ROWS + r;
            epilogue.apply(row, channel, channel * n);
        }
    });
}

/// Dispatches the dot products of a group of rows to the instruction set.
fn rows(isa: Isa, w: &[f32], k: usize, columns: &[f32], out: &mut [f32]) {
    match isa {
        Isa::Portable => rows_generic(w, k, columns, out),
        // SAFETY: an `Isa` other than portable is only used once the CPU has
        // been checked to support it (`Isa::check_available`).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { rows_avx2(w, k, columns, out) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { rows_avx512(w, k, columns, out) },
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2 | Isa::Avx512 => unreachable!("x86 instruction sets are never available here"),
    }
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_avx2(w: &[f32], k: usize, columns: &[f32], out: &mut [f32]) {
    rows_generic(w, k, columns, out);
}

/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn rows_avx512(w: &[f32], k: usize, columns: &[f32], out: &mut [f32]) {
    rows_generic(w, k, columns, out);
}

/// Plain Rust, compiled once per instruction set by the wrappers above.
#[inline(always)]
fn rows_generic(w: &[f32], k: usize, columns: &[f32], out: &mut [f32]) {
    let n = columns.len() / k;
    for (w_row, out_row) in w.chunks_exact(k).zip(out.chunks_exact_mut(n)) {
        for (o, column) in out_row.iter_mut().zip(columns.chunks_exact(k)) {
            *o = dot(w_row, column);
        }
    }
}

/// A dot product with 32 independent partial sums, so that the loop
/// vectorises and pipelines (the summation order is fixed, hence
/// deterministic).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 32;
    let mut acc = [0.0f32; LANES];
    let (a_main, a_tail) = a.split_at(a.len() / LANES * LANES);
    let (b_main, b_tail) = b.split_at(a_main.len());
    for (ca, cb) in a_main.chunks_exact(LANES).zip(b_main.chunks_exact(LANES)) {
        for ((s, x), y) in acc.iter_mut().zip(ca).zip(cb) {
            *s += x * y;
        }
    }
    let tail: f32 = a_tail.iter().zip(b_tail).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}
