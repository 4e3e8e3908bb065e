//! pspnet-rs: PSPNet scene parsing (Zhao et al., CVPR 2017) in Rust, from the
//! convolution kernel up.
//!
//! This facade re-exports the workspace's crates under one name:
//! - [`tensor`]: the NCHW `f32` tensor and its `f16` / `bf16` storage;
//! - [`data`]: dataset layouts, image and label decoding;
//! - [`kernels`]: convolution, pooling, resize and channel reductions;
//! - [`nn`]: the layer protocol and the parameter source builders read;
//! - [`resnet`]: dilated ResNet backbones;
//! - [`ppm`]: the pyramid pooling module;
//! - [`weights`]: checkpoint file formats;
//! - [`model`]: PSPNet itself, checkpoint layouts, inference protocols.
//!
//! On top, the pipeline the `pspnet` tool and the Python package share: the
//! embedded model ([`embedded_model`]), pictures of a segmentation
//! ([`render`]) and scoring on labelled data ([`evaluate`]).

mod embedded;
mod error;
mod evaluation;
pub mod render;

pub use embedded::{EMBEDDED_MODEL_NAME, embedded_model};
pub use error::Error;
pub use evaluation::{Evaluation, evaluate, prediction_path, score, summary};

pub use pspnet_data as data;
pub use pspnet_kernels as kernels;
pub use pspnet_model as model;
pub use pspnet_nn as nn;
pub use pspnet_ppm as ppm;
pub use pspnet_resnet as resnet;
pub use pspnet_tensor as tensor;
pub use pspnet_weights as weights;

/// The README's examples, compiled and run as doctests so they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
