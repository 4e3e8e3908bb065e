//! x86-64 micro-kernels. Each keeps an `MR x NR` tile of accumulators in
//! vector registers; per step of `k` it loads `NR / LANES` vectors of pixels
//! and broadcasts `MR` weights, issuing `MR * NR / LANES` fused multiply-adds.
//!
//! - AVX-512F: 8 x 48 = 24 zmm accumulators + 3 pixel vectors (of 32 registers).
//! - AVX2+FMA: 4 x 24 = 12 ymm accumulators + 3 pixel vectors (of 16 registers).
//!
//! `MR` is a power of two so that the usual channel counts (32 .. 2048) fill
//! whole panels.

use std::arch::x86_64::*;

use super::MicroKernel;
use crate::Isa;

/// How far ahead, in `A` values, the kernels prefetch their `A` panel. A
/// task streams each panel once from memory (a Winograd `U` chunk or a large
/// layer's weights outgrow the caches), and the hardware prefetchers stop at
/// every 4 KiB page: asking for the data a page ahead keeps the stream going
/// across page boundaries.
const PREFETCH_A: usize = 1024;

/// Asks, with intent to write, for the `rows` rows of `width` values, `rs`
/// apart, of a tile of `C`. The kernels call it [`C_AHEAD`] steps before
/// the end of their loop, so that the misses on a tile of `C` (read back
/// when a Winograd layer or a deep 1x1 layer accumulates chunk after chunk,
/// owned for writing otherwise) overlap with the arithmetic instead of
/// following it.
/// Asking for the tile at the start of the loop instead gains less in fp32
/// (its lines are evicted by the panels streaming past before the end).
#[inline(always)]
fn prefetch_tile(c: *const f32, rs: usize, rows: usize, width: usize) {
    for i in 0..rows {
        for line in (0..width).step_by(16) {
            // SAFETY: SSE is part of every x86-64 CPU, and a prefetch of any
            // address, valid or not, has no effect but on the caches.
            unsafe { _mm_prefetch::<_MM_HINT_ET0>(c.wrapping_add(i * rs + line).cast()) };
        }
    }
}

/// How many steps before the end of its loop a kernel asks for its tile of `C`.
const C_AHEAD: usize = 48;

/// A native bf16 micro-kernel (see [`MicroKernel::tile_bf16`]).
type BF16Kernel = unsafe fn(usize, *const u32, *const u32, *mut f32, usize, bool, usize);

/// Defines a micro-kernel type from its register tile and vector intrinsics.
macro_rules! simd_micro_kernel {
    (
        $(#[$doc:meta])*
        $name:ident, $isa:ident, $features:literal, mr = $mr:literal, vectors = $nv:literal, lanes = $lanes:literal,
        $vec:ty, $zero:ident, $load:ident, $store:ident, $splat:ident, $fmadd:ident, $add:ident,
        bf16 = $bf16:expr
    ) => {
        $(#[$doc])*
        pub(crate) struct $name;

        impl MicroKernel for $name {
            const ISA: Isa = Isa::$isa;
            const MR: usize = $mr;
            const NR: usize = $nv * $lanes;

            unsafe fn tile(kc: usize, a: *const f32, b: *const f32, c: *mut f32, rs: usize, accumulate: bool, cols: usize) {
                // SAFETY: the caller's contract is the kernel's (see the trait),
                // including support for the target features; the narrower
                // kernels read and write a prefix of the same panels and tile.
                unsafe {
                    match cols.div_ceil($lanes) {
                        1 => kernel::<1>(kc, a, b, c, rs, accumulate),
                        2 => kernel::<2>(kc, a, b, c, rs, accumulate),
                        _ => kernel::<$nv>(kc, a, b, c, rs, accumulate),
                    }
                }
            }

            unsafe fn tile_bf16(kp: usize, a: *const u32, b: *const u32, c: *mut f32, rs: usize, add: bool, cols: usize) {
                let native: Option<BF16Kernel> = $bf16;
                // SAFETY: as above; a native kernel is only offered when the
                // CPU has its features.
                unsafe {
                    match native {
                        Some(native) => native(kp, a, b, c, rs, add, cols),
                        None => kernel_bf16(kp, a, b, c, rs, add),
                    }
                }
            }
        }

        /// The generic bf16 kernel, compiled for this instruction set.
        ///
        /// # Safety
        /// As [`MicroKernel::tile_bf16`].
        #[target_feature(enable = $features)]
        unsafe fn kernel_bf16(kp: usize, a: *const u32, b: *const u32, c: *mut f32, rs: usize, accumulate: bool) {
            // SAFETY: the caller's contract is the generic kernel's.
            unsafe { super::super::bf16::tile_generic::<$mr, { $nv * $lanes }>(kp, a, b, c, rs, accumulate) }
        }

        /// # Safety
        /// As [`MicroKernel::tile`].
        #[target_feature(enable = $features)]
        unsafe fn kernel<const NV: usize>(kc: usize, a: *const f32, b: *const f32, c: *mut f32, rs: usize, accumulate: bool) {
            let mut acc: [[$vec; NV]; $mr] = [[$zero(); NV]; $mr];
            let c_at = kc.saturating_sub(C_AHEAD);
            for p in 0..kc {
                if p == c_at {
                    prefetch_tile(c, rs, $mr, NV * $lanes);
                }
                // SAFETY: step p of each panel is in bounds (caller: a holds
                // kc*MR values, b holds kc*NR).
                let (ap, bp) = unsafe { (a.add(p * $mr), b.add(p * $nv * $lanes)) };
                _mm_prefetch::<_MM_HINT_T0>(ap.wrapping_add(PREFETCH_A).cast());
                let mut bv: [$vec; NV] = [$zero(); NV];
                for (v, bj) in bv.iter_mut().enumerate() {
                    // SAFETY: as above.
                    *bj = unsafe { $load(bp.add(v * $lanes)) };
                }
                for (i, row) in acc.iter_mut().enumerate() {
                    // SAFETY: as above.
                    let ai = $splat(unsafe { *ap.add(i) });
                    for (v, bj) in row.iter_mut().zip(&bv) {
                        *v = $fmadd(ai, *bj, *v);
                    }
                }
            }
            for (i, row) in acc.iter().enumerate() {
                for (v, value) in row.iter().enumerate() {
                    // SAFETY: C has MR rows of NR values, rs apart, readable,
                    // writable and exclusively ours (caller).
                    unsafe {
                        let dst = c.add(i * rs + v * $lanes);
                        let sum = if accumulate { $add($load(dst), *value) } else { *value };
                        $store(dst, sum);
                    }
                }
            }
        }
    };
}

mod avx512 {
    use super::*;

    simd_micro_kernel!(
        /// The AVX-512F kernel (8 x 48).
        Avx512, Avx512, "avx512f", mr = 8, vectors = 3, lanes = 16,
        __m512, _mm512_setzero_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps,
        bf16 = is_x86_feature_detected!("avx512bf16").then_some(dot_bf16 as BF16Kernel)
    );

    /// The AVX512-BF16 kernel (8 x 48): per paired step, 3 vectors of 16
    /// pixel pairs, 8 broadcast weight pairs, 24 `vdpbf16ps` (48 multiply-adds
    /// per f32 lane pair where the f32 kernel does 24). `cols` as in
    /// [`MicroKernel::tile`].
    ///
    /// # Safety
    /// As [`MicroKernel::tile_bf16`]; the CPU must support AVX512-BF16.
    unsafe fn dot_bf16(kp: usize, a: *const u32, b: *const u32, c: *mut f32, rs: usize, accumulate: bool, cols: usize) {
        // SAFETY: the caller's contract, passed on.
        unsafe {
            match cols.div_ceil(16) {
                1 => dot::<1>(kp, a, b, c, rs, accumulate),
                2 => dot::<2>(kp, a, b, c, rs, accumulate),
                _ => dot::<3>(kp, a, b, c, rs, accumulate),
            }
        }
    }

    /// [`dot_bf16`] on the first `NV` vectors of each step of the panel.
    ///
    /// # Safety
    /// As [`dot_bf16`].
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn dot<const NV: usize>(kp: usize, a: *const u32, b: *const u32, c: *mut f32, rs: usize, accumulate: bool) {
        let mut acc = [[_mm512_setzero_ps(); NV]; 8];
        let c_at = kp.saturating_sub(C_AHEAD);
        for p in 0..kp {
            if p == c_at {
                prefetch_tile(c, rs, 8, NV * 16);
            }
            // SAFETY: paired step p of each panel is in bounds (caller: a
            // holds kp*8 values, b kp*48); a __m512i and a __m512bh are the
            // same 64 bytes.
            let (ap, bv) = unsafe {
                let bp = b.add(p * 48);
                let bv: [__m512bh; NV] = std::array::from_fn(|v| {
                    std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(bp.add(v * 16).cast()))
                });
                (a.add(p * 8), bv)
            };
            _mm_prefetch::<_MM_HINT_T0>(ap.wrapping_add(PREFETCH_A).cast());
            for (i, row) in acc.iter_mut().enumerate() {
                // SAFETY: as above.
                let ai = unsafe { std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(*ap.add(i) as i32)) };
                for (v, bj) in row.iter_mut().zip(&bv) {
                    *v = _mm512_dpbf16_ps(*v, ai, *bj);
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            for (v, value) in row.iter().enumerate() {
                // SAFETY: C has 8 rows of 48 values, rs apart, readable,
                // writable and exclusively ours (caller).
                unsafe {
                    let dst = c.add(i * rs + v * 16);
                    let sum = if accumulate { _mm512_add_ps(_mm512_loadu_ps(dst), *value) } else { *value };
                    _mm512_storeu_ps(dst, sum);
                }
            }
        }
    }
}

mod avx2 {
    use super::*;

    simd_micro_kernel!(
        /// The AVX2+FMA kernel (4 x 24).
        Avx2, Avx2, "avx2,fma", mr = 4, vectors = 3, lanes = 8,
        __m256, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps,
        bf16 = None
    );
}

pub(crate) use avx2::Avx2;
pub(crate) use avx512::Avx512;
