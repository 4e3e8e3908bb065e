//! PSPNet (Zhao et al., CVPR 2017): a dilated ResNet, the pyramid pooling
//! module on its last stage, a 3x3 convolution head and a 1x1 classifier,
//! upsampled to the input's resolution. An auxiliary head on stage 3 (used
//! for training with loss weight 0.4) is built too when its weights exist.

mod bottleneck;
mod compare;
mod error;
mod load;
mod metrics;
mod normalize;
mod protocol;
mod pspnet;

pub use compare::Comparison;
pub use error::ModelError;
pub use load::LoadedModel;
pub use metrics::{ClassScore, ConfusionMatrix, Scores};
pub use normalize::Normalization;
pub use protocol::{Average, Protocol, Window, predict};
pub use pspnet::{PspNet, PspNetConfig, StageTimes, Trace};
pub use pspnet_kernels::Precision;
pub use pspnet_weights::{Layout, ModelSpec, Overrides};
