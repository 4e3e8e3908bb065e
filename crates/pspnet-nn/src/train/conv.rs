use std::sync::Arc;

use pspnet_kernels::{Conv2d, ConvAlgorithm, ConvOptions, ConvSpec, conv2d_input_grad, conv2d_weight_grad};
use pspnet_tensor::{Shape, Tensor};

use crate::train::{Param, State, StateVisitor, Trainable, join};
use crate::{NnError, ParamSource};

/// A convolution in training: its weight (and bias), and the input its
/// last forward pass saw.
#[derive(Debug, Clone)]
pub struct TrainConv {
    /// The OIHW weight.
    pub weight: Param,
    /// The bias, for the classifiers.
    pub bias: Option<Param>,
    /// Their paths under the parent layer's (`conv1.weight`).
    names: (String, Option<String>),
    dims: [usize; 4],
    spec: ConvSpec,
    options: ConvOptions,
    input: Option<Arc<Tensor>>,
}

impl TrainConv {
    /// Reads `weight` of `dims` (and `bias`, when given) from `source`;
    /// [`Trainable::visit_state`] hands them back under the same names.
    pub fn build(
        source: &mut ParamSource,
        weight: &str,
        bias: Option<&str>,
        dims: [usize; 4],
        spec: ConvSpec,
    ) -> Result<Self, NnError> {
        let options = source.options();
        let weight_param = Param::take(source, weight, &dims)?;
        let bias_param = bias.map(|name| Param::take(source, name, &dims[..1])).transpose()?;
        let names = (weight.to_string(), bias.map(str::to_string));
        Ok(TrainConv { weight: weight_param, bias: bias_param, names, dims, spec, options, input: None })
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.dims[0]
    }

    /// The convolution's geometry.
    pub fn spec(&self) -> ConvSpec {
        self.spec
    }

    /// The inference layer of the current weights.
    pub fn inference(&self) -> Result<Conv2d, NnError> {
        let [o, i, h, w] = self.dims;
        let weight = Tensor::from_vec(Shape::new(o, i, h, w)?, self.weight.value.clone())?;
        let conv = Conv2d::with_options(weight, self.spec, self.options)?;
        Ok(match &self.bias {
            Some(bias) => conv.with_bias(&bias.value)?,
            None => conv,
        })
    }

    /// Convolves `x`, keeping it for the backward pass.
    pub fn forward(&mut self, x: Arc<Tensor>) -> Result<Tensor, NnError> {
        let y = self.inference()?.forward(&x)?;
        self.input = Some(x);
        Ok(y)
    }

    /// Drops the input kept for the backward pass; [`TrainConv::restore_input`]
    /// must give it back before [`TrainConv::backward`].
    pub fn forget_input(&mut self) {
        self.input = None;
    }

    /// Gives back the input [`TrainConv::forget_input`] dropped.
    pub fn restore_input(&mut self, x: Arc<Tensor>) {
        self.input = Some(x);
    }

    /// Adds the weight's (and bias's) gradient from the output's gradient,
    /// and returns the input's gradient when `input_grad` (the first layer
    /// of a network needs none).
    ///
    /// Both gradients of a 3x3 run in the Winograd domain whatever
    /// algorithm the forward pass uses: the backward pass is linear, so its
    /// extra rounding flips no ReLU or max-pool decision and stays within
    /// the gradient tolerance, which Winograd in the forward pass does not.
    pub fn backward(&mut self, grad_output: &Tensor, input_grad: bool) -> Result<Option<Tensor>, NnError> {
        let input = self.input.take().ok_or(NnError::NoForward("convolution"))?;
        let [o, i, kh, kw] = self.dims;
        let options = ConvOptions { algorithm: ConvAlgorithm::Auto, ..self.options };
        let (weight_grad, bias_grad) = conv2d_weight_grad(&input, grad_output, self.spec, [kh, kw], options)?;
        self.weight.accumulate(weight_grad.into_vec());
        if let Some(bias) = &mut self.bias {
            bias.accumulate(bias_grad);
        }
        if !input_grad {
            return Ok(None);
        }
        // Lent to the kernel as a tensor and taken back, not copied.
        let weight = Tensor::from_vec(Shape::new(o, i, kh, kw)?, std::mem::take(&mut self.weight.value))?;
        let grad = conv2d_input_grad(grad_output, &weight, self.spec, input.shape(), options);
        self.weight.value = weight.into_vec();
        Ok(Some(grad?))
    }
}

impl Trainable for TrainConv {
    fn visit_state(&mut self, prefix: &str, visit: &mut StateVisitor) {
        visit(&join(prefix, &self.names.0), State::Learned(&mut self.weight));
        if let (Some(bias), Some(name)) = (&mut self.bias, &self.names.1) {
            visit(&join(prefix, name), State::Learned(bias));
        }
    }
}
