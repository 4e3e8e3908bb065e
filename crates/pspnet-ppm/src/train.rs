//! The pyramid pooling module in training, on any backbone's features:
//! the forward pass of [`crate::PyramidPooling`] with batch-norms unfolded,
//! and its backward pass from the concatenation's gradient to the
//! features' (the identity part plus every level's way back through its
//! upsampling, reduction and pooling).

use std::sync::Arc;

use pspnet_kernels::{
    ConvSpec, adaptive_avg_pool2d, adaptive_avg_pool2d_backward, adaptive_max_pool2d, adaptive_max_pool2d_backward,
    add_assign, resize_bilinear, resize_bilinear_backward,
};
use pspnet_nn::ParamSource;
use pspnet_nn::train::{BnMode, StateVisitor, TrainConvBn, Trainable, join};
use pspnet_tensor::Tensor;

use crate::{Pooling, PpmError, PyramidPoolingConfig};

/// A pyramid pooling module in training.
#[derive(Debug, Clone)]
pub struct TrainPyramidPooling {
    config: PyramidPoolingConfig,
    /// One 1x1 conv + batch-norm + ReLU per bin, or none (the ablation
    /// without dimension reduction).
    reductions: Option<Vec<TrainConvBn>>,
    /// The features of the last forward pass.
    input: Option<Arc<Tensor>>,
}

impl TrainPyramidPooling {
    /// Reads the reductions from `{i}.conv.weight` and `{i}.bn.*` under
    /// `source`, as [`crate::PyramidPooling::build`] does, or none when
    /// `config.reduction` is false.
    pub fn build(config: PyramidPoolingConfig, source: &mut ParamSource, in_channels: usize) -> Result<Self, PpmError> {
        if config.bins.is_empty() || config.bins.contains(&0) {
            return Err(PpmError::Config(format!("bins must be positive, got {:?}", config.bins)));
        }
        let reductions = config
            .reduction
            .then(|| {
                (0..config.bins.len())
                    .map(|i| {
                        let unit = TrainConvBn::build(
                            &mut source.at(i),
                            "conv.weight",
                            "bn",
                            in_channels,
                            None,
                            1,
                            ConvSpec::default(),
                        )?;
                        Ok(unit.with_relu(true))
                    })
                    .collect::<Result<Vec<_>, PpmError>>()
            })
            .transpose()?;
        Ok(TrainPyramidPooling { config, reductions, input: None })
    }

    /// The configuration.
    pub fn config(&self) -> &PyramidPoolingConfig {
        &self.config
    }

    /// Channels out for `in_channels` channels in.
    pub fn out_channels(&self, in_channels: usize) -> usize {
        in_channels
            + match &self.reductions {
                Some(units) => units.iter().map(TrainConvBn::out_channels).sum(),
                None => in_channels * self.config.bins.len(),
            }
    }

    /// `[x, up(reduce(pool_b(x))) for b in bins]`, keeping what the
    /// backward pass needs.
    pub fn forward(&mut self, x: Arc<Tensor>, mode: BnMode) -> Result<Tensor, PpmError> {
        let (h, w) = (x.shape().h(), x.shape().w());
        let mut parts = vec![Arc::clone(&x)];
        for (i, &bin) in self.config.bins.iter().enumerate() {
            let pooled = match self.config.pooling {
                Pooling::Average => adaptive_avg_pool2d(&x, [bin, bin])?,
                Pooling::Max => adaptive_max_pool2d(&x, [bin, bin])?,
            };
            let level = match &mut self.reductions {
                Some(units) => units[i].forward(Arc::new(pooled), mode)?,
                None => Arc::new(pooled),
            };
            parts.push(Arc::new(resize_bilinear(&level, [h, w], self.config.align_corners)?));
        }
        self.input = Some(x);
        let parts: Vec<&Tensor> = parts.iter().map(|p| p.as_ref()).collect();
        Ok(Tensor::concat_channels(&parts)?)
    }

    /// Adds the reductions' gradients and returns the features' gradient.
    pub fn backward(&mut self, grad_output: &Tensor) -> Result<Tensor, PpmError> {
        let x = self.input.take().ok_or(pspnet_nn::NnError::NoForward("pyramid pooling"))?;
        let channels = x.shape().c();
        let mut grad = grad_output.read_channels(0, channels)?;
        let mut channel0 = channels;
        for (i, &bin) in self.config.bins.iter().enumerate() {
            let width = self.reductions.as_ref().map_or(channels, |units| units[i].out_channels());
            let level_grad = grad_output.read_channels(channel0, width)?;
            channel0 += width;
            let at_bins = level_grad.shape().with_hw(bin, bin)?;
            let mut g = resize_bilinear_backward(&level_grad, at_bins, self.config.align_corners)?;
            if let Some(units) = &mut self.reductions {
                g = units[i].backward(g, true)?.expect("asked for the input's gradient");
            }
            let pooled_grad = match self.config.pooling {
                Pooling::Average => adaptive_avg_pool2d_backward(&g, x.shape())?,
                Pooling::Max => adaptive_max_pool2d_backward(&x, &g)?,
            };
            add_assign(&mut grad, &pooled_grad)?;
        }
        Ok(grad)
    }
}

impl Trainable for TrainPyramidPooling {
    fn visit_state(&mut self, prefix: &str, visit: &mut StateVisitor) {
        if let Some(units) = &mut self.reductions {
            for (i, unit) in units.iter_mut().enumerate() {
                unit.visit_state(&join(prefix, &i.to_string()), visit);
            }
        }
    }
}
