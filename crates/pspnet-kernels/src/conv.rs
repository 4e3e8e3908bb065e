//! 2-D convolution with a fused epilogue: the layer PSPNet is made of.

use pspnet_tensor::{Shape, Tensor};

use crate::gemm::{self, ConvGeometry, Epilogue, Operands, PackedPairs, PackedWeights};
use crate::{Isa, KernelError, winograd};

/// Stride, zero padding and dilation of a convolution, per axis `[y, x]`,
/// with PyTorch's `nn.Conv2d` meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConvSpec {
    /// Step between output pixels, in input pixels.
    pub stride: [usize; 2],
    /// Zeros added on each side of the input.
    pub padding: [usize; 2],
    /// Spacing between kernel taps (1 = dense; PSPNet's dilated stages use 2 and 4).
    pub dilation: [usize; 2],
}

impl Default for ConvSpec {
    fn default() -> Self {
        ConvSpec { stride: [1, 1], padding: [0, 0], dilation: [1, 1] }
    }
}

impl ConvSpec {
    /// Sets the same stride on both axes.
    pub fn stride(self, s: usize) -> Self {
        ConvSpec { stride: [s, s], ..self }
    }

    /// Sets the same padding on both axes.
    pub fn padding(self, p: usize) -> Self {
        ConvSpec { padding: [p, p], ..self }
    }

    /// Sets the same dilation on both axes.
    pub fn dilation(self, d: usize) -> Self {
        ConvSpec { dilation: [d, d], ..self }
    }
}

/// How a [`Conv2d`] computes its sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ConvAlgorithm {
    /// Winograd for 3x3 stride-1 layers (dilated or not), the direct
    /// implicit GEMM for every other shape. In bf16, whose GEMMs cost
    /// half as much while the transforms do not get cheaper, Winograd is
    /// taken from [`BF16_WINOGRAD_MIN_CHANNELS`] input channels on: narrower
    /// 3x3 layers run direct there (5x more exact).
    #[default]
    Auto,
    /// The direct implicit GEMM: each output is a plain sum of
    /// `in x kh x kw` products, the most exact order.
    Direct,
    /// Winograd F(4x4, 3x3) or F(5x5, 3x3), whichever does less work on the
    /// input ([`Conv2d::winograd_tile`]): a quarter or a fifth of the
    /// multiplications, at a rounding error still far below the 1e-5
    /// relative budget of the model tests. Only 3x3 kernels with stride 1.
    Winograd,
}

/// The fewest input channels for which [`ConvAlgorithm::Auto`] picks
/// Winograd in bf16. With the input transform writing bf16 pairs, Winograd
/// beats the direct sum on PSPNet-50's 3x3 layers from the 64-channel stem on
/// (stage 1's 64 -> 64 at 119x119 is the exception, slightly faster direct;
/// docs/performance-history.md has the numbers). Narrower layers keep the
/// direct sum, which is more exact in bf16.
pub const BF16_WINOGRAD_MIN_CHANNELS: usize = 64;

/// The arithmetic of a convolution's multiply-adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// f32 operands and sums.
    #[default]
    F32,
    /// Operands rounded to bfloat16 (8-bit mantissa), products summed in
    /// f32: twice the multiply-adds per instruction where the CPU has
    /// AVX512-BF16 (a portable kernel elsewhere), at about 3 significant
    /// digits per operand. The pyramid bins' tiny 1x1 convolutions stay f32.
    Bf16,
}

impl std::str::FromStr for Precision {
    type Err = KernelError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name.trim().to_ascii_lowercase().as_str() {
            "" | "f32" | "fp32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(KernelError::UnknownPrecision(name.to_string())),
        }
    }
}

impl std::str::FromStr for ConvAlgorithm {
    type Err = KernelError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(ConvAlgorithm::Auto),
            "direct" => Ok(ConvAlgorithm::Direct),
            _ => Err(KernelError::UnknownConvAlgorithm(name.to_string())),
        }
    }
}

/// How new convolutions run, chosen by the caller as a value (the binary
/// reads it from its environment; libraries never do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConvOptions {
    /// The micro-kernels' instruction set; this CPU must support it.
    pub isa: Isa,
    /// How the sums are computed.
    pub algorithm: ConvAlgorithm,
    /// The arithmetic of the multiply-adds.
    pub precision: Precision,
}

impl Default for ConvOptions {
    /// The fastest instruction set this CPU has, [`ConvAlgorithm::Auto`], f32.
    fn default() -> Self {
        ConvOptions { isa: Isa::best(), algorithm: ConvAlgorithm::Auto, precision: Precision::F32 }
    }
}

/// A convolution layer ready to run: weights packed for the chosen
/// instruction set, plus an epilogue computing, per output value,
/// `relu?(conv(x) * scale[c] + shift[c] + residual)`.
///
/// Folded batch-norm is `scale = gamma / sqrt(var + eps)`,
/// `shift = beta - mean * scale`; a plain bias is `shift` alone.
#[derive(Debug, Clone)]
pub struct Conv2d {
    dims: [usize; 4],
    spec: ConvSpec,
    isa: Isa,
    algorithm: ConvAlgorithm,
    /// Whether `algorithm` comes to Winograd for this shape and precision.
    winograd: bool,
    packed: PackedWeights,
    /// The weights in bf16 pairs, for a direct layer in bf16.
    pairs: Option<PackedPairs>,
    precision: Precision,
    scale: Option<Vec<f32>>,
    shift: Option<Vec<f32>>,
    relu: bool,
}

impl Conv2d {
    /// Builds a convolution from OIHW weights (`[out, in, kh, kw]`, as a
    /// [`Tensor`]) with the default [`ConvOptions`].
    pub fn new(weight: &Tensor, spec: ConvSpec) -> Result<Self, KernelError> {
        Conv2d::with_options(weight.clone(), spec, ConvOptions::default())
    }

    /// Builds a convolution pinned to one instruction set, which this CPU
    /// must support.
    pub fn with_isa(weight: &Tensor, spec: ConvSpec, isa: Isa) -> Result<Self, KernelError> {
        Conv2d::with_options(weight.clone(), spec, ConvOptions { isa, ..ConvOptions::default() })
    }

    /// [`Conv2d::new`], taking the weights by value: the packed panels reuse
    /// their buffer, so a model being loaded never holds a layer twice.
    pub fn from_weight(weight: Tensor, spec: ConvSpec) -> Result<Self, KernelError> {
        Conv2d::with_options(weight, spec, ConvOptions::default())
    }

    /// Builds a convolution that runs as `options` say, taking the weights by value.
    pub fn with_options(weight: Tensor, spec: ConvSpec, options: ConvOptions) -> Result<Self, KernelError> {
        let isa = options.isa.check_available()?;
        for (what, value) in [("stride", spec.stride), ("dilation", spec.dilation)] {
            if value.contains(&0) {
                return Err(KernelError::InvalidParameter { what, value });
            }
        }
        let dims = weight.shape().dims();
        let (rows, depth) = (dims[0], dims[1] * dims[2] * dims[3]);
        let packed = PackedWeights::new(weight.into_vec(), rows, depth, gemm::tile_dims(isa).0);
        let conv = Conv2d {
            dims,
            spec,
            isa,
            algorithm: ConvAlgorithm::Auto,
            winograd: false,
            packed,
            pairs: None,
            precision: Precision::F32,
            scale: None,
            shift: None,
            relu: false,
        };
        Ok(conv.with_algorithm(options.algorithm)?.with_precision(options.precision))
    }

    /// Chooses how the sums are computed (by default [`ConvAlgorithm::Auto`]).
    pub fn with_algorithm(self, algorithm: ConvAlgorithm) -> Result<Self, KernelError> {
        if algorithm == ConvAlgorithm::Winograd && !self.winograd_supported() {
            return Err(KernelError::WinogradUnsupported { weight: self.dims, stride: self.spec.stride });
        }
        let precision = self.precision;
        Ok(Conv2d { algorithm, ..self }.with_precision(precision))
    }

    fn winograd_supported(&self) -> bool {
        winograd::supports([self.dims[2], self.dims[3]], self.spec.stride)
    }

    /// Chooses the arithmetic (by default f32).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.set_precision(precision);
        self
    }

    /// [`Conv2d::with_precision`] in place, for a model switching every layer.
    pub fn set_precision(&mut self, precision: Precision) {
        self.winograd = match self.algorithm {
            ConvAlgorithm::Auto => {
                self.winograd_supported() && (precision == Precision::F32 || self.dims[1] >= BF16_WINOGRAD_MIN_CHANNELS)
            }
            ConvAlgorithm::Direct => false,
            ConvAlgorithm::Winograd => true,
        };
        // Direct layers multiply bf16 from paired weights; Winograd layers do not.
        self.pairs = (precision == Precision::Bf16 && !self.winograd).then(|| PackedPairs::new(self.isa, &self.packed));
        self.precision = precision;
    }

    /// The arithmetic of this layer.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Whether this layer runs in the Winograd domain.
    pub fn is_winograd(&self) -> bool {
        self.winograd
    }

    /// The side `m` of the output tiles of the Winograd transform F(m x m,
    /// 3x3) this layer uses on inputs of this shape (4 or 5, whichever does
    /// less work there), or `None` if it convolves directly.
    pub fn winograd_tile(&self, input: Shape) -> Result<Option<usize>, KernelError> {
        let (geometry, _) = self.geometry(input)?;
        Ok(self.winograd.then(|| winograd::tile_side(&geometry, gemm::tile_dims(self.isa).1)))
    }

    /// Adds a per-output-channel bias (replacing any shift set before).
    pub fn with_bias(self, bias: &[f32]) -> Result<Self, KernelError> {
        let shift = Some(self.channel_vector("bias", bias)?);
        Ok(Conv2d { shift, ..self })
    }

    /// Sets the per-output-channel affine map `v * scale + shift`, e.g. a
    /// folded batch-norm (replacing any bias set before).
    pub fn with_scale_shift(self, scale: &[f32], shift: &[f32]) -> Result<Self, KernelError> {
        let scale = Some(self.channel_vector("scale", scale)?);
        let shift = Some(self.channel_vector("shift", shift)?);
        Ok(Conv2d { scale, shift, ..self })
    }

    /// Applies ReLU after the affine map and the residual add.
    pub fn with_relu(self, relu: bool) -> Self {
        Conv2d { relu, ..self }
    }

    /// The same layer on another instruction set (repacking the weights).
    pub fn on_isa(&self, isa: Isa) -> Result<Self, KernelError> {
        let weight = Tensor::from_vec(
            Shape::new(self.dims[0], self.dims[1], self.dims[2], self.dims[3])?,
            self.packed.unpack(),
        )?;
        let conv = Conv2d::with_isa(&weight, self.spec, isa)?;
        let conv = Conv2d {
            algorithm: self.algorithm,
            scale: self.scale.clone(),
            shift: self.shift.clone(),
            relu: self.relu,
            ..conv
        };
        Ok(conv.with_precision(self.precision))
    }

    /// The instruction set this layer runs on.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// The OIHW weight dimensions.
    pub fn weight_dims(&self) -> [usize; 4] {
        self.dims
    }

    /// The stride, padding and dilation.
    pub fn spec(&self) -> ConvSpec {
        self.spec
    }

    /// Multiply-adds per output pixel per output channel (`in * kh * kw`).
    pub fn depth(&self) -> usize {
        self.dims[1] * self.dims[2] * self.dims[3]
    }

    /// The output shape for an input shape, or why that input is refused.
    pub fn output_shape(&self, input: Shape) -> Result<Shape, KernelError> {
        Ok(self.geometry(input)?.1)
    }

    /// Weights plus per-channel values (bias or folded batch-norm), as the
    /// checkpoint counts them (a folded batch-norm's 4 statistics).
    pub fn parameters(&self) -> usize {
        let [o, i, h, w] = self.dims;
        o * i * h * w
            + match (&self.scale, &self.shift) {
                (Some(_), _) => 4 * o,
                (None, Some(_)) => o,
                (None, None) => 0,
            }
    }

    /// Floating-point operations (2 per multiply-add) to convolve an input
    /// of this shape, and the output shape.
    pub fn flops(&self, input: Shape) -> Result<(u64, Shape), KernelError> {
        let out = self.output_shape(input)?;
        let macs =
            (out.len() as u64).checked_mul(self.depth() as u64).ok_or(KernelError::Overflow { what: "FLOP count" })?;
        Ok((2 * macs, out))
    }

    /// Convolves a batch.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor, KernelError> {
        let mut out = Tensor::zeros(self.output_shape(input.shape())?);
        self.forward_into(input, None, &mut out)?;
        Ok(out)
    }

    /// Convolves a batch and adds `residual` (same shape as the output)
    /// before the ReLU: a ResNet block's last convolution.
    pub fn forward_with_residual(&self, input: &Tensor, residual: &Tensor) -> Result<Tensor, KernelError> {
        let mut out = Tensor::zeros(self.output_shape(input.shape())?);
        self.forward_into(input, Some(residual), &mut out)?;
        Ok(out)
    }

    /// Convolves into a caller-provided tensor of the output shape, so a
    /// model can reuse its activation buffers.
    pub fn forward_into(&self, input: &Tensor, residual: Option<&Tensor>, out: &mut Tensor) -> Result<(), KernelError> {
        let (geometry, shape) = self.geometry(input.shape())?;
        for (what, got) in [("output", Some(out.shape())), ("residual", residual.map(Tensor::shape))] {
            match got {
                Some(got) if got != shape => {
                    return Err(KernelError::ShapeMismatch { what, expected: shape, got });
                }
                _ => {}
            }
        }
        let operands = match self.precision {
            Precision::F32 => Operands::F32,
            Precision::Bf16 => Operands::Bf16(self.pairs.as_ref()),
        };
        for n in 0..shape.n() {
            let epilogue = Epilogue {
                scale: self.scale.as_deref(),
                shift: self.shift.as_deref(),
                residual: residual.map(|r| r.image_slice(n)).transpose()?,
                relu: self.relu,
            };
            let image = input.image_slice(n)?;
            gemm::conv_image(
                self.isa,
                self.winograd,
                operands,
                &self.packed,
                &geometry,
                image,
                epilogue,
                out.image_slice_mut(n)?,
            );
        }
        Ok(())
    }

    fn channel_vector(&self, what: &'static str, values: &[f32]) -> Result<Vec<f32>, KernelError> {
        if values.len() != self.dims[0] {
            return Err(KernelError::ChannelVectorLength { what, expected: self.dims[0], got: values.len() });
        }
        Ok(values.to_vec())
    }

    fn geometry(&self, input: Shape) -> Result<(ConvGeometry, Shape), KernelError> {
        let [cout, cin, kh, kw] = self.dims;
        if input.c() != cin {
            return Err(KernelError::ChannelMismatch { input, weight: self.dims, expected: cin, got: input.c() });
        }
        let oh = output_len(
            "convolution",
            "height",
            input,
            input.h(),
            kh,
            self.spec.stride[0],
            self.spec.padding[0],
            self.spec.dilation[0],
        )?;
        let ow = output_len(
            "convolution",
            "width",
            input,
            input.w(),
            kw,
            self.spec.stride[1],
            self.spec.padding[1],
            self.spec.dilation[1],
        )?;
        let shape = Shape::new(input.n(), cout, oh, ow)?;
        let geometry = ConvGeometry {
            cin,
            h: input.h(),
            w: input.w(),
            kh,
            kw,
            stride: self.spec.stride,
            padding: self.spec.padding,
            dilation: self.spec.dilation,
            oh,
            ow,
        };
        Ok((geometry, shape))
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
