//! 2-D convolution with a fused epilogue: the layer PSPNet is made of.

use pspnet_tensor::{Shape, Tensor};

use crate::algorithm::{Algorithm, Execution};
use crate::gemm::{self, ConvJob, Epilogue, PackedWeights};
use crate::geometry::{ConvGeometry, output_len};
use crate::{ConvAlgorithm, ConvOptions, Isa, KernelError, Precision, winograd};

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
    /// The algorithm asked for; `execution` is what it comes to.
    algorithm: ConvAlgorithm,
    packed: PackedWeights,
    execution: Execution,
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

    /// Builds a convolution that runs as `options` say, taking the weights by
    /// value: the packed panels reuse their buffer, so a model being loaded
    /// never holds a layer twice.
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
            packed,
            execution: Execution::Direct,
            scale: None,
            shift: None,
            relu: false,
        };
        Ok(conv.with_algorithm(options.algorithm)?.with_precision(options.precision))
    }

    /// Chooses how the sums are computed (by default [`ConvAlgorithm::Auto`]).
    pub fn with_algorithm(self, algorithm: ConvAlgorithm) -> Result<Self, KernelError> {
        if algorithm == ConvAlgorithm::Winograd && !winograd::supports([self.dims[2], self.dims[3]], self.spec.stride) {
            return Err(KernelError::WinogradUnsupported { weight: self.dims, stride: self.spec.stride });
        }
        let precision = self.precision();
        Ok(Conv2d { algorithm, ..self }.with_precision(precision))
    }

    /// Chooses the arithmetic (by default f32).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.set_precision(precision);
        self
    }

    /// [`Conv2d::with_precision`] in place, for a model switching every layer.
    pub fn set_precision(&mut self, precision: Precision) {
        self.execution = Execution::new(self.algorithm, precision, self.dims, self.spec.stride, self.isa, &self.packed);
    }

    /// The arithmetic of this layer.
    pub fn precision(&self) -> Precision {
        self.execution.precision()
    }

    /// Whether this layer runs in the Winograd domain.
    pub fn is_winograd(&self) -> bool {
        matches!(self.execution, Execution::Winograd { .. })
    }

    /// The side `m` of the output tiles of the Winograd transform F(m x m,
    /// 3x3) this layer uses on inputs of this shape (4 or 5, whichever does
    /// less work there; 2 for [`ConvAlgorithm::SmallWinograd`]), or `None`
    /// if it convolves directly.
    pub fn winograd_tile(&self, input: Shape) -> Result<Option<usize>, KernelError> {
        let (geometry, _) = self.geometry(input)?;
        Ok(match Algorithm::choose(&self.execution, &geometry, self.isa) {
            Algorithm::Winograd { size, .. } => Some(size.out()),
            _ => None,
        })
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
        Ok(conv.with_precision(self.precision()))
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
        let algorithm = Algorithm::choose(&self.execution, &geometry, self.isa);
        for n in 0..shape.n() {
            let epilogue = Epilogue {
                scale: self.scale.as_deref(),
                shift: self.shift.as_deref(),
                residual: residual.map(|r| r.image_slice(n)).transpose()?,
                relu: self.relu,
            };
            let job = ConvJob { weights: &self.packed, geometry: &geometry, input: input.image_slice(n)?, epilogue };
            algorithm.run(self.isa, &job, out.image_slice_mut(n)?);
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
        let (spec, lens, kernel) = (self.spec, [input.h(), input.w()], [kh, kw]);
        let len = |axis: usize, name| {
            output_len(
                "convolution",
                name,
                input,
                lens[axis],
                kernel[axis],
                spec.stride[axis],
                spec.padding[axis],
                spec.dilation[axis],
            )
        };
        let (oh, ow) = (len(0, "height")?, len(1, "width")?);
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
