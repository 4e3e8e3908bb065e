use pspnet_kernels::{
    BN_EPS, BatchNorm, BatchStats, batch_norm_frozen_backward, batch_norm_train, batch_norm_train_backward,
    channel_affine,
};
use pspnet_tensor::Tensor;

use crate::train::{Param, State, StateVisitor, Trainable, join};
use crate::{NnError, ParamSource};

/// How batch-norms normalise while training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BnMode {
    /// By the batch's statistics, updating the running ones (PyTorch's
    /// `train()`, the reference recipe).
    #[default]
    Train,
    /// By the running statistics, which stay as they are (`--bn frozen`:
    /// for batches too small to have statistics).
    Frozen,
}

/// PyTorch's `BatchNorm2d` momentum: the weight of a batch in the running
/// statistics.
const MOMENTUM: f32 = 0.1;

/// A batch-norm in training: its learned scale and shift, its running
/// statistics, and what its last forward pass saw.
#[derive(Debug, Clone)]
pub struct TrainBatchNorm {
    /// The learned scale (`weight`).
    pub gamma: Param,
    /// The learned shift (`bias`).
    pub beta: Param,
    /// The running mean.
    pub mean: Vec<f32>,
    /// The running (unbiased) variance.
    pub var: Vec<f32>,
    /// The path under the parent layer's (`bn1`).
    name: String,
    /// The input and, in training mode, the batch statistics of the last
    /// forward pass.
    saved: Option<(Tensor, Option<BatchStats>)>,
}

impl TrainBatchNorm {
    /// Reads `{name}.weight`, `.bias`, `.running_mean`, `.running_var` of
    /// `channels` from `source`.
    pub fn build(source: &mut ParamSource, name: &str, channels: usize) -> Result<Self, NnError> {
        let mut source = source.at(name);
        Ok(TrainBatchNorm {
            gamma: Param::take(&mut source, "weight", &[channels])?,
            beta: Param::take(&mut source, "bias", &[channels])?,
            mean: source.take("running_mean", &[channels])?,
            var: source.take("running_var", &[channels])?,
            name: name.to_string(),
            saved: None,
        })
    }

    /// The statistics as the inference batch-norm folds them.
    pub fn inference(&self) -> BatchNorm {
        BatchNorm {
            gamma: self.gamma.value.clone(),
            beta: self.beta.value.clone(),
            mean: self.mean.clone(),
            var: self.var.clone(),
            eps: BN_EPS,
        }
    }

    /// Normalises `x` as `mode` says, keeping it for the backward pass; in
    /// training mode the running statistics take in the batch's.
    pub fn forward(&mut self, x: Tensor, mode: BnMode) -> Result<Tensor, NnError> {
        let (y, stats) = match mode {
            BnMode::Train => {
                let (y, stats) = batch_norm_train(&x, &self.gamma.value, &self.beta.value, BN_EPS)?;
                stats.update_running(&mut self.mean, &mut self.var, MOMENTUM);
                (y, Some(stats))
            }
            BnMode::Frozen => (self.frozen(&x)?, None),
        };
        self.saved = Some((x, stats));
        Ok(y)
    }

    /// The output of the last forward pass, computed again from what it
    /// kept: the same values, bit for bit.
    pub fn recompute(&self) -> Result<Tensor, NnError> {
        match &self.saved {
            Some((x, Some(stats))) => Ok(stats.normalize(x, &self.gamma.value, &self.beta.value)?),
            Some((x, None)) => self.frozen(x),
            None => Err(NnError::NoForward("batch-norm")),
        }
    }

    /// `x` normalised by the running statistics.
    fn frozen(&self, x: &Tensor) -> Result<Tensor, NnError> {
        let (scale, shift) = self.inference().scale_shift();
        Ok(channel_affine(x, &scale, &shift)?)
    }

    /// Adds the scale's and shift's gradients and returns the input's.
    pub fn backward(&mut self, grad_output: &Tensor) -> Result<Tensor, NnError> {
        let (x, stats) = self.saved.take().ok_or(NnError::NoForward("batch-norm"))?;
        let (dx, dgamma, dbeta) = match stats {
            Some(stats) => batch_norm_train_backward(&x, grad_output, &self.gamma.value, &stats)?,
            None => batch_norm_frozen_backward(&x, grad_output, &self.inference())?,
        };
        self.gamma.accumulate(dgamma);
        self.beta.accumulate(dbeta);
        Ok(dx)
    }
}

impl Trainable for TrainBatchNorm {
    fn visit_state(&mut self, prefix: &str, visit: &mut StateVisitor) {
        let prefix = join(prefix, &self.name);
        visit(&join(&prefix, "weight"), State::Learned(&mut self.gamma));
        visit(&join(&prefix, "bias"), State::Learned(&mut self.beta));
        visit(&join(&prefix, "running_mean"), State::Running(&mut self.mean));
        visit(&join(&prefix, "running_var"), State::Running(&mut self.var));
    }
}
