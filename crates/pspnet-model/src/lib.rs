//! PSPNet (Zhao et al., CVPR 2017): a dilated ResNet, the pyramid pooling
//! module on its last stage, a 3x3 convolution head and a 1x1 classifier,
//! upsampled to the input's resolution. An auxiliary head on stage 3 (used
//! for training with loss weight 0.4) is built too when its weights exist.
//!
//! The crate also knows the published checkpoint layouts (semseg,
//! mmsegmentation, its own safetensors): their key names, what their
//! weights say of the architecture ([`ModelSpec`]), and how a [`Segmenter`]
//! loads one and runs it on RGB images under a test [`Protocol`].

mod caffe;
mod compare;
mod context_conv;
mod error;
mod export;
mod layout;
mod load;
mod matlab;
mod metrics;
mod native;
mod normalize;
mod protocol;
mod pspnet;
mod segmenter;
mod spec;
mod train;

pub use compare::Comparison;
pub use error::{LayoutProblems, ModelError};
pub use export::export_pth;
pub use load::read_checkpoint;
pub use matlab::{MatlabPlan, matlab_plan};
pub use metrics::{ClassScore, ConfusionMatrix, Scores};
pub use native::{FORMAT, FORMAT_KEY, OPTIMIZER_PREFIX, SPEC_KEY, StorageDtype, save_native, save_native_with};
pub use normalize::Normalization;
pub use protocol::{Average, Protocol, ProtocolChoice, Window, WindowMode, predict};
pub use pspnet::{PspNet, PspNetConfig, StageTimes, Trace};
pub use pspnet_kernels::{ConvOptions, Precision};
pub use segmenter::Segmenter;
pub use spec::{Layout, ModelSpec, Overrides};
pub use train::{Losses, PassOptions, TrainPspNet};
