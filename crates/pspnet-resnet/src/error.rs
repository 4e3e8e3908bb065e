use pspnet_kernels::KernelError;
use pspnet_nn::NnError;

/// Why a backbone could not be built or run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResNetError {
    /// A configuration value no ResNet has.
    #[error("invalid ResNet configuration: {0}")]
    Config(String),
    /// A kernel refused its input.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// A layer could not be built from its parameters.
    #[error(transparent)]
    Layer(#[from] NnError),
}
