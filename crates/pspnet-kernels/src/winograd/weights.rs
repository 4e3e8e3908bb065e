//! The weight transform: `U = G g Gᵀ` per filter, written straight into
//! micro-kernel `A`-panel order (or bf16 pairs of it).

use std::cell::RefCell;

use rayon::prelude::*;

use super::plan::{Plan, TileSize};
use super::transform::{F2, F4, F5, Lanes, MAX_POINTS, Tiling};
use crate::Isa;
use crate::gemm::{PackedWeights, bf16};
use crate::isa::multiversion;

thread_local! {
    /// One panel of `U` in f32 on its way to bf16 pairs, per worker thread.
    static U_PANEL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Converts one panel of `U` (`points` x `stride` steps of `width` values,
/// of which the first `steps` are used) into bf16 pairs: `points` x
/// `stride.div_ceil(2)` paired steps.
fn pair_panel(isa: Isa, values: &[f32], points: usize, stride: usize, steps: usize, width: usize, out: &mut [u32]) {
    let paired = stride.div_ceil(2);
    for (point, out) in out[..points * paired * width].chunks_exact_mut(paired * width).enumerate() {
        bf16::pair_rows(isa, &values[point * stride * width..][..steps * width], width, out);
    }
}

/// `U` for input channels `channels`: per output-channel panel, per point,
/// per channel, the panel's `MR` transformed values (a micro-kernel `A`
/// panel); with `pairs`, in bf16 pairs instead, each panel transformed into
/// a scratch that stays in cache and paired from there (`u` is then unused).
pub(super) fn transform_weights(
    plan: &Plan,
    weights: &PackedWeights,
    channels: std::ops::Range<usize>,
    u: &mut [f32],
    pairs: Option<&mut [u32]>,
) {
    let (isa, points, chunk, mr) = (plan.isa, plan.points, plan.chunk, weights.mr());
    let rows = weights.rows().div_ceil(mr);
    let (panel_len, pair_len) = (points * chunk * mr, points * chunk.div_ceil(2) * mr);
    let transform = |panel: usize, u: &mut [f32]| {
        let taps = weights.panel(panel, channels.start * 9, channels.len() * 9);
        weight_panel(isa, plan.size, taps, mr, chunk, u);
    };
    match pairs {
        None => u[..rows * panel_len].par_chunks_mut(panel_len).enumerate().for_each(|(panel, u)| transform(panel, u)),
        Some(pairs) => pairs[..rows * pair_len].par_chunks_mut(pair_len).enumerate().for_each(|(panel, pairs)| {
            U_PANEL.with_borrow_mut(|u| {
                u.resize(panel_len, 0.0);
                transform(panel, u);
                pair_panel(isa, u, points, chunk, channels.len(), mr, pairs);
            })
        }),
    }
}

multiversion! {
    /// Transforms one packed weight panel (`MR` filters per channel, taps
    /// outer) into its `A` panels.
    fn weight_panel(size: TileSize, taps: &[f32], mr: usize, chunk: usize, u: &mut [f32]) {
        match (size, mr) {
            (TileSize::F4, 8) => weight_panel_lanes::<F4, 8>(taps, chunk, u),
            (TileSize::F4, 4) => weight_panel_lanes::<F4, 4>(taps, chunk, u),
            (TileSize::F2, 8) => weight_panel_lanes::<F2, 8>(taps, chunk, u),
            (TileSize::F5, 8) => weight_panel_lanes::<F5, 8>(taps, chunk, u),
            (TileSize::F2, 4) => weight_panel_lanes::<F2, 4>(taps, chunk, u),
            (TileSize::F5, 4) => weight_panel_lanes::<F5, 4>(taps, chunk, u),
            _ => unreachable!("micro-kernels have 4 or 8 rows"),
        }
    }
}

/// [`weight_panel`] for `L = MR` lanes. Channels go in blocks of
/// `WEIGHT_BLOCK`, so each point's `A` panel is written in runs of
/// `WEIGHT_BLOCK x L` values rather than one `L`-value scatter per point.
#[inline(always)]
fn weight_panel_lanes<T: Tiling, const L: usize>(taps: &[f32], chunk: usize, u: &mut [f32]) {
    const WEIGHT_BLOCK: usize = 8;
    let mut block = [[[0.0f32; L]; WEIGHT_BLOCK]; MAX_POINTS];
    let mut u_one = [[0.0f32; L]; MAX_POINTS];
    let channels = taps.len() / (9 * L);
    for c0 in (0..channels).step_by(WEIGHT_BLOCK) {
        let count = WEIGHT_BLOCK.min(channels - c0);
        for (i, g) in taps[c0 * 9 * L..].chunks_exact(9 * L).take(count).enumerate() {
            let filter: &[Lanes<L>; 9] = g.as_chunks().0.try_into().expect("9 taps");
            T::weight(filter, &mut u_one);
            for (point, values) in u_one[..T::POINTS].iter().enumerate() {
                block[point][i] = *values;
            }
        }
        for (point, values) in block[..T::POINTS].iter().enumerate() {
            u[(point * chunk + c0) * L..][..count * L].copy_from_slice(values[..count].as_flattened());
        }
    }
}
