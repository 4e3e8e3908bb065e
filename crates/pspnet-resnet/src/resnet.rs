use pspnet_kernels::Conv2d;
use pspnet_tensor::{Params, Shape, Tensor};

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
    /// Builds the network from parameters named `{prefix}.stem.*` and
    /// `{prefix}.layer{1..4}.{block}.*` (see [`Stem`] and [`Block`]);
    /// channel widths come from the weights' shapes.
    pub fn from_params(config: &ResNetConfig, params: &mut Params, prefix: &str) -> Result<Self, ResNetError> {
        let stem = Stem::from_params(config.stem, params, prefix)?;
        let geometry = config.stage_geometry()?;
        let stages = geometry
            .iter()
            .zip(config.layers)
            .enumerate()
            .map(|(s, (&(stride, dilation), blocks))| {
                (0..blocks)
                    .map(|b| {
                        let g = BlockGeometry {
                            kind: config.block,
                            stride: if b == 0 { stride } else { 1 },
                            dilation: config.block_dilation(dilation, b),
                            avg_down: config.avg_down,
                        };
                        Block::from_params(params, &format!("{prefix}.layer{}.{b}", s + 1), g)
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        if stages.iter().any(Vec::is_empty) {
            return Err(ResNetError::Config(format!("every stage needs a block, got {:?}", config.layers)));
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

    /// Floating-point operations for an input shape, and the shape of each
    /// stage's output.
    pub fn flops(&self, input: Shape) -> Result<(u64, Vec<Shape>), ResNetError> {
        let (mut total, mut shape) = self.stem.flops(input)?;
        let mut shapes = Vec::with_capacity(4);
        for stage in &self.stages {
            for block in stage {
                let (f, s) = block.flops(shape)?;
                (total, shape) = (total + f, s);
            }
            shapes.push(shape);
        }
        Ok((total, shapes))
    }

    /// Every convolution of the backbone, stem first.
    pub fn convs_mut(&mut self) -> impl Iterator<Item = &mut Conv2d> {
        self.stem.convs_mut().chain(self.stages.iter_mut().flatten().flat_map(Block::convs_mut))
    }

    /// Parameters (batch-norm statistics counted as in the checkpoint).
    pub fn parameters(&self) -> usize {
        self.stem.parameters() + self.stages.iter().flatten().map(Block::parameters).sum::<usize>()
    }

    /// Runs the backbone on a normalised `N x 3 x H x W` batch.
    pub fn forward(&self, x: &Tensor) -> Result<Features, ResNetError> {
        self.forward_observed(x, &mut |_| {})
    }

    /// [`ResNet::forward`], calling `done` with `"stem"`, then `"stage1"` ..
    /// `"stage4"` as each finishes (for profiling).
    pub fn forward_observed(&self, x: &Tensor, done: &mut dyn FnMut(&'static str)) -> Result<Features, ResNetError> {
        let (last, mut kept) = self.run(x, done, true)?;
        let stem = kept.remove(0);
        kept.push(last);
        Ok(Features { stem, stages: kept })
    }

    /// Only the stage-4 features (what the decoder reads), each earlier
    /// stage's output freed as soon as the next stage has consumed it.
    pub fn forward_last(&self, x: &Tensor, done: &mut dyn FnMut(&'static str)) -> Result<Tensor, ResNetError> {
        Ok(self.run(x, done, false)?.0)
    }

    /// The last stage's output, and the stem's and earlier stages' if `keep`.
    fn run(
        &self,
        x: &Tensor,
        done: &mut dyn FnMut(&'static str),
        keep: bool,
    ) -> Result<(Tensor, Vec<Tensor>), ResNetError> {
        let mut y = self.stem.forward(x)?;
        done("stem");
        let mut kept = Vec::with_capacity(if keep { 4 } else { 0 });
        for (blocks, name) in self.stages.iter().zip(["stage1", "stage2", "stage3", "stage4"]) {
            let mut z = blocks[0].forward(&y)?;
            // The later blocks keep their shapes: each writes into the
            // buffer its input had two blocks before.
            let (mut inner, mut spare) = (Vec::new(), None);
            for block in &blocks[1..] {
                let mut out = match spare.take() {
                    Some(buffer) => buffer,
                    None => Tensor::zeros(block.output_shape(z.shape())?),
                };
                block.forward_into(&z, &mut inner, &mut out)?;
                spare = Some(std::mem::replace(&mut z, out));
            }
            let previous = std::mem::replace(&mut y, z);
            if keep {
                kept.push(previous);
            }
            done(name);
        }
        Ok((y, kept))
    }
}
