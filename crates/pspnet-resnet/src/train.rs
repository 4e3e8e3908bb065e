//! The backbone in training: the same stem, blocks and parameter names as
//! [`crate::ResNet`], with batch-norms unfolded and every activation the
//! backward pass needs kept, or recomputed where that is cheap (the ReLU
//! outputs inside the stem and each block's body).

use std::borrow::Cow;
use std::sync::Arc;

use pspnet_kernels::{
    PoolSpec, add_assign, avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward, relu_backward,
    relu_in_place,
};
use pspnet_nn::ParamSource;
use pspnet_nn::train::{BnMode, StateVisitor, TrainConvBn, Trainable, chain_backward, chain_forward, join};
use pspnet_tensor::{Shape, Tensor};

use crate::block::BlockGeometry;
use crate::{ResNetConfig, ResNetError, stem};

/// A ResNet in training.
#[derive(Debug, Clone)]
pub struct TrainResNet {
    stem: TrainStem,
    stages: Vec<Vec<TrainBlock>>,
}

#[derive(Debug, Clone)]
struct TrainStem {
    convs: Vec<TrainConvBn>,
    pool: PoolSpec,
    pool_input: Option<Arc<Tensor>>,
}

#[derive(Debug, Clone)]
struct TrainBlock {
    convs: Vec<TrainConvBn>,
    downsample: Option<TrainDownsample>,
    /// The block's output (after the residual addition's ReLU).
    output: Option<Arc<Tensor>>,
}

#[derive(Debug, Clone)]
struct TrainDownsample {
    pool: Option<PoolSpec>,
    conv: TrainConvBn,
    input_shape: Option<Shape>,
}

impl TrainResNet {
    /// Builds the backbone from the parameters [`crate::ResNet::build`]
    /// reads, by the same names.
    pub fn build(config: &ResNetConfig, source: &mut ParamSource) -> Result<Self, ResNetError> {
        if config.layers.contains(&0) {
            return Err(ResNetError::Config(format!("every stage needs a block, got {:?}", config.layers)));
        }
        let (kernel, specs) = stem::convs(config.stem);
        let mut channels = 3;
        let mut convs = Vec::with_capacity(specs.len());
        let mut stem_source = source.at("stem");
        for (i, spec) in specs.into_iter().enumerate() {
            let unit = TrainConvBn::build(&mut stem_source.at(i), "conv.weight", "bn", channels, None, kernel, spec)?;
            channels = unit.out_channels();
            convs.push(unit.with_relu(true));
        }
        let stem = TrainStem { convs, pool: stem::pool(config.pool_ceil), pool_input: None };
        let mut stages = Vec::with_capacity(4);
        for (s, (&geometry, blocks)) in config.stage_geometry()?.iter().zip(config.layers).enumerate() {
            let mut stage = source.at(format!("layer{}", s + 1));
            let mut built = Vec::with_capacity(blocks);
            for b in 0..blocks {
                let block = TrainBlock::build(&mut stage.at(b), channels, BlockGeometry::of(config, geometry, b))?;
                channels = block.out_channels();
                built.push(block);
            }
            stages.push(built);
        }
        Ok(TrainResNet { stem, stages })
    }

    /// Output channels of stages 1 to 4.
    pub fn out_channels(&self) -> [usize; 4] {
        [0, 1, 2, 3].map(|s| self.stages[s].last().map_or(0, TrainBlock::out_channels))
    }

    /// Runs the backbone on a normalised batch and returns the four stages'
    /// outputs, keeping what the backward pass needs.
    pub fn forward(&mut self, x: Arc<Tensor>, mode: BnMode) -> Result<Vec<Arc<Tensor>>, ResNetError> {
        let y = chain_forward(&mut self.stem.convs, x, mode)?;
        let pooled = Arc::new(max_pool2d(&y, &self.stem.pool)?);
        self.stem.pool_input = Some(y);
        let mut y = pooled;
        let mut outputs = Vec::with_capacity(4);
        for stage in &mut self.stages {
            for block in stage.iter_mut() {
                y = block.forward(y, mode)?;
            }
            outputs.push(Arc::clone(&y));
        }
        Ok(outputs)
    }

    /// Adds every parameter's gradient, from the gradients of the stages'
    /// outputs (`None`: the stage's output reached the loss only through
    /// the next stage). The image's own gradient is not computed.
    pub fn backward(&mut self, mut grads: Vec<Option<Tensor>>) -> Result<(), ResNetError> {
        let mut grad: Option<Tensor> = None;
        for (stage, outside) in self.stages.iter_mut().zip(grads.iter_mut()).rev() {
            grad = match (grad, outside.take()) {
                (Some(mut g), Some(o)) => {
                    add_assign(&mut g, &o)?;
                    Some(g)
                }
                (g, o) => g.or(o),
            };
            let Some(mut g) = grad.take() else { continue };
            for block in stage.iter_mut().rev() {
                g = block.backward(g)?;
            }
            grad = Some(g);
        }
        let Some(grad) = grad else { return Ok(()) };
        let input = self.stem.pool_input.take().ok_or(pspnet_nn::NnError::NoForward("stem"))?;
        let grad = max_pool2d_backward(&input, &grad, &self.stem.pool)?;
        drop(input);
        chain_backward(&mut self.stem.convs, Cow::Owned(grad), false)?;
        Ok(())
    }
}

impl TrainBlock {
    fn build(source: &mut ParamSource, in_channels: usize, g: BlockGeometry) -> Result<Self, ResNetError> {
        let plan = g.plan(source, in_channels);
        let out_channels = plan.last().map_or(0, |c| c.out_channels);
        let last = plan.len() - 1;
        let mut convs = Vec::with_capacity(plan.len());
        for (j, c) in plan.into_iter().enumerate() {
            let unit =
                TrainConvBn::build(source, &c.weight, &c.bn, c.in_channels, Some(c.out_channels), c.kernel, c.spec)?;
            // The last one's ReLU follows the residual addition.
            convs.push(unit.with_relu(j != last));
        }
        let downsample = match g.shortcut(in_channels, out_channels, source.contains("downsample.conv.weight")) {
            Some((pool, spec)) => {
                let mut shortcut = source.at("downsample");
                let conv =
                    TrainConvBn::build(&mut shortcut, "conv.weight", "bn", in_channels, Some(out_channels), 1, spec)?;
                Some(TrainDownsample { pool, conv, input_shape: None })
            }
            None => None,
        };
        Ok(TrainBlock { convs, downsample, output: None })
    }

    fn out_channels(&self) -> usize {
        self.convs.last().map_or(0, TrainConvBn::out_channels)
    }

    /// `relu(F(x) + shortcut(x))`.
    fn forward(&mut self, x: Arc<Tensor>, mode: BnMode) -> Result<Arc<Tensor>, ResNetError> {
        let shortcut = match &mut self.downsample {
            Some(d) => {
                d.input_shape = Some(x.shape());
                let input = match &d.pool {
                    Some(pool) => Arc::new(avg_pool2d(&x, pool, false)?),
                    None => Arc::clone(&x),
                };
                d.conv.forward(input, mode)?
            }
            None => Arc::clone(&x),
        };
        let y = chain_forward(&mut self.convs, x, mode)?;
        let mut y = Arc::try_unwrap(y).unwrap_or_else(|shared| (*shared).clone());
        add_assign(&mut y, &shortcut)?;
        relu_in_place(&mut y);
        let y = Arc::new(y);
        self.output = Some(Arc::clone(&y));
        Ok(y)
    }

    fn backward(&mut self, grad_output: Tensor) -> Result<Tensor, ResNetError> {
        let output = self.output.take().ok_or(pspnet_nn::NnError::NoForward("residual block"))?;
        let grad = relu_backward(&output, grad_output)?;
        drop(output);
        let mut body =
            chain_backward(&mut self.convs, Cow::Borrowed(&grad), true)?.expect("asked for the input's gradient");
        let shortcut = match &mut self.downsample {
            Some(d) => {
                let g = d.conv.backward(grad, true)?.expect("asked for the input's gradient");
                match (&d.pool, d.input_shape.take()) {
                    (Some(pool), Some(shape)) => avg_pool2d_backward(&g, shape, pool, false)?,
                    _ => g,
                }
            }
            None => grad,
        };
        add_assign(&mut body, &shortcut)?;
        Ok(body)
    }
}

impl Trainable for TrainResNet {
    fn visit_state(&mut self, prefix: &str, visit: &mut StateVisitor) {
        let stem = join(prefix, "stem");
        for (i, unit) in self.stem.convs.iter_mut().enumerate() {
            unit.visit_state(&join(&stem, &i.to_string()), visit);
        }
        for (s, stage) in self.stages.iter_mut().enumerate() {
            for (b, block) in stage.iter_mut().enumerate() {
                let path = join(prefix, &format!("layer{}.{b}", s + 1));
                for unit in &mut block.convs {
                    unit.visit_state(&path, visit);
                }
                if let Some(d) = &mut block.downsample {
                    d.conv.visit_state(&join(&path, "downsample"), visit);
                }
            }
        }
    }
}
