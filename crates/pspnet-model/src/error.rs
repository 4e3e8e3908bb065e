use pspnet_kernels::KernelError;
use pspnet_ppm::PpmError;
use pspnet_resnet::ResNetError;
use pspnet_tensor::TensorError;
use pspnet_weights::WeightsError;

/// Why a PSPNet could not be built or run.
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
    /// A parameter is missing or misshaped, or an input has the wrong shape.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// The checkpoint could not be read or mapped.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// An input image the model cannot take.
    #[error("{0}")]
    Input(String),
}
