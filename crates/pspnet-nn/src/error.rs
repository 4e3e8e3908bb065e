use pspnet_kernels::KernelError;
use pspnet_tensor::TensorError;

/// Why a layer could not be built from its parameters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NnError {
    /// A kernel refused the layer (e.g. a zero stride).
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// A tensor could not be formed.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// A backward pass ran without the forward pass it undoes.
    #[error("the {0}'s backward pass ran without a forward pass")]
    NoForward(&'static str),
    /// A missing or misshaped parameter's expected shape is too large to
    /// stand in for while the rest of the checkpoint is checked.
    #[error("parameter `{name}`: the network would need shape {shape:?}, more than the checkpoint holds")]
    StandIn {
        /// The parameter's path.
        name: String,
        /// The shape the network would need.
        shape: Vec<usize>,
    },
}
