//! Channel-plane parallelism shared by the spatial operators (pooling,
//! resize): each output plane depends on its input plane alone.

use pspnet_tensor::{Shape, Tensor};
use rayon::prelude::*;

/// Builds a tensor of shape `out` (same `n` and `c` as `input`) by running
/// `f(input_plane, output_plane)` on every channel of every image in parallel.
pub(crate) fn map_planes(input: &Tensor, out: Shape, f: impl Fn(&[f32], &mut [f32]) + Sync) -> Tensor {
    debug_assert_eq!((input.shape().n(), input.shape().c()), (out.n(), out.c()));
    let mut output = Tensor::zeros(out);
    let in_len = input.shape().plane_len();
    output
        .as_mut_slice()
        .par_chunks_mut(out.plane_len())
        .zip(input.as_slice().par_chunks(in_len))
        .for_each(|(dst, src)| f(src, dst));
    output
}
