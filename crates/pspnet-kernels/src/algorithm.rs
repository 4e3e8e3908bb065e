//! How a convolution computes its sums, decided here and nowhere else:
//! what a layer is set up for ([`Execution`], fixed by its algorithm and
//! precision), and what one image of it runs ([`Algorithm`], which also
//! depends on the image's size).

use crate::gemm::{self, ConvJob, MicroKernel, Operands, PackedPairs, PackedWeights, WithKernel};
use crate::geometry::ConvGeometry;
use crate::winograd::{self, TileSize};
use crate::{ConvAlgorithm, Isa, Precision, gemv};

/// The fewest input channels for which [`ConvAlgorithm::Auto`] picks
/// Winograd in bf16. With the input transform writing bf16 pairs, Winograd
/// beats the direct sum on PSPNet-50's 3x3 layers from the 64-channel stem on
/// (stage 1's 64 -> 64 at 119x119 is the exception, slightly faster direct;
/// docs/performance-history.md has the numbers). Narrower layers keep the
/// direct sum, which is more exact in bf16.
pub const BF16_WINOGRAD_MIN_CHANNELS: usize = 64;

/// How a layer multiplies: each variant holds what it needs, so no
/// combination of algorithm, precision and packed weights can contradict
/// another.
#[derive(Debug, Clone)]
pub(crate) enum Execution {
    /// Direct sums of f32 operands.
    Direct,
    /// Direct sums of bf16 operands, with the weights in bf16 pairs.
    DirectBf16(PackedPairs),
    /// In the Winograd domain, with the transforms' results in this
    /// precision, in tiles of this size (or of the size that does the
    /// least work on each input).
    Winograd { precision: Precision, tile: Option<TileSize> },
}

impl Execution {
    /// What a layer of `dims` (`[out, in, kh, kw]`) with `stride` runs for
    /// the requested algorithm and precision (`Winograd` only where the
    /// shape allows it: see [`winograd::supports`]).
    pub(crate) fn new(
        algorithm: ConvAlgorithm,
        precision: Precision,
        dims: [usize; 4],
        stride: [usize; 2],
        isa: Isa,
        weights: &PackedWeights,
    ) -> Execution {
        let winograd = winograd::supports([dims[2], dims[3]], stride)
            && match algorithm {
                ConvAlgorithm::Auto => precision == Precision::F32 || dims[1] >= BF16_WINOGRAD_MIN_CHANNELS,
                ConvAlgorithm::Direct => false,
                ConvAlgorithm::Winograd | ConvAlgorithm::SmallWinograd => true,
            };
        let tile = (algorithm == ConvAlgorithm::SmallWinograd).then_some(TileSize::F2);
        match (winograd, precision) {
            (true, precision) => Execution::Winograd { precision, tile },
            (false, Precision::F32) => Execution::Direct,
            (false, Precision::Bf16) => Execution::DirectBf16(PackedPairs::new(isa, weights)),
        }
    }

    /// The arithmetic of the multiply-adds.
    pub(crate) fn precision(&self) -> Precision {
        match self {
            Execution::Direct => Precision::F32,
            Execution::DirectBf16(_) => Precision::Bf16,
            Execution::Winograd { precision, .. } => *precision,
        }
    }
}

/// What one image's convolution runs.
#[derive(Clone, Copy)]
pub(crate) enum Algorithm<'a> {
    /// A 1x1 over a handful of pixels (the pyramid's bins): matrix-vector
    /// products, in f32 whatever the layer's precision, since an `MR x NR`
    /// register tile would be mostly padding.
    Pointwise,
    /// The blocked implicit GEMM.
    Direct(Operands<'a>),
    /// The Winograd domain, in tiles of this size.
    Winograd {
        /// F(2x2, 3x3), F(4x4, 3x3) or F(5x5, 3x3).
        size: TileSize,
        /// Whether the transforms' results are multiplied in bf16.
        bf16: bool,
    },
}

impl<'a> Algorithm<'a> {
    /// The algorithm for one image of `geometry` of a layer set up for
    /// `execution`, on micro-kernels of `isa`.
    pub(crate) fn choose(execution: &'a Execution, geometry: &ConvGeometry, isa: Isa) -> Algorithm<'a> {
        let nr = gemm::tile_dims(isa).1;
        match execution {
            Execution::Winograd { precision, tile } => Algorithm::Winograd {
                size: tile.unwrap_or_else(|| TileSize::for_layer(geometry, nr)),
                bf16: *precision == Precision::Bf16,
            },
            _ if geometry.is_pointwise() && geometry.pixels() <= gemv::MAX_PIXELS.min(nr / 3) => Algorithm::Pointwise,
            Execution::DirectBf16(pairs) => Algorithm::Direct(Operands::Bf16(pairs)),
            Execution::Direct => Algorithm::Direct(Operands::F32),
        }
    }

    /// Convolves one image into `out` on `isa`'s micro-kernels.
    pub(crate) fn run(self, isa: Isa, job: &ConvJob<'_>, out: &mut [f32]) {
        /// The chosen algorithm, bound to its operands, waiting for its kernel.
        struct Run<'j, 'a> {
            algorithm: Algorithm<'a>,
            job: &'j ConvJob<'j>,
            out: &'j mut [f32],
        }
        impl WithKernel for Run<'_, '_> {
            type Output = ();
            fn run<K: MicroKernel>(self) {
                match self.algorithm {
                    Algorithm::Direct(operands) => gemm::convolve::<K>(self.job, operands, self.out),
                    Algorithm::Winograd { size, bf16 } => winograd::convolve::<K>(self.job, size, bf16, self.out),
                    Algorithm::Pointwise => unreachable!("matrix-vector products need no micro-kernel"),
                }
            }
        }
        match self {
            Algorithm::Pointwise => gemv::convolve(isa, job, out),
            algorithm => gemm::with_kernel(isa, Run { algorithm, job, out }),
        }
    }
}
