//! Channel-plane parallelism shared by the spatial operators (pooling,
//! resize) and their gradients: each output plane depends on its input
//! plane alone.

use pspnet_tensor::{Shape, Tensor};
use rayon::prelude::*;

use std::ops::Range;

use crate::KernelError;

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

/// The input gradient of a per-plane operator whose input has shape `input`
/// and output shape `out`: every plane of it built by `f(grad_output_plane,
/// input_plane, grad_input_plane)` in parallel, `input_plane` taken from
/// `values` when the gradient needs the input's values (a maximum's).
pub(crate) fn backward_planes(
    input: Shape,
    out: Shape,
    grad_output: &Tensor,
    values: Option<&Tensor>,
    f: impl Fn(&[f32], Option<&[f32]>, &mut [f32]) + Sync,
) -> Result<Tensor, KernelError> {
    if grad_output.shape() != out {
        return Err(KernelError::ShapeMismatch { what: "output gradient", expected: out, got: grad_output.shape() });
    }
    let mut grad = Tensor::zeros(input);
    let (in_len, out_len) = (input.plane_len(), out.plane_len());
    grad.as_mut_slice().par_chunks_mut(in_len).enumerate().for_each(|(p, g)| {
        let values = values.map(|v| &v.as_slice()[p * in_len..][..in_len]);
        f(&grad_output.as_slice()[p * out_len..][..out_len], values, g)
    });
    Ok(grad)
}

/// The index in `plane` (rows `w` wide) of the first maximum of the window
/// `ys` x `xs` in row-major order, a NaN winning over numbers: where
/// PyTorch's max pooling kernels send the window's gradient.
pub(crate) fn first_maximum(plane: &[f32], w: usize, ys: Range<usize>, xs: Range<usize>) -> usize {
    let mut best = (ys.start * w + xs.start, f32::NEG_INFINITY);
    for i in ys.flat_map(|y| xs.clone().map(move |x| y * w + x)) {
        if plane[i] > best.1 || plane[i].is_nan() {
            best = (i, plane[i]);
        }
    }
    best.0
}
