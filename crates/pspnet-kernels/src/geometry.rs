//! The problem every convolution algorithm is handed: one image's
//! convolution, its sizes validated once by [`crate::Conv2d`].

use pspnet_tensor::Shape;

use crate::KernelError;

/// The shape of one image's convolution, validated by [`crate::Conv2d`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConvGeometry {
    pub(crate) cin: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) stride: [usize; 2],
    pub(crate) padding: [usize; 2],
    pub(crate) dilation: [usize; 2],
    pub(crate) oh: usize,
    pub(crate) ow: usize,
}

impl ConvGeometry {
    /// `N` of the GEMM: output pixels.
    pub(crate) fn pixels(&self) -> usize {
        self.oh * self.ow
    }

    /// `K` of the GEMM: input channels x kernel taps.
    pub(crate) fn depth(&self) -> usize {
        self.cin * self.kh * self.kw
    }

    /// A 1x1, stride 1, unpadded convolution reads each output pixel's own
    /// input pixel: its `B` matrix is the input itself.
    pub(crate) fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == [1, 1] && self.padding == [0, 0]
    }
}

/// PyTorch's output length `floor((len + 2p - d(k-1) - 1) / s) + 1`, refusing
/// a window larger than the padded input and any overflow.
#[allow(clippy::too_many_arguments)]
pub(crate) fn output_len(
    what: &'static str,
    axis: &'static str,
    input: Shape,
    len: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Result<usize, KernelError> {
    let overflow = KernelError::Overflow { what: "convolution window" };
    let window = dilation.checked_mul(kernel - 1).and_then(|v| v.checked_add(1)).ok_or(overflow.clone())?;
    // Bounding the padded length keeps every pixel coordinate the packer
    // computes (at most `padded`) representable as an `isize`.
    let padded = padding
        .checked_mul(2)
        .and_then(|p| p.checked_add(len))
        .filter(|&p| p <= isize::MAX as usize / 2)
        .ok_or(overflow)?;
    if padded < window {
        return Err(KernelError::WindowLargerThanInput { what, axis, input, kernel, dilation, padding, window });
    }
    Ok((padded - window) / stride + 1)
}
