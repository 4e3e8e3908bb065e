//! Convolutions applied one after another: the body of a stem or a block.

use pspnet_kernels::Conv2d;
use pspnet_tensor::{Shape, Tensor};

use crate::ResNetError;

/// Runs `convs` in order on `x` (at least one convolution).
pub(crate) fn forward(convs: &[Conv2d], x: &Tensor) -> Result<Tensor, ResNetError> {
    let (first, rest) = convs.split_first().expect("a sequence has at least one convolution");
    rest.iter().try_fold(first.forward(x)?, |y, conv| Ok(conv.forward(&y)?))
}

/// Floating-point operations of `convs` in order on an input shape, and the
/// output shape.
pub(crate) fn flops(convs: &[Conv2d], input: Shape) -> Result<(u64, Shape), ResNetError> {
    convs.iter().try_fold((0, input), |(total, shape), conv| {
        let (f, s) = conv.flops(shape)?;
        Ok((total + f, s))
    })
}
