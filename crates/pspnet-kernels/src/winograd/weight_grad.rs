//! A 3x3, stride-1 convolution's weight gradient in the Winograd domain,
//! F(3x3, m x m): the forward tiling's maps, transposed (see
//! [`super::transform`]), turn the correlation of each input patch with its
//! tile of the output's gradient into `(m + 2)²` products, and the sum over
//! every tile of every image is one GEMM per transform-domain point `ξ`:
//! `M[ξ] (out x in) = D[ξ] (out x tiles) · V[ξ] (tiles x in)`, with
//! `D = A δ Aᵀ` the output gradient's tiles and `V = Bᵀ d B` the input's
//! patches. `Gᵀ M G` then gives each filter's 3x3 gradient.
//!
//! In F(4) that is 36 multiplications per 4x4 tile and pair of channels
//! where the direct sum does 144, and no gathering of taps. A dilated layer
//! takes its tiles on the `d x d` sub-grids, as the forward pass does.
//! Buffers are bounded as there: input channels in chunks (one `M` each),
//! tiles in bands (one `D` and `V` each). Each value is summed over the
//! bands in order, and over a band's tiles in order, whatever the number of
//! threads.

use std::ops::Range;

use rayon::prelude::*;

use super::plan::{Tile, TileSize, tiles};
use super::transform::{F2, F4, F5, Lanes, MAX_POINTS, Tiling};
use super::{LANES, WORKSPACE};
use crate::Isa;
use crate::disjoint::Disjoint;
use crate::gemm::{MicroKernel, WeightGradJob};
use crate::geometry::ConvGeometry;
use crate::isa::multiversion;

/// Tiles per step of the GEMMs' depth: a step's `A` panel (`MR` rows) stays
/// in L1 while the task's `B` panels stream past it from L2.
const KC: usize = 256;

/// Most floats each buffer may hold: `D` (a band of the output gradient's
/// tiles), `V` (a band and chunk of the input's) and `M` (a chunk's sums).
#[derive(Clone, Copy)]
struct Budgets {
    d: usize,
    v: usize,
    m: usize,
}

/// 32, 16 and 24 MiB, as the forward pass's `U`, `V` and `M`.
const BUDGETS: Budgets = Budgets { d: 8 << 20, v: 4 << 20, m: 6 << 20 };

/// `dW` (`cout x cin*3*3`, row-major) of `job`, a 3x3 stride-1 convolution,
/// on micro-kernel `K` (which the CPU must support).
pub(crate) fn weight_grad<K: MicroKernel>(job: &WeightGradJob<'_>) -> Vec<f32> {
    weight_grad_within::<K>(job, BUDGETS)
}

/// [`weight_grad`] with buffers of at most `budgets`.
fn weight_grad_within<K: MicroKernel>(job: &WeightGradJob<'_>, budgets: Budgets) -> Vec<f32> {
    debug_assert!(job.kernel == [3, 3] && job.stride == [1, 1]);
    let plan = GradPlan::new::<K>(job, budgets);
    let mut workspace = WORKSPACE.take();
    workspace.resize(plan.d_len() + plan.v_len() + plan.m_len(), 0.0);
    let (d, rest) = workspace.split_at_mut(plan.d_len());
    let (v, m) = rest.split_at_mut(plan.v_len());
    let mut grad = vec![0.0f32; job.cout * job.cin * 9];
    let total = job.images * plan.tiles.len();
    let bands: Vec<Range<usize>> = (0..total).step_by(plan.band).map(|t| t..(t + plan.band).min(total)).collect();
    let chunks: Vec<Range<usize>> =
        (0..job.cin).step_by(plan.chunk).map(|c| c..(c + plan.chunk).min(job.cin)).collect();
    let ([h, w], [oh, ow]) = (job.input_hw, job.output_hw);
    let deltas =
        Operand { side: Side::Deltas, data: job.grad_output, channels: job.cout, plane: oh * ow, width: plan.mr };
    let patches = Operand { side: Side::Patches, data: job.input, channels: job.cin, plane: h * w, width: plan.nr };
    for (i, channels) in chunks.iter().enumerate() {
        for (b, band) in bands.iter().enumerate() {
            // One band's `D` serves every chunk.
            if bands.len() > 1 || i == 0 {
                transform_operand(&plan, deltas, 0, plan.rows / plan.mr, band.clone(), d);
            }
            let panels = channels.len().div_ceil(plan.nr);
            transform_operand(&plan, patches, channels.start, panels, band.clone(), v);
            multiply::<K>(&plan, band.len(), channels.len(), d, v, m, b == 0);
        }
        transform_sums(&plan, job, channels.clone(), m, &mut grad);
    }
    WORKSPACE.set(workspace);
    grad
}

/// How one layer's weight gradient is cut.
struct GradPlan {
    isa: Isa,
    size: TileSize,
    points: usize,
    geometry: ConvGeometry,
    /// One image's tiles.
    tiles: Vec<Tile>,
    mr: usize,
    nr: usize,
    /// Output channels, padded to whole `MR` panels.
    rows: usize,
    /// Input channels per chunk, whole `NR` panels.
    chunk: usize,
    /// Tiles per band.
    band: usize,
}

impl GradPlan {
    fn new<K: MicroKernel>(job: &WeightGradJob<'_>, budgets: Budgets) -> GradPlan {
        let ([h, w], [oh, ow]) = (job.input_hw, job.output_hw);
        let (stride, padding, dilation) = (job.stride, job.padding, job.dilation);
        let geometry = ConvGeometry { cin: job.cin, h, w, kh: 3, kw: 3, stride, padding, dilation, oh, ow };
        let size = TileSize::for_weight_grad(&geometry);
        let (points, tiles) = (size.points(), tiles(&geometry, size.out()));
        let rows = job.cout.next_multiple_of(K::MR);
        let panels = job.cin.div_ceil(K::NR);
        let max_panels = (budgets.m / (points * rows * K::NR)).max(1);
        let chunk = panels.div_ceil(panels.div_ceil(max_panels)) * K::NR;
        let total = job.images * tiles.len();
        let max_band = (budgets.d / (points * rows)).min(budgets.v / (points * chunk)).max(1);
        let band = total.div_ceil(total.div_ceil(max_band));
        GradPlan { isa: K::ISA, size, points, geometry, tiles, mr: K::MR, nr: K::NR, rows, chunk, band }
    }

    /// Floats between one point's run of a panel and the next: a band of
    /// `width`-channel rows.
    fn point_stride(&self, width: usize) -> usize {
        self.band * width
    }

    fn d_len(&self) -> usize {
        self.rows / self.mr * self.points * self.point_stride(self.mr)
    }

    fn v_len(&self) -> usize {
        self.chunk / self.nr * self.points * self.point_stride(self.nr)
    }

    fn m_len(&self) -> usize {
        self.points * self.rows * self.chunk
    }
}

/// One operand of the GEMMs before its transform: the output's gradient
/// (for `D`) or the input (for `V`), and the panels it is packed in.
#[derive(Clone, Copy)]
struct Operand<'a> {
    side: Side,
    /// `images x channels x plane`.
    data: &'a [f32],
    /// Channels per image; a panel's lanes past the last are zero padding.
    channels: usize,
    plane: usize,
    /// Channels per panel: `MR` (`D`) or `NR` (`V`).
    width: usize,
}

/// Which of a tile's two operands a transform makes.
#[derive(Clone, Copy)]
enum Side {
    /// `A δ Aᵀ` of the output gradient's tile.
    Deltas,
    /// `Bᵀ d B` of the input's patch.
    Patches,
}

/// Transforms `panels` panels of `operand`, from channel `first` on, for
/// one band into `out`: per panel, per point, per tile, the panel's `width`
/// values. Tasks are (panel, slice of the band's tiles), about four per
/// thread; each owns its tiles' run of every point of its panel.
fn transform_operand(
    plan: &GradPlan,
    operand: Operand<'_>,
    first: usize,
    panels: usize,
    band: Range<usize>,
    out: &mut [f32],
) {
    let threads = rayon::current_num_threads().max(1);
    let per_slice = band.len().div_ceil((4 * threads).div_ceil(panels));
    let slices = band.len().div_ceil(per_slice);
    let (out, width) = (Disjoint::new(out), operand.width);
    (0..panels * slices).into_par_iter().for_each(|task| {
        let (panel, slice) = (task / slices, task % slices);
        let tiles = band.start + slice * per_slice..(band.start + (slice + 1) * per_slice).min(band.end);
        let mut blocks: Vec<&mut [f32]> = (0..plan.points)
            .map(|point| {
                let at = (panel * plan.points + point) * plan.point_stride(width) + (tiles.start - band.start) * width;
                // SAFETY: each (panel, point, slice of tiles) run of the
                // buffer is written by this task alone.
                unsafe { out.run_mut(at, tiles.len() * width) }
            })
            .collect();
        let channels = first + panel * width..first + (panel + 1) * width;
        transform_tiles(plan.isa, plan, operand, tiles, channels, &mut blocks);
    });
}

multiversion! {
    /// Transforms `channels` of `operand` (zero past its last) for
    /// `tiles`, into `blocks`: per point, per tile, `width` channels.
    fn transform_tiles(plan: &GradPlan, operand: Operand<'_>, tiles: Range<usize>, channels: Range<usize>, blocks: &mut [&mut [f32]]) {
        // Every micro-kernel's `NR`, and `MR` but for the narrowest, is a multiple of 8.
        match (plan.size, operand.width.is_multiple_of(LANES)) {
            (TileSize::F4, true) => transform_tiled::<F4, LANES>(plan, operand, tiles, channels, blocks),
            (TileSize::F2, true) => transform_tiled::<F2, LANES>(plan, operand, tiles, channels, blocks),
            (TileSize::F5, true) => transform_tiled::<F5, LANES>(plan, operand, tiles, channels, blocks),
            (TileSize::F4, false) => transform_tiled::<F4, 4>(plan, operand, tiles, channels, blocks),
            (TileSize::F2, false) => transform_tiled::<F2, 4>(plan, operand, tiles, channels, blocks),
            (TileSize::F5, false) => transform_tiled::<F5, 4>(plan, operand, tiles, channels, blocks),
        }
    }
}

/// [`transform_tiles`] with the transforms of `T`, on `L` channels of one
/// tile at a time: each point's `L` values are stored as one run.
#[inline(always)]
fn transform_tiled<T: Tiling, const L: usize>(
    plan: &GradPlan,
    operand: Operand<'_>,
    tiles: Range<usize>,
    channels: Range<usize>,
    blocks: &mut [&mut [f32]],
) {
    let (mut gathered, mut transformed) = ([[0.0f32; L]; MAX_POINTS], [[0.0f32; L]; MAX_POINTS]);
    let (g, width, per_image) = (&plan.geometry, operand.width, plan.tiles.len());
    // Tile by tile, so that each tile's row of `width` values is written
    // whole: row by row, each cache line was written in pieces far apart.
    for t in tiles.clone() {
        let (image, tile) = (t / per_image, plan.tiles[t % per_image]);
        for c0 in channels.clone().step_by(L) {
            let (lane0, valid) = (c0 - channels.start, L.min(operand.channels.saturating_sub(c0)));
            let first = (image * operand.channels + c0) * operand.plane;
            let planes: [usize; L] = std::array::from_fn(|l| first + l * operand.plane);
            match operand.side {
                Side::Deltas => {
                    let window = Window { y: tile.oy as isize, x: tile.ox as isize, side: T::OUT, h: g.oh, w: g.ow };
                    window.gather(g.dilation, operand.data, &planes[..valid], &mut gathered);
                    T::output_grad(&gathered, &mut transformed);
                }
                Side::Patches => {
                    let (y, x) = (tile.oy as isize - g.padding[0] as isize, tile.ox as isize - g.padding[1] as isize);
                    let window = Window { y, x, side: T::IN, h: g.h, w: g.w };
                    window.gather(g.dilation, operand.data, &planes[..valid], &mut gathered);
                    T::input(&gathered, &mut transformed);
                }
            }
            for (block, values) in blocks.iter_mut().zip(&transformed[..T::POINTS]) {
                block[(t - tiles.start) * width + lane0..][..L].copy_from_slice(values);
            }
        }
    }
}

/// A square of `side x side` pixels, `dilation` apart, from `(y, x)` (which
/// may lie outside) in planes of `h x w`.
struct Window {
    y: isize,
    x: isize,
    side: usize,
    h: usize,
    w: usize,
}

impl Window {
    /// Fills `out` (pixel-major, one lane per plane) with the window's
    /// pixels of the planes starting at `planes` in `data`; zero outside
    /// the planes and in the lanes past the planes given.
    #[inline(always)]
    fn gather<const L: usize>(&self, [dy, dx]: [usize; 2], data: &[f32], planes: &[usize], out: &mut [Lanes<L>]) {
        let n = self.side;
        let out = &mut out[..n * n];
        let (span_y, span_x) = (((n - 1) * dy) as isize, ((n - 1) * dx) as isize);
        let inside =
            self.y >= 0 && self.x >= 0 && self.y + span_y < self.h as isize && self.x + span_x < self.w as isize;
        if !inside || planes.len() < L {
            out.iter_mut().for_each(|p| p.fill(0.0));
        }
        for r in 0..n {
            let y = self.y + (r * dy) as isize;
            if !(0..self.h as isize).contains(&y) {
                continue;
            }
            for s in 0..n {
                let x = self.x + (s * dx) as isize;
                if (0..self.w as isize).contains(&x) {
                    let at = y as usize * self.w + x as usize;
                    for (value, &plane) in out[r * n + s].iter_mut().zip(planes) {
                        *value = data[plane + at];
                    }
                }
            }
        }
    }
}

/// Sets (`first`) or adds `M[ξ] += D[ξ] · V[ξ]` over a band of `tiles`
/// tiles for a chunk of `cols` input channels. A task owns a point and a
/// group of `B` panels that fits in L2, and walks the band's depth in
/// steps of `KC`, each row panel's step of `A` multiplying every panel of
/// the group.
fn multiply<K: MicroKernel>(
    plan: &GradPlan,
    tiles: usize,
    cols: usize,
    d: &[f32],
    v: &[f32],
    m: &mut [f32],
    first: bool,
) {
    let panels = cols.div_ceil(K::NR);
    let group = (crate::cache::l2_bytes() * 3 / 4 / (KC * K::NR * size_of::<f32>())).clamp(1, panels);
    let groups = panels.div_ceil(group);
    let m = Disjoint::new(m);
    (0..plan.points * groups).into_par_iter().for_each(|task| {
        let (point, mine) = (task / groups, task % groups);
        let mine = mine * group..((mine + 1) * group).min(panels);
        for k0 in (0..tiles).step_by(KC) {
            let kc = KC.min(tiles - k0);
            for row_panel in 0..plan.rows / K::MR {
                let a = &d[(row_panel * plan.points + point) * plan.point_stride(K::MR) + k0 * K::MR..][..kc * K::MR];
                for panel in mine.clone() {
                    let b = &v[(panel * plan.points + point) * plan.point_stride(K::NR) + k0 * K::NR..][..kc * K::NR];
                    let start = (point * plan.rows + row_panel * K::MR) * plan.chunk + panel * K::NR;
                    let c = m.piece(start, K::MR, K::NR, plan.chunk);
                    let here = K::NR.min(cols - panel * K::NR);
                    // SAFETY: `a` and `b` hold kc steps; the tile of M is this
                    // task's (its point and its panels), checked inside M by
                    // `piece`; the caller chose an ISA the CPU has.
                    unsafe { K::tile(kc, a.as_ptr(), b.as_ptr(), c, plan.chunk, !(first && k0 == 0), here) };
                }
            }
        }
    });
}

/// Writes the chunk's filter gradients, `Gᵀ M G` per output and input
/// channel, into `grad` (`cout x cin x 3 x 3`), one output channel per task.
fn transform_sums(plan: &GradPlan, job: &WeightGradJob<'_>, channels: Range<usize>, m: &[f32], grad: &mut [f32]) {
    grad.par_chunks_mut(job.cin * 9).enumerate().for_each(|(o, filters)| {
        sums_row(plan.isa, plan, o, channels.clone(), m, filters);
    });
}

multiversion! {
    /// [`transform_sums`] for output channel `o`, `LANES` input channels at a time.
    fn sums_row(plan: &GradPlan, o: usize, channels: Range<usize>, m: &[f32], filters: &mut [f32]) {
        match plan.size {
            TileSize::F4 => sums_row_tiled::<F4>(plan, o, channels, m, filters),
            TileSize::F2 => sums_row_tiled::<F2>(plan, o, channels, m, filters),
            TileSize::F5 => sums_row_tiled::<F5>(plan, o, channels, m, filters),
        }
    }
}

/// [`sums_row`] with the transform of `T`.
#[inline(always)]
fn sums_row_tiled<T: Tiling>(plan: &GradPlan, o: usize, channels: Range<usize>, m: &[f32], filters: &mut [f32]) {
    let (mut sums, mut g) = ([[0.0f32; LANES]; MAX_POINTS], [[0.0f32; LANES]; 9]);
    for c0 in (0..channels.len()).step_by(LANES) {
        for (point, lanes) in sums[..T::POINTS].iter_mut().enumerate() {
            *lanes = m[(point * plan.rows + o) * plan.chunk + c0..][..LANES].try_into().expect("LANES values");
        }
        T::weight_grad(&sums, &mut g);
        for l in 0..LANES.min(channels.len() - c0) {
            let filter = &mut filters[(channels.start + c0 + l) * 9..][..9];
            filter.iter_mut().zip(&g).for_each(|(f, tap)| *f = tap[l]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::{WithKernel, with_kernel};

    /// The weight gradient of `job`, with `budgets`, on `isa`'s kernel.
    fn run(isa: Isa, job: &WeightGradJob<'_>, budgets: Budgets) -> Vec<f32> {
        struct Run<'a>(&'a WeightGradJob<'a>, Budgets);
        impl WithKernel for Run<'_> {
            type Output = Vec<f32>;
            fn run<K: MicroKernel>(self) -> Vec<f32> {
                weight_grad_within::<K>(self.0, self.1)
            }
        }
        with_kernel(isa, Run(job, budgets))
    }

    /// Cut into several chunks of input channels and bands of tiles (bands
    /// that split an image's tiles and span two images), the gradient is
    /// the float64 direct sum's, for every tile size's shapes, dilated or
    /// not, on every instruction set.
    #[test]
    fn chunks_and_bands_sum_to_the_direct_gradient() {
        let tiny = Budgets { d: 1, v: 1, m: 1 };
        // 13x11 takes F(4) tiles; 15x15 with dilation 3 takes F(5) (5x5
        // sub-grids); 4x3 unpadded (a 2x1 output) F(2).
        let cases = [
            ((13, 11), 1, 1, TileSize::F4),
            ((15, 15), 3, 3, TileSize::F5),
            ((10, 9), 2, 2, TileSize::F5),
            ((4, 3), 0, 1, TileSize::F2),
        ];
        for ((h, w), padding, dilation, size) in cases {
            let (images, cin, cout) = (3, 53, 13);
            let value = |i: usize, salt: usize| ((i * 7919 + salt * 104_729) % 2001) as f32 / 1000.0 - 1.0;
            let input: Vec<f32> = (0..images * cin * h * w).map(|i| value(i, 1)).collect();
            let (oh, ow) = (h + 2 * padding - 2 * dilation, w + 2 * padding - 2 * dilation);
            let grad_output: Vec<f32> = (0..images * cout * oh * ow).map(|i| value(i, 2)).collect();
            let job = WeightGradJob {
                input: &input,
                grad_output: &grad_output,
                images,
                cin,
                cout,
                input_hw: [h, w],
                output_hw: [oh, ow],
                kernel: [3, 3],
                stride: [1, 1],
                padding: [padding; 2],
                dilation: [dilation; 2],
            };
            let g = ConvGeometry {
                cin,
                h,
                w,
                kh: 3,
                kw: 3,
                stride: [1, 1],
                padding: job.padding,
                dilation: job.dilation,
                oh,
                ow,
            };
            assert_eq!(TileSize::for_weight_grad(&g), size, "{h}x{w} dilation {dilation}");
            let mut want = vec![0.0f64; cout * cin * 9];
            for (n, o, c, tap) in (0..images).flat_map(|n| {
                (0..cout).flat_map(move |o| (0..cin).flat_map(move |c| (0..9).map(move |t| (n, o, c, t))))
            }) {
                for (y, x) in (0..oh).flat_map(|y| (0..ow).map(move |x| (y, x))) {
                    let iy = (y + tap / 3 * dilation).checked_sub(padding).filter(|&iy| iy < h);
                    let ix = (x + tap % 3 * dilation).checked_sub(padding).filter(|&ix| ix < w);
                    if let (Some(iy), Some(ix)) = (iy, ix) {
                        want[(o * cin + c) * 9 + tap] += grad_output[((n * cout + o) * oh + y) * ow + x] as f64
                            * input[((n * cin + c) * h + iy) * w + ix] as f64;
                    }
                }
            }
            let norm = want.iter().map(|v| v * v).sum::<f64>().sqrt();
            for isa in Isa::available() {
                for budgets in [BUDGETS, tiny] {
                    let got = run(isa, &job, budgets);
                    let err = got.iter().zip(&want).map(|(&g, &w)| (g as f64 - w).powi(2)).sum::<f64>().sqrt();
                    assert!(
                        err <= 1e-5 * norm,
                        "{h}x{w} dilation {dilation} on {}: relative error {}",
                        isa.name(),
                        err / norm
                    );
                }
            }
        }
    }
}
