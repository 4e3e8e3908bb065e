use std::path::PathBuf;

use pspnet_kernels::KernelError;
use pspnet_nn::NnError;
use pspnet_ppm::PpmError;
use pspnet_resnet::ResNetError;
use pspnet_tensor::TensorError;
use pspnet_weights::WeightsError;

use crate::LayoutProblems;

/// Why a PSPNet could not be loaded, built or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The backbone failed.
    #[error("backbone: {0}")]
    Backbone(#[from] ResNetError),
    /// The pyramid pooling module failed.
    #[error("pyramid pooling: {0}")]
    Ppm(#[from] PpmError),
    /// A head layer failed.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// A head layer could not be built from its parameters.
    #[error(transparent)]
    Layer(#[from] NnError),
    /// A tensor or an input has the wrong shape.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// The checkpoint file could not be read.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// The keys match no known checkpoint layout.
    #[error("{}: not a PSPNet checkpoint of a known layout (semseg, mmsegmentation, pspnet-rs); first keys: {sample:?}", path.display())]
    UnknownLayout {
        /// The file.
        path: PathBuf,
        /// A few of its keys.
        sample: Vec<String>,
    },
    /// Keys are missing, unexpected or misshaped for the architecture the
    /// file describes: all of them, by name.
    #[error("{}: the {layout} layout does not fit:{problems}", path.display())]
    Layout {
        /// The file.
        path: PathBuf,
        /// The detected layout.
        layout: &'static str,
        /// The offending keys.
        problems: LayoutProblems,
    },
    /// Canonical parameters could not be assembled.
    #[error("{}: {source}", path.display())]
    Params {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: TensorError,
    },
    /// A native file's metadata is unreadable.
    #[error("{}: metadata `{key}`: {reason}", path.display())]
    BadMetadata {
        /// The file.
        path: PathBuf,
        /// The metadata key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An input image the model cannot take.
    #[error("{0}")]
    Input(String),
}
