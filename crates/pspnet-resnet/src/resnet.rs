use pspnet_kernels::{Conv2d, KernelError};
use pspnet_nn::{Layer, Observer, ParamSource};
use pspnet_tensor::{Shape, Tensor};

use crate::block::BlockGeometry;
use crate::{Block, ResNetConfig, ResNetError, Stem};

/// A ResNet backbone with batch-norm folded in.
#[derive(Debug, Clone)]
pub struct ResNet {
    config: ResNetConfig,
    stem: Stem,
    stages: Vec<Vec<Block>>,
}

/// What the backbone computed: the stem's output (1/4 resolution) and
/// each stage's.
#[derive(Debug, Clone)]
pub struct Features {
    /// After the stem's max pool.
    pub stem: Tensor,
    /// Stages 1 to 4 (index 0 to 3).
    pub stages: Vec<Tensor>,
}

impl ResNet {
    /// Builds the network from parameters named `stem.*` and
    /// `layer{1..4}.{block}.*` under `source` (see [`Stem`] and [`Block`]);
    /// channel widths come from the weights' shapes.
    pub fn build(config: &ResNetConfig, source: &mut ParamSource) -> Result<Self, ResNetError> {
        if config.layers.contains(&0) {
            return Err(ResNetError::Config(format!("every stage needs a block, got {:?}", config.layers)));
        }
        let geometry = config.stage_geometry()?;
        let stem = Stem::build(config.stem, config.pool_ceil, &mut source.at("stem"))?;
        let mut channels = stem.out_channels();
        let mut stages = Vec::with_capacity(4);
        for (s, (&(stride, dilation), blocks)) in geometry.iter().zip(config.layers).enumerate() {
            let mut stage = source.at(format!("layer{}", s + 1));
            let mut built = Vec::new();
            for b in 0..blocks {
                let block = Block::build(&mut stage.at(b), channels, BlockGeometry::of(config, (stride, dilation), b))?;
                channels = block.out_channels();
                built.push(block);
            }
            stages.push(built);
        }
        Ok(ResNet { config: config.clone(), stem, stages })
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &ResNetConfig {
        &self.config
    }

    /// Output channels of stages 1 to 4.
    pub fn out_channels(&self) -> [usize; 4] {
        let last = |s: usize| self.stages[s].last().map_or(0, Block::out_channels);
        [last(0), last(1), last(2), last(3)]
    }

    /// Output channels of the stem.
    pub fn stem_channels(&self) -> usize {
        self.stem.out_channels()
    }

    /// The shape of each stage's output for an input shape.
    pub fn stage_shapes(&self, input: Shape) -> Result<[Shape; 4], KernelError> {
        let mut shape = self.stem.output_shape(input)?;
        let mut shapes = [shape; 4];
        for (stage, out) in self.stages.iter().zip(&mut shapes) {
            shape = stage.output_shape(shape)?;
            *out = shape;
        }
        Ok(shapes)
    }

    /// Runs the backbone on a normalised `N x 3 x H x W` batch, keeping
    /// every stage's output.
    pub fn forward(&self, x: &Tensor) -> Result<Features, ResNetError> {
        let mut kept = Vec::with_capacity(4);
        let last = self.run(x, &mut |_, _| {}, Some(&mut kept))?;
        let stem = kept.remove(0);
        kept.push(last);
        Ok(Features { stem, stages: kept })
    }

    /// Runs the backbone and returns stage 4's output, calling `observe`
    /// with `"stem"`, then `"stage1"` .. `"stage4"` and each one's output as
    /// it finishes. Each stage's output is freed as soon as the next stage
    /// has read it, unless the observer keeps a copy.
    pub fn forward_observed(&self, x: &Tensor, observe: &mut Observer) -> Result<Tensor, ResNetError> {
        self.run(x, observe, None)
    }

    /// Stage 4's output; the stem's and earlier stages' outputs go to
    /// `kept` when given, and are freed once read otherwise.
    fn run(
        &self,
        x: &Tensor,
        observe: &mut Observer,
        mut kept: Option<&mut Vec<Tensor>>,
    ) -> Result<Tensor, ResNetError> {
        let mut y = self.stem.forward(x)?;
        observe("stem", Some(&y));
        for (blocks, name) in self.stages.iter().zip(["stage1", "stage2", "stage3", "stage4"]) {
            let mut z = blocks[0].forward(&y)?;
            // The later blocks keep their shapes: each writes into the
            // buffer its input had two blocks before.
            let (mut inner, mut spare) = (Vec::new(), None);
            for block in &blocks[1..] {
                let mut out = match spare.take() {
                    Some(buffer) => buffer,
                    None => Tensor::zeros(Layer::output_shape(block, z.shape())?),
                };
                block.forward_into(&z, &mut inner, &mut out)?;
                spare = Some(std::mem::replace(&mut z, out));
            }
            let previous = std::mem::replace(&mut y, z);
            if let Some(kept) = kept.as_deref_mut() {
                kept.push(previous);
            }
            observe(name, Some(&y));
        }
        Ok(y)
    }
}

impl Layer for ResNet {
    /// The shape of stage 4's output.
    fn output_shape(&self, input: Shape) -> Result<Shape, KernelError> {
        Ok(self.stage_shapes(input)?[3])
    }

    fn flops(&self, input: Shape) -> Result<u64, KernelError> {
        let mut total = self.stem.flops(input)?;
        let mut shape = self.stem.output_shape(input)?;
        for stage in &self.stages {
            total += stage.flops(shape)?;
            shape = stage.output_shape(shape)?;
        }
        Ok(total)
    }

    fn parameters(&self) -> usize {
        self.stem.parameters() + self.stages.iter().map(|stage| stage.parameters()).sum::<usize>()
    }

    fn visit_convs(&mut self, visit: &mut dyn FnMut(&mut Conv2d)) {
        self.stem.visit_convs(visit);
        self.stages.iter_mut().for_each(|stage| stage.visit_convs(visit));
    }
}
