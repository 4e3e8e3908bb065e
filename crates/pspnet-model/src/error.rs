use std::path::PathBuf;

use pspnet_kernels::KernelError;
use pspnet_nn::NnError;
use pspnet_ppm::PpmError;
use pspnet_resnet::ResNetError;
use pspnet_tensor::TensorError;
use pspnet_weights::WeightsError;

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
    /// The architecture a checkpoint describes is not one this crate builds.
    #[error("{}: {reason}", path.display())]
    Spec {
        /// The file.
        path: PathBuf,
        /// What is implausible.
        reason: String,
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

/// The keys a checkpoint gets wrong, all at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayoutProblems {
    /// Keys the architecture needs that the file lacks.
    pub missing: Vec<String>,
    /// Keys in the file that no part of the architecture uses.
    pub unexpected: Vec<String>,
    /// Keys whose shape contradicts the rest of the network.
    pub misshaped: Vec<String>,
}

impl LayoutProblems {
    /// Whether every key fits.
    pub(crate) fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.misshaped.is_empty()
    }
}

impl std::fmt::Display for LayoutProblems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (what, keys) in
            [("missing", &self.missing), ("unexpected", &self.unexpected), ("misshaped", &self.misshaped)]
        {
            if !keys.is_empty() {
                write!(f, "\n  {what} ({}): {}", keys.len(), keys.join(", "))?;
            }
        }
        Ok(())
    }
}
