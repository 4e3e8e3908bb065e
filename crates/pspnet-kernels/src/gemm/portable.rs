//! The portable micro-kernel: plain Rust on fixed-size arrays, which every
//! target compiles (and LLVM vectorises to the baseline SIMD width). It is
//! the reference the SIMD kernels are tested against.

use super::MicroKernel;
use crate::Isa;

pub(crate) struct Portable;

const MR: usize = 4;
const NR: usize = 16;

impl MicroKernel for Portable {
    const ISA: Isa = Isa::Portable;
    const MR: usize = MR;
    const NR: usize = NR;

    unsafe fn tile_bf16(kp: usize, a: *const u32, b: *const u32, c: *mut f32, rs: usize, accumulate: bool, _: usize) {
        // SAFETY: the caller's contract is the generic kernel's.
        unsafe { super::bf16::tile_generic::<MR, NR>(kp, a, b, c, rs, accumulate) }
    }

    unsafe fn tile(kc: usize, a: *const f32, b: *const f32, c: *mut f32, rs: usize, accumulate: bool, _: usize) {
        // SAFETY: the caller guarantees `a` holds kc*MR values and `b` kc*NR.
        let (a, b) = unsafe { (std::slice::from_raw_parts(a, kc * MR), std::slice::from_raw_parts(b, kc * NR)) };
        let mut acc = [[0.0f32; NR]; MR];
        for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
            for (row, &ai) in acc.iter_mut().zip(ap) {
                for (v, &bj) in row.iter_mut().zip(bp) {
                    *v += ai * bj;
                }
            }
        }
        // SAFETY: C's MR rows of NR values are ours (caller).
        unsafe { super::store_tile(&acc, c, rs, accumulate) }
    }
}
