//! The blocked GEMM driver behind every convolution, organised as in the BLIS
//! papers (Van Zee & van de Geijn): the weights `A` (`M = out channels` x
//! `K = in channels x kernel taps`) are packed once into `MR`-row panels; the
//! input pixels `B` (`K` x `N = output pixels`) are gathered (implicit im2col,
//! see [`pack`]) block by block into a cache-sized buffer of `NR`-column
//! panels; a register-blocked [`MicroKernel`] multiplies one `A` panel by one
//! `B` panel into an `MR` x `NR` tile of the output.
//!
//! Loop nest of one task (a block of output pixels x a chunk of out channels):
//! `for each KC slice of K: pack B; for each A panel (kept in L1): for each
//! B panel (streamed from L2): micro-kernel` and, after the last slice, the
//! fused epilogue on the tile while it is still in L1.

pub(crate) mod bf16;
mod gemv;
mod pack;
mod portable;
#[cfg(target_arch = "x86_64")]
mod x86;

use rayon::prelude::*;

pub(crate) use bf16::PackedPairs;
pub(crate) use pack::{ConvGeometry, PackedWeights};

use crate::disjoint::Disjoint;
use crate::{Isa, winograd};

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

/// Register-tile sizes `(MR, NR)` of an instruction set's micro-kernel.
pub(crate) fn tile_dims(isa: Isa) -> (usize, usize) {
    match isa {
        Isa::Portable => (portable::Portable::MR, portable::Portable::NR),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => (x86::Avx2::MR, x86::Avx2::NR),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => (x86::Avx512::MR, x86::Avx512::NR),
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2 | Isa::Avx512 => unreachable!("x86 instruction sets are never available here"),
    }
}

/// What happens to each output value after the sum: `relu?(v * scale[c] +
/// shift[c] + residual)`.
#[derive(Clone, Copy)]
pub(crate) struct Epilogue<'a> {
    pub(crate) scale: Option<&'a [f32]>,
    pub(crate) shift: Option<&'a [f32]>,
    pub(crate) residual: Option<&'a [f32]>,
    pub(crate) relu: bool,
}

/// How a convolution's GEMMs multiply: f32 operands, or bf16 operands (the
/// direct path reads the weights' [`PackedPairs`]) summed in f32.
#[derive(Clone, Copy)]
pub(crate) enum Operands<'a> {
    F32,
    Bf16(Option<&'a PackedPairs>),
}

/// Convolves one image: `input` is `cin x h x w`, `out` is `M x oh x ow`.
/// `weights` must have been packed for `isa`, which must be available;
/// `winograd` runs a 3x3 stride-1 layer in the Winograd domain.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_image(
    isa: Isa,
    winograd: bool,
    operands: Operands<'_>,
    weights: &PackedWeights,
    geometry: &ConvGeometry,
    input: &[f32],
    epilogue: Epilogue<'_>,
    out: &mut [f32],
) {
    // Fewer pixels than a third of a register tile: a matrix-vector product
    // wastes less than the GEMM's padded columns.
    // (The bins are so small that they stay in f32 in bf16 mode too.)
    if geometry.is_pointwise() && geometry.pixels() <= gemv::MAX_PIXELS.min(tile_dims(isa).1 / 3) {
        return gemv::pointwise(isa, weights, input, geometry.pixels(), epilogue, out);
    }
    type Run = fn(Operands<'_>, &PackedWeights, &ConvGeometry, &[f32], Epilogue<'_>, &mut [f32]);
    let run: Run = match (isa, winograd) {
        (Isa::Portable, false) => drive::<portable::Portable>,
        (Isa::Portable, true) => winograd::conv_image::<portable::Portable>,
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, false) => drive::<x86::Avx2>,
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, true) => winograd::conv_image::<x86::Avx2>,
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, false) => drive::<x86::Avx512>,
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, true) => winograd::conv_image::<x86::Avx512>,
        #[cfg(not(target_arch = "x86_64"))]
        (Isa::Avx2 | Isa::Avx512, _) => unreachable!("x86 instruction sets are never available here"),
    };
    run(operands, weights, geometry, input, epilogue, out)
}

/// Depth of one packed slice of `K`: the `A` panel (`MR x KC`) stays in L1.
const KC: usize = 384;
/// Budget in bytes of one packed `B` block, sized for a 1 MB L2.
const B_BLOCK_BYTES: usize = 384 * 1024;

/// How one convolution is cut into tasks: `n_blocks` blocks of whole
/// `NR`-pixel panels (sizes differing by at most one panel) times `m_chunks`
/// chunks of whole `MR`-channel panels. The task count is a multiple of the
/// thread count where the shape allows, so no thread idles at the end.
struct Plan {
    kc: usize,
    n: usize,
    nr: usize,
    n_panels: usize,
    n_blocks: usize,
    max_block_panels: usize,
    m_chunk: usize,
    m_chunks: usize,
}

impl Plan {
    fn new<K: MicroKernel>(m: usize, n: usize, k: usize) -> Plan {
        let threads = rayon::current_num_threads().max(1);
        // Every slice but the last holds whole bf16 pairs.
        let kc = k.div_ceil(k.div_ceil(KC)).next_multiple_of(2).min(k);
        let n_panels = n.div_ceil(K::NR);
        let by_cache = (B_BLOCK_BYTES / (kc * K::NR * size_of::<f32>())).max(1);
        let mut n_blocks = n_panels.div_ceil(by_cache).max(2 * threads).min(n_panels);
        if n_blocks >= threads {
            n_blocks = n_blocks.next_multiple_of(threads).min(n_panels);
        }
        let m_panels = m.div_ceil(K::MR);
        let wanted = 4 * threads;
        let mut m_chunks = 1;
        if n_blocks < wanted {
            m_chunks = wanted.div_ceil(n_blocks).min(m_panels.div_ceil(2)).max(1);
        }
        let m_chunk = m_panels.div_ceil(m_chunks) * K::MR;
        Plan {
            kc,
            n,
            nr: K::NR,
            n_panels,
            n_blocks,
            max_block_panels: n_panels.div_ceil(n_blocks),
            m_chunk,
            m_chunks: m.div_ceil(m_chunk),
        }
    }

    /// Output pixels of pixel block `b`.
    fn cols(&self, b: usize) -> std::ops::Range<usize> {
        let panel = |b: usize| b * self.n_panels / self.n_blocks;
        (panel(b) * self.nr).min(self.n)..(panel(b + 1) * self.nr).min(self.n)
    }
}

fn drive<K: MicroKernel>(
    operands: Operands<'_>,
    weights: &PackedWeights,
    geometry: &ConvGeometry,
    input: &[f32],
    epilogue: Epilogue<'_>,
    out: &mut [f32],
) {
    let (m, n, k) = (weights.rows(), geometry.pixels(), geometry.depth());
    debug_assert_eq!(weights.mr(), K::MR);
    debug_assert_eq!(weights.depth(), k);
    debug_assert_eq!(out.len(), m * n);
    let plan = Plan::new::<K>(m, n, k);
    let output = Disjoint::new(out);
    (0..plan.n_blocks * plan.m_chunks).into_par_iter().for_each_init(
        || pack::Scratch::new(plan.kc, plan.max_block_panels * K::NR),
        |scratch, task| {
            let (nb, mc) = (task / plan.m_chunks, task % plan.m_chunks);
            let cols = plan.cols(nb);
            let rows = mc * plan.m_chunk..((mc + 1) * plan.m_chunk).min(m);
            run_task::<K>(operands, weights, geometry, input, epilogue, &output, &plan, scratch, rows, cols);
        },
    );
}

#[allow(clippy::too_many_arguments)]
fn run_task<K: MicroKernel>(
    operands: Operands<'_>,
    weights: &PackedWeights,
    geometry: &ConvGeometry,
    input: &[f32],
    epilogue: Epilogue<'_>,
    output: &Disjoint<'_, f32>,
    plan: &Plan,
    scratch: &mut pack::Scratch,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
) {
    let k = geometry.depth();
    let mut k0 = 0;
    while k0 < k {
        let kc = plan.kc.min(k - k0);
        let pairs = match operands {
            Operands::F32 => None,
            Operands::Bf16(pairs) => Some(pairs.expect("bf16 direct convolutions have paired weights")),
        };
        let (packed, paired) = scratch.pack::<K>(geometry, input, k0..k0 + kc, cols.clone(), pairs.is_some());
        if pairs.is_some() {
            for (p, out) in packed.chunks_exact(kc * K::NR).zip(paired.chunks_exact_mut(kc.div_ceil(2) * K::NR)) {
                bf16::pair_rows(K::ISA, p, K::NR, out);
            }
        }
        let (first, last) = (k0 == 0, k0 + kc == k);
        let kp = kc.div_ceil(2);
        for row0 in rows.clone().step_by(K::MR) {
            let panel = row0 / K::MR;
            let tile_rows = K::MR.min(rows.end - row0);
            for p in 0..cols.len().div_ceil(K::NR) {
                let col0 = cols.start + p * K::NR;
                let tile_cols = K::NR.min(cols.end - col0);
                let tile = TileRegion { row0, col0, rows: tile_rows, cols: tile_cols, row_stride: geometry.pixels() };
                let run = |c: *mut f32, rs: usize| match pairs {
                    None => {
                        let (a, b) = (weights.panel(panel, k0, kc), &packed[p * kc * K::NR..][..kc * K::NR]);
                        // SAFETY: the panels hold kc steps, the ISA was checked
                        // by the caller, and `compute_tile` hands the kernel an
                        // exclusive MR x NR tile.
                        unsafe { K::tile(kc, a.as_ptr(), b.as_ptr(), c, rs, !first, K::NR) }
                    }
                    Some(pairs) => {
                        let (a, b) = (pairs.panel(panel, k0 / 2, kp), &paired[p * kp * K::NR..][..kp * K::NR]);
                        // SAFETY: as above, with kp paired steps.
                        unsafe { K::tile_bf16(kp, a.as_ptr(), b.as_ptr(), c, rs, !first, K::NR) }
                    }
                };
                // SAFETY: tasks own disjoint (rows x cols) rectangles of the
                // output, and this tile lies inside this task's rectangle.
                unsafe { compute_tile::<K>(output, tile, run) };
                if last {
                    // SAFETY: as above; the kernel call has returned.
                    unsafe { apply_epilogue(output, tile, epilogue) };
                }
            }
        }
        k0 += kc;
    }
}

/// A rectangle of the output: `rows` channels from `row0`, `cols` pixels
/// from `col0`, in rows `row_stride` apart.
#[derive(Clone, Copy)]
struct TileRegion {
    row0: usize,
    col0: usize,
    rows: usize,
    cols: usize,
    row_stride: usize,
}

impl TileRegion {
    /// Where row `r` of the region starts in the output.
    fn start(&self, r: usize) -> usize {
        (self.row0 + r) * self.row_stride + self.col0
    }
}

/// Runs a micro-kernel call (`run(c, row_stride)`) on one tile; a partial
/// tile goes through a full-size scratch tile so the kernel never writes out
/// of bounds.
///
/// # Safety
/// `tile` must lie inside the output and no other thread may touch it.
unsafe fn compute_tile<K: MicroKernel>(output: &Disjoint<'_, f32>, tile: TileRegion, run: impl Fn(*mut f32, usize)) {
    if tile.rows == K::MR && tile.cols == K::NR {
        run(output.piece(tile.start(0), K::MR, K::NR, tile.row_stride), tile.row_stride);
        return;
    }
    let mut local = [0.0f32; 512];
    let local = &mut local[..K::MR * K::NR];
    for r in 0..tile.rows {
        // SAFETY: row r of the tile is inside the output and ours (caller).
        let row = unsafe { output.run_mut(tile.start(r), tile.cols) };
        local[r * K::NR..r * K::NR + tile.cols].copy_from_slice(row);
    }
    run(local.as_mut_ptr(), K::NR);
    for r in 0..tile.rows {
        // SAFETY: as above.
        let row = unsafe { output.run_mut(tile.start(r), tile.cols) };
        row.copy_from_slice(&local[r * K::NR..r * K::NR + tile.cols]);
    }
}

/// Applies the epilogue to a finished tile (still hot in L1).
///
/// # Safety
/// `tile` must lie inside the output and no other thread may touch it.
unsafe fn apply_epilogue(output: &Disjoint<'_, f32>, tile: TileRegion, epilogue: Epilogue<'_>) {
    for r in 0..tile.rows {
        // SAFETY: inside the output and ours (caller).
        let row = unsafe { output.run_mut(tile.start(r), tile.cols) };
        epilogue.apply(row, tile.row0 + r, tile.start(r));
    }
}

impl Epilogue<'_> {
    /// Finishes `row`, the values of output channel `channel` that start at
    /// flat index `start` of the image's output, in one pass.
    pub(crate) fn apply(&self, row: &mut [f32], channel: usize, start: usize) {
        if self.scale.is_none() && self.shift.is_none() && self.residual.is_none() && !self.relu {
            return;
        }
        let scale = self.scale.map_or(1.0, |s| s[channel]);
        let shift = self.shift.map_or(0.0, |s| s[channel]);
        let relu = self.relu;
        let finish = |v: f32, r: f32| {
            let y = v * scale + shift + r;
            if relu { y.max(0.0) } else { y }
        };
        match self.residual {
            Some(residual) => {
                let len = row.len();
                row.iter_mut().zip(&residual[start..start + len]).for_each(|(v, &r)| *v = finish(*v, r));
            }
            None => row.iter_mut().for_each(|v| *v = finish(*v, 0.0)),
        }
    }
}
