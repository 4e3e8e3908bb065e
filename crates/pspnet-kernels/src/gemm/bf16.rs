//! The bf16 operand format of the GEMMs: `A` and `B` values rounded to
//! bfloat16 (8 bits of mantissa), multiplied and summed in f32. Operands are
//! stored in pairs along `K` — one `u32` holds steps `2j` (low half) and
//! `2j + 1` (high half) of one row or column — the layout of AVX512-BF16's
//! `vdpbf16ps`, which does two multiply-adds per f32 lane per instruction.

use super::PackedWeights;
use crate::isa::multiversion;

/// `x` rounded to the nearest bfloat16 (ties to even), as its 16 bits.
#[inline(always)]
pub(crate) fn round(x: f32) -> u32 {
    let bits = x.to_bits();
    if x.is_nan() {
        return (bits >> 16) | 0x40;
    }
    (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
}

/// The f32 value of a bfloat16 given as its 16 bits.
#[inline(always)]
pub(crate) fn widen(half: u32) -> f32 {
    f32::from_bits(half << 16)
}

/// One `u32` holding `lo` (step `2j`) and `hi` (step `2j + 1`) as bf16.
#[inline(always)]
pub(crate) fn pair(lo: f32, hi: f32) -> u32 {
    round(lo) | (round(hi) << 16)
}

multiversion! {
    /// `out[j] = pair(lo[j], hi[j])`, with `hi` absent meaning zeros.
    pub(crate) fn pairs(lo: &[f32], hi: Option<&[f32]>, out: &mut [u32]) {
        match hi {
            Some(hi) => out.iter_mut().zip(lo).zip(hi).for_each(|((o, &l), &h)| *o = pair(l, h)),
            None => out.iter_mut().zip(lo).for_each(|(o, &l)| *o = pair(l, 0.0)),
        }
    }
}

/// Converts a packed block of `rows` steps of `width` values each (step
/// `k` at `k * width`) into `rows.div_ceil(2)` paired steps.
pub(crate) fn pair_rows(isa: crate::Isa, block: &[f32], width: usize, out: &mut [u32]) {
    let rows = block.len() / width;
    for (j, out) in out[..rows.div_ceil(2) * width].chunks_exact_mut(width).enumerate() {
        let lo = &block[2 * j * width..][..width];
        let hi = (2 * j + 1 < rows).then(|| &block[(2 * j + 1) * width..][..width]);
        pairs(isa, lo, hi, out);
    }
}

/// [`PackedWeights`] in bf16 pairs: panel `i`, paired step `j` holds the
/// `MR` pairs of steps `2j, 2j + 1` (the last pair zero-padded when `K` is odd).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PackedPairs {
    mr: usize,
    pairs: usize,
    data: Vec<u32>,
}

impl PackedPairs {
    pub(crate) fn new(isa: crate::Isa, weights: &PackedWeights) -> Self {
        let (mr, depth) = (weights.mr(), weights.depth());
        let panels = weights.rows().div_ceil(mr);
        let pairs = depth.div_ceil(2);
        let mut data = vec![0; panels * pairs * mr];
        for (panel, out) in data.chunks_exact_mut(pairs * mr).enumerate() {
            pair_rows(isa, weights.panel(panel, 0, depth), mr, out);
        }
        PackedPairs { mr, pairs, data }
    }

    /// Paired steps `j0 .. j0 + count` of panel `panel`.
    pub(crate) fn panel(&self, panel: usize, j0: usize, count: usize) -> &[u32] {
        let start = (panel * self.pairs + j0) * self.mr;
        &self.data[start..start + count * self.mr]
    }
}

/// The reference bf16 micro-kernel body: `C (MR x NR) (+)= A · B` over `kp`
/// paired steps, each product widened to f32 and summed in step order (low
/// half first), as `vdpbf16ps` does.
///
/// # Safety
/// As [`super::MicroKernel::tile_bf16`].
#[inline(always)]
pub(crate) unsafe fn tile_generic<const MR: usize, const NR: usize>(
    kp: usize,
    a: *const u32,
    b: *const u32,
    c: *mut f32,
    rs: usize,
    accumulate: bool,
) {
    // SAFETY: the caller guarantees `a` holds kp*MR values and `b` kp*NR.
    let (a, b) = unsafe { (std::slice::from_raw_parts(a, kp * MR), std::slice::from_raw_parts(b, kp * NR)) };
    let mut acc = [[0.0f32; NR]; MR];
    for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        for (row, &ai) in acc.iter_mut().zip(ap) {
            let (a_lo, a_hi) = (widen(ai & 0xFFFF), widen(ai >> 16));
            for (v, &bj) in row.iter_mut().zip(bp) {
                *v += a_lo * widen(bj & 0xFFFF) + a_hi * widen(bj >> 16);
            }
        }
    }
    // SAFETY: C's MR rows of NR values are ours (caller).
    unsafe { super::store_tile(&acc, c, rs, accumulate) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_to_nearest_even() {
        // 1 + 2^-8 is halfway between bf16 neighbours 1 and 1 + 2^-7: ties go to even (1).
        assert_eq!(widen(round(1.0 + 1.0 / 256.0)), 1.0);
        assert_eq!(widen(round(1.0 + 3.0 / 256.0)), 1.0 + 4.0 / 256.0);
        assert_eq!(widen(round(-2.5)), -2.5);
        assert!(widen(round(f32::NAN)).is_nan());
        assert_eq!(widen(round(f32::INFINITY)), f32::INFINITY);
        let p = pair(1.5, -3.0);
        assert_eq!((widen(p & 0xFFFF), widen(p >> 16)), (1.5, -3.0));
    }
}
