//! The output transform: `Aᵀ M A` per tile and output channel, then the
//! epilogue on each finished channel.

use rayon::prelude::*;

use super::LANES;
use super::plan::{Plan, Tile, TileSize};
use super::transform::{F2, F4, F5, MAX_POINTS, Tiling};
use crate::gemm::Epilogue;
use crate::geometry::ConvGeometry;
use crate::isa::multiversion;

/// How far ahead, in tiles, [`output_plane`] asks for its products: its 36
/// or 49 points are as many streams through `M`, more than the hardware
/// prefetchers follow.
const M_AHEAD: usize = 4 * LANES;

/// Asks for the cache line holding `address` (a hint: never faults).
#[inline(always)]
fn prefetch(address: *const f32) {
    // SAFETY: SSE is part of every x86-64 CPU, and a prefetch of any
    // address, valid or not, has no effect but on the caches.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

/// Writes the band's output tiles, `Aᵀ M A` per tile and output channel,
/// then, if given, the epilogue on each whole channel.
pub(super) fn transform_output(
    plan: &Plan,
    g: &ConvGeometry,
    band: &[Tile],
    m: &[f32],
    out: &mut [f32],
    epilogue: Option<Epilogue<'_>>,
) {
    let plane_len = g.oh * g.ow;
    let products = m.par_chunks_exact(plan.points * plan.band);
    out.par_chunks_mut(plane_len).zip(products).enumerate().for_each(|(channel, (plane, m))| {
        output_plane(plan.isa, plan.size, g, band, m, plan.band, plane);
        if let Some(epilogue) = epilogue {
            epilogue.apply(plane, channel, channel * plane_len);
        }
    });
}

multiversion! {
    /// Writes one output channel's tiles from its products (`m`: per point,
    /// the band's tiles; points are `point_stride` apart).
    fn output_plane(size: TileSize, g: &ConvGeometry, band: &[Tile], m: &[f32], point_stride: usize, plane: &mut [f32]) {
        match size {
            TileSize::F4 => output_plane_tiled::<F4>(g, band, m, point_stride, plane),
            TileSize::F2 => output_plane_tiled::<F2>(g, band, m, point_stride, plane),
            TileSize::F5 => output_plane_tiled::<F5>(g, band, m, point_stride, plane),
        }
    }
}

/// [`output_plane`] with the transform of `T`.
#[inline(always)]
fn output_plane_tiled<T: Tiling>(g: &ConvGeometry, band: &[Tile], m: &[f32], point_stride: usize, plane: &mut [f32]) {
    let [dy, dx] = g.dilation;
    let (mut products, mut y) = ([[0.0f32; LANES]; MAX_POINTS], [[0.0f32; LANES]; MAX_POINTS]);
    for (group, tiles) in band.chunks(LANES).enumerate() {
        let t0 = group * LANES;
        for point in 0..T::POINTS {
            prefetch(m.as_ptr().wrapping_add(point * point_stride + t0 + M_AHEAD));
        }
        for (point, products) in products[..T::POINTS].iter_mut().enumerate() {
            *products = m[point * point_stride + t0..][..LANES].try_into().expect("LANES values");
        }
        T::output(&products, &mut y);
        for (l, tile) in tiles.iter().enumerate() {
            let rows = T::OUT.min((g.oh - tile.oy).div_ceil(dy));
            let cols = T::OUT.min((g.ow - tile.ox).div_ceil(dx));
            for i in 0..rows {
                let out_row = &mut plane[(tile.oy + i * dy) * g.ow + tile.ox..][..(cols - 1) * dx + 1];
                for j in 0..cols {
                    out_row[j * dx] = y[i * T::OUT + j][l];
                }
            }
        }
    }
}
