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

/// Defines a micro-kernel type from its register tile and vector intrinsics.
macro_rules! simd_micro_kernel {
    (
        $(#[$doc:meta])*
        $name:ident, $isa:ident, $features:literal, mr = $mr:literal, vectors = $nv:literal, lanes = $lanes:literal,
        $vec:ty, $zero:ident, $load:ident, $store:ident, $splat:ident, $fmadd:ident, $add:ident
    ) => {
        $(#[$doc])*
        pub(crate) struct $name;

        impl MicroKernel for $name {
            const ISA: Isa = Isa::$isa;
            const MR: usize = $mr;
            const NR: usize = $nv * $lanes;

            unsafe fn tile(kc: usize, a: *const f32, b: *const f32, c: *mut f32, rs: usize, accumulate: bool) {
                // SAFETY: the caller's contract is the kernel's (see the trait),
                // including support for the target features.
                unsafe { kernel(kc, a, b, c, rs, accumulate) }
            }
        }

        /// # Safety
        /// As [`MicroKernel::tile`].
        #[target_feature(enable = $features)]
        unsafe fn kernel(kc: usize, a: *const f32, b: *const f32, c: *mut f32, rs: usize, accumulate: bool) {
            let mut acc: [[$vec; $nv]; $mr] = [[$zero(); $nv]; $mr];
            for p in 0..kc {
                // SAFETY: step p of each panel is in bounds (caller: a holds
                // kc*MR values, b holds kc*NR).
                let (ap, bp) = unsafe { (a.add(p * $mr), b.add(p * $nv * $lanes)) };
                let mut bv: [$vec; $nv] = [$zero(); $nv];
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
        __m512, _mm512_setzero_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps
    );
}

mod avx2 {
    use super::*;

    simd_micro_kernel!(
        /// The AVX2+FMA kernel (4 x 24).
        Avx2, Avx2, "avx2,fma", mr = 4, vectors = 3, lanes = 8,
        __m256, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps
    );
}

pub(crate) use avx2::Avx2;
pub(crate) use avx512::Avx512;
