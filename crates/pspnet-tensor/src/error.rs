/// Everything that can go wrong when building or indexing a tensor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TensorError {
    /// A dimension was zero: every tensor holds at least one element.
    #[error("tensor dimension {axis} of [{n}, {c}, {h}, {w}] is zero", n = dims[0], c = dims[1], h = dims[2], w = dims[3])]
    ZeroDimension {
        /// Name of the zero axis (`"N"`, `"C"`, `"H"` or `"W"`).
        axis: &'static str,
        /// The requested dimensions.
        dims: [usize; 4],
    },
    /// The element count (or its size in bytes) does not fit in memory.
    #[error("tensor shape [{n}, {c}, {h}, {w}] has too many elements to address", n = dims[0], c = dims[1], h = dims[2], w = dims[3])]
    TooLarge {
        /// The requested dimensions.
        dims: [usize; 4],
    },
    /// A buffer's length does not match the shape it is meant to fill.
    #[error("a tensor of shape {shape:?} needs {expected} elements, got {actual}")]
    LengthMismatch {
        /// The shape asked for, `[n, c, h, w]`.
        shape: [usize; 4],
        /// Its element count.
        expected: usize,
        /// The buffer's length.
        actual: usize,
    },
    /// An image or channel index is past the end of its axis.
    #[error("{axis} index {index} is out of range for a tensor of shape {shape:?}")]
    IndexOutOfRange {
        /// `"image"` or `"channel"`.
        axis: &'static str,
        /// The index asked for.
        index: usize,
        /// The tensor's shape, `[n, c, h, w]`.
        shape: [usize; 4],
    },
    /// A named parameter is absent.
    #[error("parameter `{name}` is missing")]
    MissingParam {
        /// The parameter's name.
        name: String,
    },
    /// A named parameter has the wrong shape.
    #[error("parameter `{name}` has shape {got:?}, expected {expected}")]
    ParamShape {
        /// The parameter's name.
        name: String,
        /// What was expected, in words.
        expected: String,
        /// The shape it has.
        got: Vec<usize>,
    },
    /// A tensor written into a channel range does not fit there.
    #[error("cannot write {part:?} into channels {channel0}.. of {target:?}")]
    ChannelRange {
        /// The shape of the tensor written into.
        target: [usize; 4],
        /// The first channel written.
        channel0: usize,
        /// The shape of the tensor written.
        part: [usize; 4],
    },
    /// Tensors to concatenate differ in batch or spatial size.
    #[error("cannot concatenate {other:?} onto {first:?}: batch and spatial sizes differ")]
    ConcatMismatch {
        /// The first tensor's shape.
        first: [usize; 4],
        /// The mismatching tensor's shape.
        other: [usize; 4],
    },
}
