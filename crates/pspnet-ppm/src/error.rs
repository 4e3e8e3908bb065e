use pspnet_kernels::KernelError;
use pspnet_nn::NnError;
use pspnet_tensor::TensorError;

/// Why a pyramid pooling module could not be built or run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PpmError {
    /// The configuration is unusable.
    #[error("invalid pyramid pooling configuration: {0}")]
    Config(String),
    /// A parameter is missing or misshaped.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// A kernel refused its input.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// A layer could not be built from its parameters.
    #[error(transparent)]
    Layer(#[from] NnError),
}
