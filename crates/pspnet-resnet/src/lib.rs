//! Dilated ResNet backbones, as PSPNet uses them (He et al. 2016; Yu &
//! Koltun's dilation for dense prediction).
//!
//! A [`ResNet`] is a stem, then four stages of residual blocks
//! ([`BlockKind::Basic`] or [`BlockKind::Bottleneck`]). For scene parsing the
//! last stages trade stride for dilation, so stage 4 keeps 1/8 of the input
//! resolution ([`ResNetConfig::output_stride`]) while seeing as far as the
//! classification network did. [`ResNet::forward`] returns every stage's
//! output, so a head can take stage 4 and an auxiliary head stage 3.
//!
//! Batch-norm is folded into each convolution when the network is built;
//! inference code has no normalisation layer at all. Builders read their
//! parameters from a [`pspnet_nn::ParamSource`], and every part is a
//! [`pspnet_nn::Layer`].

mod block;
mod config;
mod error;
mod resnet;
mod stem;
mod train;

pub use block::Block;
pub use config::{BlockKind, DilationRule, ResNetConfig, StemKind, StridePlacement};
pub use error::ResNetError;
pub use resnet::{Features, ResNet};
pub use stem::Stem;
pub use train::TrainResNet;
