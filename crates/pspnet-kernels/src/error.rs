use pspnet_tensor::{Shape, TensorError};

/// Everything a kernel can refuse, with the shapes and values involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// The input's channel count differs from what the weights expect.
    #[error("input {input} has {got} channels, but the convolution's weights {weight:?} (OIHW) expect {expected}")]
    ChannelMismatch {
        /// The input shape.
        input: Shape,
        /// The OIHW weight dimensions.
        weight: [usize; 4],
        /// Channels the weights expect.
        expected: usize,
        /// Channels the input has.
        got: usize,
    },
    /// A window (kernel x dilation) is larger than the padded input, so the
    /// output would be empty.
    #[error(
        "{what} window of {window} pixels (kernel {kernel}, dilation {dilation}) does not fit the {axis} axis of input {input} padded by {padding}"
    )]
    WindowLargerThanInput {
        /// `"convolution"` or `"pooling"`.
        what: &'static str,
        /// `"height"` or `"width"`.
        axis: &'static str,
        /// The input shape.
        input: Shape,
        /// Kernel size along the axis.
        kernel: usize,
        /// Dilation along the axis.
        dilation: usize,
        /// Padding on each side along the axis.
        padding: usize,
        /// The effective window, `dilation * (kernel - 1) + 1`.
        window: usize,
    },
    /// A parameter that must be positive (stride, dilation, kernel size,
    /// output size) was zero, or a pooling padding exceeded half the kernel.
    #[error("invalid {what}: {value:?}")]
    InvalidParameter {
        /// Which parameter.
        what: &'static str,
        /// Its value.
        value: [usize; 2],
    },
    /// A per-channel vector (bias, scale, shift) has the wrong length.
    #[error("{what} has {got} values, but the convolution has {expected} output channels")]
    ChannelVectorLength {
        /// `"bias"`, `"scale"` or `"shift"`.
        what: &'static str,
        /// The output channel count.
        expected: usize,
        /// The vector's length.
        got: usize,
    },
    /// A tensor that must match another's shape does not.
    #[error("{what} has shape {got}, expected {expected}")]
    ShapeMismatch {
        /// Which tensor (e.g. `"residual"`, `"output"`).
        what: &'static str,
        /// The required shape.
        expected: Shape,
        /// The shape given.
        got: Shape,
    },
    /// Index arithmetic would overflow `usize`.
    #[error("{what} overflows: the sizes involved are too large")]
    Overflow {
        /// What was being computed.
        what: &'static str,
    },
    /// Winograd convolution was requested for a layer it cannot compute.
    #[error(
        "Winograd convolution needs a 3x3 kernel with stride 1, not weights {weight:?} (OIHW) with stride {stride:?}"
    )]
    WinogradUnsupported {
        /// The OIHW weight dimensions.
        weight: [usize; 4],
        /// The stride.
        stride: [usize; 2],
    },
    /// An instruction set was requested that this CPU lacks.
    #[error("instruction set {isa} is not available on this CPU (available: {available})")]
    IsaUnavailable {
        /// The set's name.
        isa: &'static str,
        /// The names of those this CPU has.
        available: String,
    },
    /// A dropout probability outside `[0, 1)`.
    #[error("dropout probability {0} is not in [0, 1)")]
    InvalidProbability(String),
    /// A label names no class.
    #[error("label {label} is not a class (0..{classes}) nor the ignore index")]
    LabelOutOfRange {
        /// The label.
        label: u16,
        /// How many classes the scores have.
        classes: usize,
    },
    /// The labels do not cover the scores' pixels one to one.
    #[error("{got} labels for {expected} pixels")]
    LabelCount {
        /// Pixels of the scores.
        expected: usize,
        /// Labels given.
        got: usize,
    },
    /// A precision name is unknown.
    #[error("precision {0:?} is not one of f32, bf16")]
    UnknownPrecision(String),
    /// An algorithm name is unknown.
    #[error("convolution algorithm {0:?} is not one of auto, direct")]
    UnknownConvAlgorithm(String),
    /// An instruction set name is unknown.
    #[error("instruction set {0:?} is not one of portable, avx2, avx512")]
    UnknownIsa(String),
    /// A shape could not be built.
    #[error(transparent)]
    Tensor(#[from] TensorError),
}
