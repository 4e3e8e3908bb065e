//! The numerical kernels of pspnet-rs, written from scratch: no BLAS, no
//! convolution library.
//!
//! - [`Conv2d`]: 2-D convolution on NCHW input with OIHW weights, any kernel
//!   size, stride, zero padding and dilation, with a fused epilogue
//!   (per-channel scale and shift for folded batch-norm, residual add, ReLU).
//!   It is an implicit GEMM: the weights are packed once into register-width
//!   panels, the input is gathered panel by panel into a cache-sized buffer
//!   (never a full im2col matrix), and a register-blocked micro-kernel
//!   multiplies them. Work is split over output tiles with rayon; every
//!   output element is computed by the same sequence of operations whatever
//!   the thread count, so results are bit-identical for any number of threads.
//!   3x3 stride-1 layers (dilated or not) run by default in the Winograd
//!   domain, F(4x4, 3x3) or F(5x5, 3x3) (whichever does less work on the
//!   layer's input), with a quarter to a fifth of the multiplications
//!   ([`ConvAlgorithm`]; [`ConvOptions`] chooses it, the instruction set
//!   and the precision for a new layer, as a value).
//! - [`Isa`]: which micro-kernel runs (AVX-512F, AVX2+FMA, or portable Rust),
//!   detected at run time.
//! - Pooling ([`max_pool2d`], [`avg_pool2d`], [`adaptive_avg_pool2d`],
//!   [`adaptive_max_pool2d`]), [`resize_bilinear`], and the per-pixel channel
//!   reductions [`argmax_channels`] and [`softmax_channels`], each with
//!   PyTorch's exact index arithmetic.
//! - Gradients for training: [`conv2d_input_grad`] and [`conv2d_weight_grad`],
//!   [`batch_norm_train`] with [`batch_norm_train_backward`] (and
//!   [`batch_norm_frozen_backward`] for frozen statistics), Dropout2d
//!   ([`dropout2d_mask`], [`apply_channel_mask`]), and, each
//!   beside its forward pass,
//!   [`max_pool2d_backward`], [`avg_pool2d_backward`], the adaptive poolings',
//!   [`resize_bilinear_backward`], [`relu_backward`], and the loss
//!   [`softmax_cross_entropy`] with its gradient.
//!
//! The crate knows nothing of models: it sees tensors and numbers.

mod adaptive;
mod algorithm;
mod batch_norm;
mod cache;
mod channels;
mod conv;
mod conv_grad;
mod disjoint;
mod dropout;
mod elementwise;
mod error;
mod gemm;
mod gemv;
mod geometry;
mod isa;
mod loss;
mod options;
mod planes;
mod pool;
mod resize;
mod upsampled;
mod winograd;

pub use adaptive::{
    adaptive_avg_pool2d, adaptive_avg_pool2d_backward, adaptive_avg_pool2d_levels, adaptive_max_pool2d,
    adaptive_max_pool2d_backward, adaptive_max_pool2d_levels,
};
pub use algorithm::BF16_WINOGRAD_MIN_CHANNELS;
pub use batch_norm::{
    BN_EPS, BatchNorm, BatchStats, batch_norm_frozen_backward, batch_norm_train, batch_norm_train_backward,
    channel_affine,
};
pub use channels::{argmax_channels, softmax_channels};
pub use conv::{Conv2d, ConvSpec};
pub use conv_grad::{conv2d_input_grad, conv2d_weight_grad};
pub use dropout::{apply_channel_mask, dropout2d_mask, splitmix64};
pub use elementwise::{add_assign, relu_in_place};
pub use error::KernelError;
pub use isa::Isa;
pub use loss::{relu_backward, softmax_cross_entropy};
pub use options::{ConvAlgorithm, ConvOptions, Precision};
pub use pool::{PoolSpec, avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward};
pub use pspnet_tensor::{Shape, Tensor, TensorError, bf16};
pub use resize::{resize_bilinear, resize_bilinear_argmax, resize_bilinear_backward, resize_bilinear_into};
pub use upsampled::UpsampledConv;
