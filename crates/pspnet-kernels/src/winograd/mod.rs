//! Winograd-domain convolution for 3x3, stride-1 layers: F(m x m, 3x3) does
//! (m + 2)² multiplications per m x m output tile where a direct
//! convolution does 9m² (F(4): 36 against 144; F(5): 49 against 225), and
//! 3x3 layers are most of PSPNet's arithmetic. Each layer takes the tile
//! size that does less work on its input (see `TileSize::for_layer`), or
//! F(2) (16 against 36), which rounds least, when asked. A layer's weight
//! gradient runs in the same domain ([`weight_grad`]).
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

mod input;
mod multiply;
mod output;
mod plan;
mod transform;
mod weight_grad;
mod weights;

use std::cell::RefCell;

use self::input::{VOut, transform_input};
use self::multiply::{multiply, multiply_bf16};
use self::output::transform_output;
use self::plan::Plan;
pub(crate) use self::plan::TileSize;
pub(crate) use self::weight_grad::weight_grad;
use self::weights::transform_weights;
use crate::gemm::{ConvJob, MicroKernel};

/// Tiles (or output channels) each transform handles as one vector.
const LANES: usize = 8;
/// The widest `B` panel of any micro-kernel (AVX-512's `NR`).
const MAX_NR: usize = 48;

/// Whether a convolution of this shape can run in the Winograd domain.
pub(crate) fn supports(kernel: [usize; 2], stride: [usize; 2]) -> bool {
    kernel == [3, 3] && stride == [1, 1]
}

thread_local! {
    /// `U`, `V` and `M`, kept between layers so a forward pass allocates them once.
    static WORKSPACE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// `U` and `V` in bf16 pairs, when multiplying in bf16.
    static PAIRS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// Convolves one image (`out` is `rows x oh x ow`) in tiles of `size`, on
/// micro-kernel `K` (which the CPU must support), multiplying bf16
/// operands if `bf16`.
pub(crate) fn convolve<K: MicroKernel>(job: &ConvJob<'_>, size: TileSize, bf16: bool, out: &mut [f32]) {
    let (weights, g, input, epilogue) = (job.weights, job.geometry, job.input, job.epilogue);
    debug_assert!(supports([g.kh, g.kw], g.stride) && weights.mr() == K::MR);
    let plan = Plan::new::<K>(g, size, weights.rows());
    // Taken out of the thread-local (not borrowed), so a nested call on this
    // thread simply allocates its own.
    let mut workspace = WORKSPACE.take();
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
