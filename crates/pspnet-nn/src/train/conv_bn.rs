use std::borrow::Cow;
use std::sync::Arc;

use pspnet_kernels::{Conv2d, ConvSpec, relu_backward, relu_in_place};
use pspnet_tensor::Tensor;

use crate::train::{BnMode, StateVisitor, TrainBatchNorm, TrainConv, Trainable};
use crate::{NnError, ParamSource, conv_bn_width};

/// The unit every part of PSPNet is built of, in training: a bias-free
/// convolution, a batch-norm and (optionally) a ReLU, as
/// [`crate::conv_bn`] builds it for inference.
#[derive(Debug, Clone)]
pub struct TrainConvBn {
    /// The convolution.
    pub conv: TrainConv,
    /// Its batch-norm.
    pub bn: TrainBatchNorm,
    relu: bool,
    /// The ReLU's output of the last forward pass (its backward mask).
    output: Option<Arc<Tensor>>,
}

impl TrainConvBn {
    /// Reads the weight `weight` and the batch-norm under `bn`, as
    /// [`crate::conv_bn`] does (a free width, `None`, is read off the weight).
    pub fn build(
        source: &mut ParamSource,
        weight: &str,
        bn: &str,
        in_channels: usize,
        out_channels: Option<usize>,
        kernel: usize,
        spec: ConvSpec,
    ) -> Result<Self, NnError> {
        let out = conv_bn_width(source, out_channels, weight, bn);
        let conv = TrainConv::build(source, weight, None, [out, in_channels, kernel, kernel], spec)?;
        let bn = TrainBatchNorm::build(source, bn, out)?;
        Ok(TrainConvBn { conv, bn, relu: false, output: None })
    }

    /// The same unit followed by a ReLU (or not).
    pub fn with_relu(self, relu: bool) -> Self {
        TrainConvBn { relu, ..self }
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.conv.out_channels()
    }

    /// The inference layer of the current parameters (batch-norm folded).
    pub fn inference(&self) -> Result<Conv2d, NnError> {
        Ok(self.conv.inference()?.with_batch_norm(&self.bn.inference())?.with_relu(self.relu))
    }

    /// Runs the unit on `x`, keeping what the backward pass needs.
    pub fn forward(&mut self, x: Arc<Tensor>, mode: BnMode) -> Result<Arc<Tensor>, NnError> {
        let y = self.bn.forward(self.conv.forward(x)?, mode)?;
        Ok(self.activate(y))
    }

    /// Adds the parameters' gradients and returns the input's (when
    /// `input_grad`).
    pub fn backward(&mut self, grad_output: Tensor, input_grad: bool) -> Result<Option<Tensor>, NnError> {
        match self.output.take() {
            Some(y) => self.backward_linear(&relu_backward(&y, grad_output)?, input_grad),
            None => self.backward_linear(&grad_output, input_grad),
        }
    }

    /// [`TrainConvBn::backward`] from a gradient the caller keeps (a
    /// residual block's last unit shares it with the shortcut): read in
    /// place when the unit has no ReLU, copied when it has.
    pub fn backward_shared(&mut self, grad_output: &Tensor, input_grad: bool) -> Result<Option<Tensor>, NnError> {
        match self.relu {
            true => self.backward(grad_output.clone(), input_grad),
            false => self.backward_linear(grad_output, input_grad),
        }
    }

    /// The output of the last forward pass, computed again from the
    /// batch-norm's kept input (and kept again as the ReLU's mask).
    fn recompute_output(&mut self) -> Result<Arc<Tensor>, NnError> {
        let y = self.bn.recompute()?;
        Ok(self.activate(y))
    }

    /// The ReLU (when the unit has one) on the batch-norm's output `y`,
    /// keeping its output as the backward pass's mask.
    fn activate(&mut self, mut y: Tensor) -> Arc<Tensor> {
        if !self.relu {
            return Arc::new(y);
        }
        relu_in_place(&mut y);
        let y = Arc::new(y);
        self.output = Some(Arc::clone(&y));
        y
    }

    fn backward_linear(&mut self, grad_output: &Tensor, input_grad: bool) -> Result<Option<Tensor>, NnError> {
        let grad = self.bn.backward(grad_output)?;
        self.conv.backward(&grad, input_grad)
    }
}

/// Runs a chain of units, each feeding only the next (a residual block's
/// body, a deep stem), on `x`. Each inner output is dropped once the next
/// convolution has read it, and [`chain_backward`] recomputes it from its
/// batch-norm's input: the chain keeps one tensor per unit instead of two.
pub fn chain_forward(units: &mut [TrainConvBn], x: Arc<Tensor>, mode: BnMode) -> Result<Arc<Tensor>, NnError> {
    let mut y = x;
    for j in 0..units.len() {
        y = units[j].forward(y, mode)?;
        if j > 0 {
            units[j - 1].output = None;
            units[j].conv.forget_input();
        }
    }
    Ok(y)
}

/// The backward pass of [`chain_forward`], from the gradient of the last
/// unit's output, owned or shared with the caller (a residual block keeps it
/// for its shortcut): adds every parameter's gradient and returns the chain
/// input's (when `input_grad`).
pub fn chain_backward(
    units: &mut [TrainConvBn],
    grad_output: Cow<'_, Tensor>,
    input_grad: bool,
) -> Result<Option<Tensor>, NnError> {
    let Some(last) = units.len().checked_sub(1) else { return Ok(None) };
    restore_input(units, last)?;
    let wanted = input_grad || last > 0;
    let mut grad = match grad_output {
        Cow::Owned(grad) => units[last].backward(grad, wanted)?,
        Cow::Borrowed(grad) => units[last].backward_shared(grad, wanted)?,
    };
    for j in (0..last).rev() {
        restore_input(units, j)?;
        let g = grad.expect("an inner unit returns its input's gradient");
        grad = units[j].backward(g, input_grad || j > 0)?;
    }
    Ok(grad)
}

/// Gives unit `j`'s convolution back the input [`chain_forward`] dropped:
/// unit `j - 1`'s output, recomputed.
fn restore_input(units: &mut [TrainConvBn], j: usize) -> Result<(), NnError> {
    if j > 0 {
        let input = units[j - 1].recompute_output()?;
        units[j].conv.restore_input(input);
    }
    Ok(())
}

impl Trainable for TrainConvBn {
    fn visit_state(&mut self, prefix: &str, visit: &mut StateVisitor) {
        self.conv.visit_state(prefix, visit);
        self.bn.visit_state(prefix, visit);
    }
}
