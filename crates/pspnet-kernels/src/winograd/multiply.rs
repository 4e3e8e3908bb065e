//! The transform domain's GEMMs: `M[ξ] += U[ξ] · V[ξ]` for every point `ξ`,
//! on the same micro-kernels as the direct convolution.

use rayon::prelude::*;

use super::plan::Plan;
use crate::disjoint::Disjoint;
use crate::gemm::MicroKernel;

/// Budget in bytes of the `B` panels one task multiplies per point: three
/// quarters of the L2 cache. The larger the group, the fewer tasks share a
/// point's `A` panels, and the fewer times each is read from memory (at
/// 1 MiB of L2, one task covers all of a chunk's tiles in the head's 3x3).
fn b_group_bytes() -> usize {
    crate::cache::l2_bytes() * 3 / 4
}
/// Sets (`first`) or accumulates `M += U · V` over one chunk of `kc`
/// channels for a band of `tiles` tiles. As in the direct GEMM, each `A`
/// panel (a point's `U` for `MR` output channels) stays in L1 while the
/// `B` panels of a group of tile panels stream past it from L2.
pub(super) fn multiply<K: MicroKernel>(
    plan: &Plan,
    tiles: usize,
    kc: usize,
    u: &[f32],
    v: &[f32],
    m: &mut [f32],
    first: bool,
) {
    multiply_with::<K>(plan, tiles, kc, m, |row_panel, panel, point, c, rs, cols| {
        let a = &u[(row_panel * plan.points + point) * plan.chunk * K::MR..][..kc * K::MR];
        let b = &v[(panel * plan.points + point) * kc * K::NR..][..kc * K::NR];
        // SAFETY: `a` and `b` hold kc steps; `multiply_with` hands out an
        // exclusive tile inside M; the caller checked the ISA.
        unsafe { K::tile(kc, a.as_ptr(), b.as_ptr(), c, rs, !first, cols) };
    });
}

/// [`multiply`] on `U` and `V` in bf16 pairs.
pub(super) fn multiply_bf16<K: MicroKernel>(
    plan: &Plan,
    tiles: usize,
    kc: usize,
    u: &[u32],
    v: &[u32],
    m: &mut [f32],
    first: bool,
) {
    let (kp, chunk_pairs) = (kc.div_ceil(2), plan.chunk.div_ceil(2));
    multiply_with::<K>(plan, tiles, kc, m, |row_panel, panel, point, c, rs, cols| {
        let a = &u[(row_panel * plan.points + point) * chunk_pairs * K::MR..][..kp * K::MR];
        let b = &v[(panel * plan.points + point) * kp * K::NR..][..kp * K::NR];
        // SAFETY: as in `multiply`, with kp paired steps.
        unsafe { K::tile_bf16(kp, a.as_ptr(), b.as_ptr(), c, rs, !first, cols) };
    });
}

/// The task grid of [`multiply`]: calls `tile(row_panel, tile_panel,
/// point, c, row_stride, cols)` for every `MR x NR` tile of `M`, each tile
/// exclusively owned by the calling task; `cols` of its columns are tiles
/// of the band, the rest padding (the last panel of a band is often mostly
/// padding: in F(4) tiles, a dilated layer of PSPNet-50 at 473x473 has 256
/// tiles, 6 panels of 48 of which the last holds 16).
fn multiply_with<K: MicroKernel>(
    plan: &Plan,
    tiles: usize,
    kc: usize,
    m: &mut [f32],
    tile: impl Fn(usize, usize, usize, *mut f32, usize, usize) + Sync,
) {
    let tile_panels = tiles.div_ceil(K::NR);
    let group = (b_group_bytes() / (kc * K::NR * size_of::<f32>())).clamp(1, tile_panels);
    let groups = tile_panels.div_ceil(group);
    let threads = rayon::current_num_threads().max(1);
    let row_chunks = (4 * threads).div_ceil(groups).clamp(1, plan.row_panels);
    let per_chunk = plan.row_panels.div_ceil(row_chunks);
    let m = Disjoint::new(m);
    let row_stride = plan.points * plan.band;
    (0..groups * row_chunks).into_par_iter().for_each(|task| {
        let (g, r) = (task / row_chunks, task % row_chunks);
        let panels = g * group..((g + 1) * group).min(tile_panels);
        for point in 0..plan.points {
            for row_panel in r * per_chunk..((r + 1) * per_chunk).min(plan.row_panels) {
                for panel in panels.clone() {
                    let c_start = (row_panel * K::MR * plan.points + point) * plan.band + panel * K::NR;
                    // The tile is inside M (checked by `piece`) and belongs to
                    // this task alone (its row panels x its tile panels).
                    let cols = K::NR.min(tiles - panel * K::NR);
                    tile(row_panel, panel, point, m.piece(c_start, K::MR, K::NR, row_stride), row_stride, cols);
                }
            }
        }
    });
}
