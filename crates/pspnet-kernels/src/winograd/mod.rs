//! Winograd-domain convolution for 3x3, stride-1 layers: F(m x m, 3x3) does
//! (m + 2)² multiplications per m x m output tile where a direct
//! convolution does 9m² (F(4): 36 against 144; F(5): 49 against 225), and
//! 3x3 layers are most of PSPNet's arithmetic. Each layer takes the tile
//! size that does less work on its input (see `TileSize::for_layer`).
//!
//! A dilated 3x3 convolution (PSPNet's stages 3 and 4) is a plain 3x3
//! convolution on each of the `d x d` interleaved sub-grids of its input, so
//! its tiles are taken on those sub-grids: a tile's (m + 2)² input patch
//! and m x m output pixels are `d` apart.
//!
//! After transforming, the convolution is (m + 2)² independent GEMMs, one
//! per transform-domain point `ξ`: `M[ξ] (out x tiles) = U[ξ] (out x in) ·
//! V[ξ] (in x tiles)`. They run on the same register-blocked micro-kernels as
//! the direct convolution. Input channels are taken in chunks, so no layer
//! ever holds its whole transformed filter bank (a 4096 -> 512 layer's would
//! be 302 MB in F(4)); per chunk:
//!
//! 1. `U` (the chunk's transformed weights) is computed from the packed weight
//!    panels, straight into micro-kernel `A`-panel order;
//! 2. `V` (the chunk's transformed input tiles) likewise, in `B`-panel order;
//! 3. every task (a panel of tiles x a range of output-channel panels) adds
//!    `U[ξ] · V[ξ]` to its rectangle of `M`, reducing the whole chunk inside
//!    the micro-kernel's registers.
//!
//! After the last chunk, the output transform writes the tiles and the
//! epilogue finishes each channel. `U`, `V` and `M` live in one buffer reused
//! from layer to layer; a layer too large for their budgets is split into
//! bands of tiles. When multiplying in bf16, both transforms write their
//! results straight as bf16 pairs: `U` and `V` never exist in f32 whole.

mod transform;

use std::cell::RefCell;

use rayon::prelude::*;

use self::transform::{F4, F5, Lanes, MAX_POINTS, Tiling};
use crate::Isa;
use crate::gemm::{ConvGeometry, Epilogue, MicroKernel, Operands, PackedWeights, bf16};
use crate::isa::multiversion;

/// Budget in floats of `U`, the transformed weights of one chunk (32 MiB).
const U_BUDGET: usize = 8 << 20;
/// Budget in floats of `V`, the transformed input tiles of one chunk (16 MiB).
const V_BUDGET: usize = 4 << 20;
/// Budget in floats of `M`, the products of one band of tiles (24 MiB).
const M_BUDGET: usize = 6 << 20;
/// Budget in bytes of the `B` panels one task multiplies per point: three
/// quarters of a 1 MB L2. The larger the group, the fewer tasks share a
/// point's `A` panels, and the fewer times each is read from memory: for
/// the head's 3x3 (4096 -> 512), 768 KiB lets one task cover all of a
/// chunk's tiles.
const B_GROUP_BYTES: usize = 768 * 1024;
/// Tiles (or output channels) each transform handles as one vector.
const LANES: usize = 8;
/// The widest `B` panel of any micro-kernel (AVX-512's `NR`).
const MAX_NR: usize = 48;

/// Whether a convolution of this shape can run in the Winograd domain.
pub(crate) fn supports(kernel: [usize; 2], stride: [usize; 2]) -> bool {
    kernel == [3, 3] && stride == [1, 1]
}

/// The tile size of a layer's Winograd transform, F(m x m, 3x3): the
/// [`Tiling`] its transforms are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TileSize {
    F4,
    F5,
}

impl TileSize {
    const ALL: [TileSize; 2] = [TileSize::F4, TileSize::F5];

    /// Side of an output tile.
    fn out(self) -> usize {
        match self {
            TileSize::F4 => F4::OUT,
            TileSize::F5 => F5::OUT,
        }
    }

    /// Points of the transform domain: one GEMM each.
    fn points(self) -> usize {
        (self.out() + 2).pow(2)
    }

    /// The tile size that does the least work on a layer: the GEMMs' work
    /// is `points x tiles`, counting the zero-padded columns of the last
    /// panel of `nr` tiles, plus writing and reading `U` once, which costs
    /// about as much as multiplying it with one more panel (calibrated on
    /// PSPNet-50's 3x3 layers at 473x473, where F(5) gains most on the
    /// dilated layers: their 15x15 or 30x30 sub-grids take whole 5x5 tiles,
    /// but 4x4 tiles padded to 16 or 32).
    fn for_layer(g: &ConvGeometry, nr: usize) -> TileSize {
        let work = |size: TileSize| {
            let tiles: usize = subgrids(g, size.out()).map(|(_, rows, cols)| rows * cols).sum();
            size.points() * (tiles.next_multiple_of(nr) + nr)
        };
        TileSize::ALL.into_iter().min_by_key(|&size| work(size)).expect("two sizes")
    }
}

/// The output tile side `m` of the F(m x m, 3x3) transform a Winograd layer
/// of this geometry uses with micro-kernels `nr` columns wide.
pub(crate) fn tile_side(g: &ConvGeometry, nr: usize) -> usize {
    TileSize::for_layer(g, nr).out()
}

/// One output tile: its first output pixel; its pixels, and its input
/// patch's, are `dilation` apart on each axis.
#[derive(Clone, Copy)]
struct Tile {
    oy: usize,
    ox: usize,
}

/// The output's `d x d` sub-grids (one when not dilated): each one's first
/// output pixel, and its rows and columns of tiles of side `out`.
fn subgrids(g: &ConvGeometry, out: usize) -> impl Iterator<Item = (Tile, usize, usize)> + '_ {
    let [dy, dx] = g.dilation;
    (0..dy.min(g.oh)).flat_map(move |a| {
        (0..dx.min(g.ow)).map(move |b| {
            let (rows, cols) = ((g.oh - a).div_ceil(dy).div_ceil(out), (g.ow - b).div_ceil(dx).div_ceil(out));
            (Tile { oy: a, ox: b }, rows, cols)
        })
    })
}

/// The tiles of side `out` covering the output, sub-grid by sub-grid.
fn tiles(g: &ConvGeometry, out: usize) -> Vec<Tile> {
    let [dy, dx] = g.dilation;
    let mut tiles = Vec::new();
    for (first, rows, cols) in subgrids(g, out) {
        for ty in 0..rows {
            for tx in 0..cols {
                tiles.push(Tile { oy: first.oy + dy * out * ty, ox: first.ox + dx * out * tx });
            }
        }
    }
    tiles
}

thread_local! {
    /// `U`, `V` and `M`, kept between layers so a forward pass allocates them once.
    static WORKSPACE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// `U` and `V` in bf16 pairs, when multiplying in bf16.
    static PAIRS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    /// One panel of `U` in f32 on its way to bf16 pairs, per worker thread.
    static U_PANEL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// How one layer is cut: bands of tiles (one `M` each), chunks of input
/// channels (one `U` and `V` each), and within them tasks (a panel of tiles
/// x a range of output-channel panels).
struct Plan {
    size: TileSize,
    points: usize,
    tiles: Vec<Tile>,
    row_panels: usize,
    isa: Isa,
    mr: usize,
    nr: usize,
    /// Tiles per band, a whole number of panels.
    band: usize,
    /// Input channels per chunk.
    chunk: usize,
}

impl Plan {
    fn new<K: MicroKernel>(g: &ConvGeometry, rows: usize) -> Plan {
        debug_assert!(K::NR % LANES == 0 && K::MR % 4 == 0, "transforms work on whole lane groups");
        debug_assert!(K::NR <= MAX_NR, "the input transform assembles whole B panel rows");
        let size = TileSize::for_layer(g, K::NR);
        let (points, tiles) = (size.points(), tiles(g, size.out()));
        let row_panels = rows.div_ceil(K::MR);
        let padded_rows = row_panels * K::MR;
        let max_band = (M_BUDGET / (points * padded_rows * K::NR)).max(1) * K::NR;
        let band = tiles.len().div_ceil(tiles.len().div_ceil(max_band)).next_multiple_of(K::NR);
        let max_chunk = (U_BUDGET / (points * padded_rows)).min(V_BUDGET / (points * band)).clamp(1, g.cin);
        let chunk = g.cin.div_ceil(g.cin.div_ceil(max_chunk));
        Plan { size, points, tiles, row_panels, isa: K::ISA, mr: K::MR, nr: K::NR, band, chunk }
    }

    fn u_len(&self) -> usize {
        self.row_panels * self.points * self.chunk * self.mr
    }

    fn v_len(&self) -> usize {
        self.points * self.chunk * self.band
    }

    fn m_len(&self) -> usize {
        self.points * self.row_panels * self.mr * self.band
    }
}

/// Convolves one image (`input` is `cin x h x w`, `out` is `rows x oh x ow`)
/// with weights packed for `K`, which the CPU must support.
pub(crate) fn conv_image<K: MicroKernel>(
    operands: Operands<'_>,
    weights: &PackedWeights,
    g: &ConvGeometry,
    input: &[f32],
    epilogue: Epilogue<'_>,
    out: &mut [f32],
) {
    debug_assert!(supports([g.kh, g.kw], g.stride) && weights.mr() == K::MR);
    let plan = Plan::new::<K>(g, weights.rows());
    // Taken out of the thread-local (not borrowed), so a nested call on this
    // thread simply allocates its own.
    let mut workspace = WORKSPACE.take();
    let bf16 = matches!(operands, Operands::Bf16(_));
    // In bf16, `U` only ever exists in pairs: each panel is transformed into
    // a scratch of its own (see `transform_weights`).
    let u_len = if bf16 { 0 } else { plan.u_len() };
    // Likewise `V`, which the input transform then writes in pairs.
    let v_len = if bf16 { 0 } else { plan.v_len() };
    workspace.resize(u_len + v_len + plan.m_len(), 0.0);
    let (u, rest) = workspace.split_at_mut(u_len);
    let (v, m) = rest.split_at_mut(v_len);
    let mut pairs = if bf16 { PAIRS.take() } else { Vec::new() };
    let u_pairs_len = plan.row_panels * plan.points * plan.chunk.div_ceil(2) * K::MR;
    pairs.resize(if bf16 { u_pairs_len + plan.points * plan.chunk.div_ceil(2) * plan.band } else { 0 }, 0);
    let (u_pairs, v_pairs) = pairs.split_at_mut(if bf16 { u_pairs_len } else { 0 });
    let chunks: Vec<_> = (0..g.cin).step_by(plan.chunk).map(|c0| c0..(c0 + plan.chunk).min(g.cin)).collect();
    let bands = plan.tiles.len().div_ceil(plan.band);
    for (b, band) in plan.tiles.chunks(plan.band).enumerate() {
        for (i, channels) in chunks.iter().enumerate() {
            // One chunk: its `U` serves every band.
            if chunks.len() > 1 || b == 0 {
                let u_pairs = bf16.then_some(&mut *u_pairs);
                transform_weights(&plan, weights, channels.clone(), u, u_pairs);
            }
            let kc = channels.len();
            if bf16 {
                transform_input(&plan, g, input, band, channels.clone(), VOut::Pairs(v_pairs));
                multiply_bf16::<K>(&plan, band.len(), kc, u_pairs, v_pairs, m, i == 0);
            } else {
                transform_input(&plan, g, input, band, channels.clone(), VOut::F32(v));
                multiply::<K>(&plan, band.len(), kc, u, v, m, i == 0);
            }
        }
        // The last band completes every channel: the epilogue follows its tiles.
        transform_output(&plan, g, band, m, out, (b + 1 == bands).then_some(epilogue));
    }
    WORKSPACE.set(workspace);
    if bf16 {
        PAIRS.set(pairs);
    }
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
fn transform_weights(
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
            (TileSize::F5, 8) => weight_panel_lanes::<F5, 8>(taps, chunk, u),
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

/// A raw view of a buffer that parallel tasks write in disjoint pieces.
struct Shared<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: built from a `&mut [T]` that outlives the parallel loop using it,
// and each task writes only its own pieces (see the callers).
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Shared<T> {
    fn new(buffer: &mut [T]) -> Self {
        Shared { ptr: buffer.as_mut_ptr(), len: buffer.len() }
    }

    /// Where a piece of `rows` rows of `cols` values, `row_stride` apart, begins.
    fn piece(&self, start: usize, rows: usize, cols: usize, row_stride: usize) -> *mut T {
        assert!(rows > 0 && start + (rows - 1) * row_stride + cols <= self.len, "piece outside the buffer");
        self.ptr.wrapping_add(start)
    }

    /// The `len` values from `start`.
    ///
    /// # Safety
    /// No other live reference may overlap them.
    #[allow(clippy::mut_from_ref)]
    unsafe fn run_mut(&self, start: usize, len: usize) -> &mut [T] {
        // SAFETY: `piece` checked the bounds; exclusive (caller); the buffer
        // outlives `self`.
        unsafe { std::slice::from_raw_parts_mut(self.piece(start, 1, len, 0), len) }
    }
}

/// Where the input transform writes `V`: in f32, or in bf16 pairs of
/// consecutive channels (so `V` never exists in f32 when multiplying in bf16).
enum VOut<'a> {
    F32(&'a mut [f32]),
    Pairs(&'a mut [u32]),
}

/// `V` for one band and chunk: per tile panel, per point, per channel (or
/// pair of channels), the panel's `NR` transformed tiles (a micro-kernel
/// `B` panel; zero past the band's last tile). Tasks are (tile panel,
/// slice of channels).
fn transform_input(
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
        VOut::F32(v) => Target::F32(Shared::new(&mut v[..panels * plan.points * kc * nr])),
        VOut::Pairs(v) => Target::Pairs(Shared::new(&mut v[..panels * plan.points * kc.div_ceil(2) * nr])),
    };
    (0..panels * slices).into_par_iter().for_each(|task| {
        let (panel, slice) = (task / slices, task % slices);
        let tiles = &band[panel * nr..((panel + 1) * nr).min(band.len())];
        let mine = slice * per_slice..((slice + 1) * per_slice).min(kc);
        input_panel(plan.isa, plan.size, g, input, tiles, channels.start, mine, kc, nr, panel, &v);
    });
}

/// [`VOut`] as the tasks of [`transform_input`] share it.
enum Target {
    F32(Shared<f32>),
    Pairs(Shared<u32>),
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
        v: &Target,
    ) {
        let panel = PanelInput { g, input, tiles, first_channel, kc, nr, panel };
        match size {
            TileSize::F4 => panel.transform::<F4>(mine, v),
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
    fn transform<T: Tiling>(&self, mine: std::ops::Range<usize>, v: &Target) {
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

/// Sets (`first`) or accumulates `M += U · V` over one chunk of `kc`
/// channels for a band of `tiles` tiles. As in the direct GEMM, each `A`
/// panel (a point's `U` for `MR` output channels) stays in L1 while the
/// `B` panels of a group of tile panels stream past it from L2.
fn multiply<K: MicroKernel>(plan: &Plan, tiles: usize, kc: usize, u: &[f32], v: &[f32], m: &mut [f32], first: bool) {
    multiply_with::<K>(plan, tiles, kc, m, |row_panel, panel, point, c, rs, cols| {
        let a = &u[(row_panel * plan.points + point) * plan.chunk * K::MR..][..kc * K::MR];
        let b = &v[(panel * plan.points + point) * kc * K::NR..][..kc * K::NR];
        // SAFETY: `a` and `b` hold kc steps; `multiply_with` hands out an
        // exclusive tile inside M; the caller checked the ISA.
        unsafe { K::tile(kc, a.as_ptr(), b.as_ptr(), c, rs, !first, cols) };
    });
}

/// [`multiply`] on `U` and `V` in bf16 pairs.
fn multiply_bf16<K: MicroKernel>(
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
    let group = (B_GROUP_BYTES / (kc * K::NR * size_of::<f32>())).clamp(1, tile_panels);
    let groups = tile_panels.div_ceil(group);
    let threads = rayon::current_num_threads().max(1);
    let row_chunks = (4 * threads).div_ceil(groups).clamp(1, plan.row_panels);
    let per_chunk = plan.row_panels.div_ceil(row_chunks);
    let m = Shared::new(m);
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
fn transform_output(
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
