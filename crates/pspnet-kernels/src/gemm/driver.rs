//! The blocked driver of the direct convolution: the input pixels `B` (`K`
//! x `N = output pixels`) are gathered (implicit im2col, see [`super::pack`])
//! block by block into a cache-sized buffer of `NR`-column panels. Loop nest
//! of one task (a block of output pixels x a chunk of out channels): `for
//! each KC slice of K: pack B; for each A panel (kept in L1): for each B
//! panel (streamed from L2): micro-kernel` and, after the last slice, the
//! fused epilogue on the tile while it is still in L1.

use rayon::prelude::*;

use super::{ConvJob, Epilogue, MicroKernel, Operands, bf16, pack};
use crate::disjoint::Disjoint;

/// Depth of one packed slice of `K`: the `A` panel (`MR x KC`) stays in L1.
const KC: usize = 384;
/// Budget in bytes of one packed `B` block: three eighths of the L2
/// cache, beside the `A` panels and the output tiles.
fn b_block_bytes() -> usize {
    crate::cache::l2_bytes() * 3 / 8
}

/// How one convolution is cut into tasks: `n_blocks` blocks of whole
/// `NR`-pixel panels (sizes differing by at most one panel) times `m_chunks`
/// chunks of whole `MR`-channel panels. The task count is a multiple of the
/// thread count where the shape allows, so no thread idles at the end.
struct Blocking {
    kc: usize,
    n: usize,
    nr: usize,
    n_panels: usize,
    n_blocks: usize,
    max_block_panels: usize,
    m_chunk: usize,
    m_chunks: usize,
}

impl Blocking {
    fn new<K: MicroKernel>(m: usize, n: usize, k: usize) -> Blocking {
        let threads = rayon::current_num_threads().max(1);
        // Every slice but the last holds whole bf16 pairs.
        let kc = k.div_ceil(k.div_ceil(KC)).next_multiple_of(2).min(k);
        let n_panels = n.div_ceil(K::NR);
        let by_cache = (b_block_bytes() / (kc * K::NR * size_of::<f32>())).max(1);
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
        Blocking {
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

/// The direct convolution of one image (`out` is `M x oh x ow`) on
/// micro-kernel `K`, which the CPU must support.
pub(crate) fn convolve<K: MicroKernel>(job: &ConvJob<'_>, operands: Operands<'_>, out: &mut [f32]) {
    let (m, n, k) = (job.weights.rows(), job.geometry.pixels(), job.geometry.depth());
    let weights = job.weights;
    debug_assert_eq!(weights.mr(), K::MR);
    debug_assert_eq!(weights.depth(), k);
    debug_assert_eq!(out.len(), m * n);
    let plan = Blocking::new::<K>(m, n, k);
    let output = Disjoint::new(out);
    (0..plan.n_blocks * plan.m_chunks).into_par_iter().for_each_init(
        || pack::Scratch::new(plan.kc, plan.max_block_panels * K::NR),
        |scratch, task| {
            let (nb, mc) = (task / plan.m_chunks, task % plan.m_chunks);
            let cols = plan.cols(nb);
            let rows = mc * plan.m_chunk..((mc + 1) * plan.m_chunk).min(m);
            run_task::<K>(job, operands, &output, &plan, scratch, rows, cols);
        },
    );
}

/// One task: its rectangle of the output, over every `KC` slice of `K`.
fn run_task<K: MicroKernel>(
    job: &ConvJob<'_>,
    operands: Operands<'_>,
    output: &Disjoint<'_, f32>,
    plan: &Blocking,
    scratch: &mut pack::Scratch,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
) {
    let (weights, geometry, epilogue) = (job.weights, job.geometry, job.epilogue);
    let pairs = match operands {
        Operands::F32 => None,
        Operands::Bf16(pairs) => Some(pairs),
    };
    let k = geometry.depth();
    let mut k0 = 0;
    while k0 < k {
        let kc = plan.kc.min(k - k0);
        let (packed, paired) = scratch.pack::<K>(geometry, job.input, k0..k0 + kc, cols.clone(), pairs.is_some());
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
