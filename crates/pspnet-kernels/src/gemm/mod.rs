//! The GEMM frame the convolutions multiply on, organised as in the BLIS
//! papers (Van Zee & van de Geijn): the weights `A` (`M = out channels` x
//! `K = in channels x kernel taps`) packed once into `MR`-row panels
//! ([`pack`]), register-blocked [`MicroKernel`]s that multiply one `A` panel
//! by one `B` panel into an `MR` x `NR` tile, the fused [`Epilogue`], and the
//! blocked driver of the direct convolution ([`driver`]). The Winograd
//! convolution and the matrix-vector path build on it; it knows neither.

#[cfg(test)]
mod battery;
pub(crate) mod bf16;
mod driver;
mod epilogue;
mod pack;
mod portable;
mod weight_grad;
#[cfg(target_arch = "x86_64")]
mod x86;

pub(crate) use bf16::PackedPairs;
pub(crate) use driver::convolve;
pub(crate) use epilogue::Epilogue;
pub(crate) use pack::PackedWeights;
pub(crate) use weight_grad::{WeightGradJob, weight_grad};

use crate::Isa;
use crate::geometry::ConvGeometry;

/// A register-blocked kernel computing one `MR` x `NR` output tile.
pub(crate) trait MicroKernel {
    /// The instruction set the kernel is written for.
    const ISA: Isa;
    /// Rows of the tile (output channels), broadcast from the `A` panel.
    const MR: usize;
    /// Columns of the tile (output pixels), loaded as SIMD vectors.
    const NR: usize;

    /// `C = (accumulate ? C : 0) + (sum_p A[p] (x) B[p])` over `kc` steps, where
    /// `A[p]` is `MR` values at `a + p * MR` and `B[p]` is `NR` values at
    /// `b + p * NR`; `C` has `MR` rows of `NR` values, `rs` apart. Only the
    /// first `cols` (at most `NR`) columns of `B` may hold data, the rest
    /// being zero padding: a kernel may skip the vectors past them and leave
    /// those columns of `C` as they were.
    ///
    /// # Safety
    /// `a` must be readable for `kc * MR` values, `b` for `kc * NR`, `c`
    /// readable and writable for its `MR` rows of `NR` values with no other
    /// live reference to them, and the CPU must support the kernel's ISA.
    unsafe fn tile(kc: usize, a: *const f32, b: *const f32, c: *mut f32, rs: usize, accumulate: bool, cols: usize);

    /// [`MicroKernel::tile`] on bf16 operands in pairs (see [`bf16`]):
    /// `kp` paired steps of `MR` (`A`) and `NR` (`B`) `u32`s each.
    ///
    /// # Safety
    /// As [`MicroKernel::tile`], with `a` readable for `kp * MR` values and
    /// `b` for `kp * NR`.
    unsafe fn tile_bf16(kp: usize, a: *const u32, b: *const u32, c: *mut f32, rs: usize, accumulate: bool, cols: usize);
}

/// Writes (or, if `accumulate`, adds) a portable kernel's finished
/// accumulators to `C`.
///
/// # Safety
/// `c` must be readable and writable for `MR` rows of `NR` values, `rs`
/// apart, with no other live reference to them.
#[inline(always)]
unsafe fn store_tile<const MR: usize, const NR: usize>(
    acc: &[[f32; NR]; MR],
    c: *mut f32,
    rs: usize,
    accumulate: bool,
) {
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: row i of C is readable and writable for NR values and not
        // aliased (caller).
        let dst = unsafe { std::slice::from_raw_parts_mut(c.add(i * rs), NR) };
        if accumulate {
            dst.iter_mut().zip(row).for_each(|(d, v)| *d += v);
        } else {
            dst.copy_from_slice(row);
        }
    }
}

/// Something to run with the micro-kernel of an instruction set (a
/// visitor, as matrixmultiply's `detect` dispatches).
pub(crate) trait WithKernel {
    /// What it gives.
    type Output;

    /// Runs with micro-kernel `K`, which the CPU supports.
    fn run<K: MicroKernel>(self) -> Self::Output;
}

/// Runs `task` with `isa`'s micro-kernel, which the CPU must support: the
/// one place that knows which kernel each instruction set has.
pub(crate) fn with_kernel<T: WithKernel>(isa: Isa, task: T) -> T::Output {
    match isa {
        Isa::Portable => task.run::<portable::Portable>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => task.run::<x86::Avx2>(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => task.run::<x86::Avx512>(),
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2 | Isa::Avx512 => unreachable!("x86 instruction sets are never available here"),
    }
}

/// Register-tile sizes `(MR, NR)` of an instruction set's micro-kernel.
pub(crate) fn tile_dims(isa: Isa) -> (usize, usize) {
    struct TileDims;
    impl WithKernel for TileDims {
        type Output = (usize, usize);
        fn run<K: MicroKernel>(self) -> (usize, usize) {
            (K::MR, K::NR)
        }
    }
    with_kernel(isa, TileDims)
}

/// One image's convolution as every algorithm receives it.
#[derive(Clone, Copy)]
pub(crate) struct ConvJob<'a> {
    /// The weights, packed for the micro-kernel that will run.
    pub(crate) weights: &'a PackedWeights,
    /// The problem's sizes.
    pub(crate) geometry: &'a ConvGeometry,
    /// The image, `cin x h x w`.
    pub(crate) input: &'a [f32],
    /// What follows the sum.
    pub(crate) epilogue: Epilogue<'a>,
}

/// How the direct convolution's GEMMs multiply: f32 operands, or bf16
/// operands (the weights' [`PackedPairs`]) summed in f32.
#[derive(Clone, Copy)]
pub(crate) enum Operands<'a> {
    F32,
    Bf16(&'a PackedPairs),
}
