//! The input transform: `V = Bᵀ d B` per tile patch and input channel,
//! written straight into micro-kernel `B`-panel order (or bf16 pairs of it).

use rayon::prelude::*;

use super::plan::{Plan, Tile, TileSize};
use super::transform::{F2, F4, F5, Lanes, MAX_POINTS, Tiling};
use super::{LANES, MAX_NR};
use crate::disjoint::Disjoint;
use crate::gemm::bf16;
use crate::geometry::ConvGeometry;
use crate::isa::multiversion;

/// Where the input transform writes `V`: in f32, or in bf16 pairs of
/// consecutive channels (so `V` never exists in f32 when multiplying in bf16).
pub(super) enum VOut<'a> {
    F32(&'a mut [f32]),
    Pairs(&'a mut [u32]),
}

/// `V` for one band and chunk: per tile panel, per point, per channel (or
/// pair of channels), the panel's `NR` transformed tiles (a micro-kernel
/// `B` panel; zero past the band's last tile). Tasks are (tile panel,
/// slice of channels).
pub(super) fn transform_input(
    plan: &Plan,
    g: &ConvGeometry,
    input: &[f32],
    band: &[Tile],
    channels: std::ops::Range<usize>,
    v: VOut<'_>,
) {
    let (kc, nr) = (channels.len(), plan.nr);
    let panels = band.len().div_ceil(nr);
    let threads = rayon::current_num_threads().max(1);
    let slices = (4 * threads).div_ceil(panels).min(kc);
    // A pair of channels is never split between tasks.
    let per_slice = kc.div_ceil(slices).next_multiple_of(2);
    let slices = kc.div_ceil(per_slice);
    let v = match v {
        VOut::F32(v) => Target::F32(Disjoint::new(&mut v[..panels * plan.points * kc * nr])),
        VOut::Pairs(v) => Target::Pairs(Disjoint::new(&mut v[..panels * plan.points * kc.div_ceil(2) * nr])),
    };
    (0..panels * slices).into_par_iter().for_each(|task| {
        let (panel, slice) = (task / slices, task % slices);
        let tiles = &band[panel * nr..((panel + 1) * nr).min(band.len())];
        let mine = slice * per_slice..((slice + 1) * per_slice).min(kc);
        input_panel(plan.isa, plan.size, g, input, tiles, channels.start, mine, kc, nr, panel, &v);
    });
}

/// [`VOut`] as the tasks of [`transform_input`] share it.
enum Target<'a> {
    F32(Disjoint<'a, f32>),
    Pairs(Disjoint<'a, u32>),
}

multiversion! {
    /// Transforms input channels `channels.start + mine` of one panel of
    /// tiles into `V`, with the transform of `size`.
    #[allow(clippy::too_many_arguments)]
    fn input_panel(
        size: TileSize,
        g: &ConvGeometry,
        input: &[f32],
        tiles: &[Tile],
        first_channel: usize,
        mine: std::ops::Range<usize>,
        kc: usize,
        nr: usize,
        panel: usize,
        v: &Target<'_>,
    ) {
        let panel = PanelInput { g, input, tiles, first_channel, kc, nr, panel };
        match size {
            TileSize::F4 => panel.transform::<F4>(mine, v),
            TileSize::F2 => panel.transform::<F2>(mine, v),
            TileSize::F5 => panel.transform::<F5>(mine, v),
        }
    }
}

/// One panel of tiles of [`transform_input`]'s band, and where its `V` goes.
struct PanelInput<'a> {
    g: &'a ConvGeometry,
    input: &'a [f32],
    tiles: &'a [Tile],
    first_channel: usize,
    kc: usize,
    nr: usize,
    panel: usize,
}

impl PanelInput<'_> {
    /// Transforms input channels `first_channel + mine` into `V`. Each
    /// point's row of `NR` tiles is assembled in a local buffer and stored
    /// at once, as whole cache lines: storing each group of `LANES` tiles
    /// into its rows as it came wrote each cache line of `V` in two halves
    /// at different times. In pairs, two channels' rows are stored as one
    /// row of pairs.
    #[inline(always)]
    fn transform<T: Tiling>(&self, mine: std::ops::Range<usize>, v: &Target<'_>) {
        let (g, kc, nr, panel) = (self.g, self.kc, self.nr, self.panel);
        let (mut patch, mut transformed) = ([[0.0f32; LANES]; MAX_POINTS], [[0.0f32; LANES]; MAX_POINTS]);
        let mut rows = [[0.0f32; 2 * MAX_NR]; MAX_POINTS];
        let step = if matches!(v, Target::Pairs(_)) { 2 } else { 1 };
        for c0 in mine.clone().step_by(step) {
            let count = step.min(mine.end - c0);
            for i in 0..count {
                let plane = &self.input[(self.first_channel + c0 + i) * g.h * g.w..][..g.h * g.w];
                for lane0 in (0..nr).step_by(LANES) {
                    let group = self.tiles.get(lane0..).unwrap_or_default();
                    gather_patches::<T>(g, plane, &group[..group.len().min(LANES)], &mut patch);
                    T::input(&patch, &mut transformed);
                    for (row, values) in rows.iter_mut().zip(&transformed[..T::POINTS]) {
                        row[i * nr + lane0..][..LANES].copy_from_slice(values);
                    }
                }
            }
            for (point, row) in rows[..T::POINTS].iter().enumerate() {
                match v {
                    Target::F32(v) => {
                        // SAFETY: each (panel, channel) row of V is written
                        // by the one task owning that panel and channel slice.
                        let dst = unsafe { v.run_mut(((panel * T::POINTS + point) * kc + c0) * nr, nr) };
                        dst.copy_from_slice(&row[..nr]);
                    }
                    Target::Pairs(v) => {
                        let start = ((panel * T::POINTS + point) * kc.div_ceil(2) + c0 / 2) * nr;
                        // SAFETY: likewise per pair of channels, and pairs
                        // never straddle two tasks' slices.
                        let dst = unsafe { v.run_mut(start, nr) };
                        let (lo, hi) = row.split_at(nr);
                        for ((d, &l), &h) in dst.iter_mut().zip(lo).zip(&hi[..nr]) {
                            *d = bf16::pair(l, if count == 2 { h } else { 0.0 });
                        }
                    }
                }
            }
        }
    }
}

/// Fills `patch` (point-major, one lane per tile) with the input patches
/// of up to `LANES` tiles; zero in the padding and past the last tile.
#[inline(always)]
fn gather_patches<T: Tiling>(g: &ConvGeometry, plane: &[f32], tiles: &[Tile], patch: &mut [Lanes<LANES>]) {
    let n = T::IN;
    let [dy, dx] = g.dilation;
    let [py, px] = g.padding;
    let (span_y, span_x) = ((n - 1) * dy, (n - 1) * dx);
    let patch = &mut patch[..T::POINTS];
    if tiles.len() < LANES {
        patch.iter_mut().for_each(|p| p.fill(0.0));
    }
    for (l, tile) in tiles.iter().enumerate() {
        let inside = tile.oy >= py && tile.ox >= px && tile.oy - py + span_y < g.h && tile.ox - px + span_x < g.w;
        if inside {
            let (iy0, ix0) = (tile.oy - py, tile.ox - px);
            for r in 0..n {
                let row = &plane[(iy0 + r * dy) * g.w + ix0..][..=span_x];
                for s in 0..n {
                    patch[r * n + s][l] = row[s * dx];
                }
            }
        } else {
            let (iy0, ix0) = (tile.oy as isize - py as isize, tile.ox as isize - px as isize);
            for r in 0..n {
                let iy = iy0 + (r * dy) as isize;
                for s in 0..n {
                    let ix = ix0 + (s * dx) as isize;
                    let inside = (0..g.h as isize).contains(&iy) && (0..g.w as isize).contains(&ix);
                    patch[r * n + s][l] = if inside { plane[iy as usize * g.w + ix as usize] } else { 0.0 };
                }
            }
        }
    }
}
