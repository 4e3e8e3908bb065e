//! The tensor every pspnet-rs crate speaks: an owned, contiguous NCHW `f32`
//! array (batch, channels, height, width) on top of [`ndarray`], plus compact
//! `f16` / `bf16` storage for weights kept in memory or on disk.
//!
//! Shapes are checked when a tensor is built, so code further down (the
//! convolution kernels, the model) can rely on four non-zero dimensions whose
//! element count fits in memory. Every fallible call returns a [`TensorError`]
//! naming the offending shape; none of the public API panics on bad input.

mod error;
mod half_tensor;
mod huge_pages;
mod params;
mod shape;
mod tensor;

pub use error::TensorError;
pub use half_tensor::{HalfFloat, HalfTensor};
pub use params::{Param, Params};
pub use shape::Shape;
pub use tensor::Tensor;

/// The storage types of half-precision tensors, re-exported so that users
/// need not depend on `half` themselves.
pub use half::{bf16, f16};
