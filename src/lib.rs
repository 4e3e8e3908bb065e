//! pspnet-rs: PSPNet scene parsing (Zhao et al., CVPR 2017) in Rust, from the
//! convolution kernel up.
//!
//! This facade re-exports the workspace's crates under one name:
//! - [`tensor`]: the NCHW `f32` tensor and its `f16` / `bf16` storage;
//! - [`kernels`]: convolution, pooling, resize and channel reductions.

pub use pspnet_kernels as kernels;
pub use pspnet_tensor as tensor;

/// The README's examples, compiled and run as doctests so they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
