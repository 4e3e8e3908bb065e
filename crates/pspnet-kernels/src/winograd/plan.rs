//! How a Winograd layer is cut: its tile size, its tiles (on the sub-grids
//! of a dilated layer), and the bands of tiles and chunks of input channels
//! its workspace holds at once.

use super::transform::{F2, F4, F5, Tiling};
use super::{LANES, MAX_NR};
use crate::Isa;
use crate::gemm::MicroKernel;
use crate::geometry::ConvGeometry;

/// Budget in floats of `U`, the transformed weights of one chunk (32 MiB).
const U_BUDGET: usize = 8 << 20;
/// Budget in floats of `V`, the transformed input tiles of one chunk (16 MiB).
const V_BUDGET: usize = 4 << 20;
/// Budget in floats of `M`, the products of one band of tiles (24 MiB).
const M_BUDGET: usize = 6 << 20;
/// The tile size of a layer's Winograd transform, F(m x m, 3x3): the
/// [`Tiling`] its transforms are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TileSize {
    /// Only on request ([`crate::ConvAlgorithm::SmallWinograd`]).
    F2,
    F4,
    F5,
}

impl TileSize {
    /// The sizes chosen by work.
    const ALL: [TileSize; 2] = [TileSize::F4, TileSize::F5];

    /// Side of an output tile.
    pub(crate) fn out(self) -> usize {
        match self {
            TileSize::F4 => F4::OUT,
            TileSize::F2 => F2::OUT,
            TileSize::F5 => F5::OUT,
        }
    }

    /// Points of the transform domain: one GEMM each.
    pub(super) fn points(self) -> usize {
        (self.out() + 2).pow(2)
    }

    /// The tile size that does the least work on a layer: the GEMMs' work
    /// is `points x tiles`, counting the zero-padded columns of the last
    /// panel of `nr` tiles, plus writing and reading `U` once, which costs
    /// about as much as multiplying it with one more panel (calibrated on
    /// PSPNet-50's 3x3 layers at 473x473, where F(5) gains most on the
    /// dilated layers: their 15x15 or 30x30 sub-grids take whole 5x5 tiles,
    /// but 4x4 tiles padded to 16 or 32).
    pub(crate) fn for_layer(g: &ConvGeometry, nr: usize) -> TileSize {
        let work = |size: TileSize| size.points() * (tile_count(g, size.out()).next_multiple_of(nr) + nr);
        TileSize::ALL.into_iter().min_by_key(|&size| work(size)).expect("two sizes")
    }

    /// The tile size that does the least work on a layer's weight gradient,
    /// `points x tiles` (there the tiles are the GEMMs' depth, never
    /// padded, so F(2) wins on the smallest maps); the smaller, which
    /// rounds less, on a tie.
    pub(super) fn for_weight_grad(g: &ConvGeometry) -> TileSize {
        let sizes = [TileSize::F2, TileSize::F4, TileSize::F5];
        sizes.into_iter().min_by_key(|&size| size.points() * tile_count(g, size.out())).expect("three sizes")
    }
}

/// How many tiles of side `out` cover the output.
fn tile_count(g: &ConvGeometry, out: usize) -> usize {
    subgrids(g, out).map(|(_, rows, cols)| rows * cols).sum()
}

/// One output tile: its first output pixel; its pixels, and its input
/// patch's, are `dilation` apart on each axis.
#[derive(Clone, Copy)]
pub(super) struct Tile {
    pub(super) oy: usize,
    pub(super) ox: usize,
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
pub(super) fn tiles(g: &ConvGeometry, out: usize) -> Vec<Tile> {
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

/// How one layer is cut: bands of tiles (one `M` each), chunks of input
/// channels (one `U` and `V` each), and within them tasks (a panel of tiles
/// x a range of output-channel panels).
pub(super) struct Plan {
    pub(super) size: TileSize,
    pub(super) points: usize,
    pub(super) tiles: Vec<Tile>,
    pub(super) row_panels: usize,
    pub(super) isa: Isa,
    pub(super) mr: usize,
    pub(super) nr: usize,
    /// Tiles per band, a whole number of panels.
    pub(super) band: usize,
    /// Input channels per chunk.
    pub(super) chunk: usize,
}

impl Plan {
    pub(super) fn new<K: MicroKernel>(g: &ConvGeometry, size: TileSize, rows: usize) -> Plan {
        debug_assert!(K::NR % LANES == 0 && K::MR % 4 == 0, "transforms work on whole lane groups");
        debug_assert!(K::NR <= MAX_NR, "the input transform assembles whole B panel rows");
        let (points, tiles) = (size.points(), tiles(g, size.out()));
        let row_panels = rows.div_ceil(K::MR);
        let padded_rows = row_panels * K::MR;
        let max_band = (M_BUDGET / (points * padded_rows * K::NR)).max(1) * K::NR;
        let band = tiles.len().div_ceil(tiles.len().div_ceil(max_band)).next_multiple_of(K::NR);
        let max_chunk = (U_BUDGET / (points * padded_rows)).min(V_BUDGET / (points * band)).clamp(1, g.cin);
        let chunk = g.cin.div_ceil(g.cin.div_ceil(max_chunk));
        Plan { size, points, tiles, row_panels, isa: K::ISA, mr: K::MR, nr: K::NR, band, chunk }
    }

    pub(super) fn u_len(&self) -> usize {
        self.row_panels * self.points * self.chunk * self.mr
    }

    pub(super) fn v_len(&self) -> usize {
        self.points * self.chunk * self.band
    }

    pub(super) fn m_len(&self) -> usize {
        self.points * self.row_panels * self.mr * self.band
    }
}
