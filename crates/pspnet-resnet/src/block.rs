use pspnet_kernels::{Conv2d, ConvSpec, PoolSpec, avg_pool2d};
use pspnet_tensor::{Params, Shape, Tensor};

use crate::{BlockKind, ResNetError, sequence};

/// A residual block: `relu(F(x) + shortcut(x))`, where `F` is two 3x3
/// convolutions (basic) or 1x1-3x3-1x1 (bottleneck), each followed by a
/// folded batch-norm. The last convolution adds the shortcut and applies the
/// ReLU in its epilogue.
#[derive(Debug, Clone)]
pub struct Block {
    convs: Vec<Conv2d>,
    downsample: Option<Downsample>,
}

/// The projection shortcut of a block that changes shape.
#[derive(Debug, Clone)]
struct Downsample {
    /// ResNetV1d: average-pool by the stride instead of striding the 1x1.
    pool: Option<PoolSpec>,
    conv: Conv2d,
}

/// Where a block sits and how it samples.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockGeometry {
    pub(crate) kind: BlockKind,
    pub(crate) stride: usize,
    pub(crate) dilation: usize,
    pub(crate) avg_down: bool,
}

impl Block {
    /// Reads `{name}.conv{j}.weight`, `{name}.bn{j}.*` and, when present,
    /// `{name}.downsample.conv.weight` / `{name}.downsample.bn.*`.
    pub(crate) fn from_params(params: &mut Params, name: &str, g: BlockGeometry) -> Result<Self, ResNetError> {
        let (s, d) = (g.stride, g.dilation);
        let specs = match g.kind {
            // mmsegmentation's BasicBlock dilates only its first convolution.
            BlockKind::Basic => {
                vec![ConvSpec::default().stride(s).padding(d).dilation(d), ConvSpec::default().padding(1)]
            }
            BlockKind::Bottleneck => {
                vec![ConvSpec::default(), ConvSpec::default().stride(s).padding(d).dilation(d), ConvSpec::default()]
            }
        };
        let convs = specs
            .into_iter()
            .enumerate()
            .map(|(j, spec)| {
                let (weight, bn) = (format!("{name}.conv{}.weight", j + 1), format!("{name}.bn{}", j + 1));
                Ok(Conv2d::from_params_bn(params, &weight, &bn, spec)?.with_relu(true))
            })
            .collect::<Result<Vec<_>, ResNetError>>()?;
        let weight = format!("{name}.downsample.conv.weight");
        let downsample = if params.contains(&weight) {
            let pool = (g.avg_down && s > 1).then(|| PoolSpec { ceil_mode: true, ..PoolSpec::square(s, s, 0) });
            let stride = if pool.is_some() { 1 } else { s };
            let conv = Conv2d::from_params_bn(
                params,
                &weight,
                &format!("{name}.downsample.bn"),
                ConvSpec::default().stride(stride),
            )?;
            Some(Downsample { pool, conv })
        } else {
            None
        };
        Ok(Block { convs, downsample })
    }

    /// Every convolution of the block, shortcut included.
    pub fn convs_mut(&mut self) -> impl Iterator<Item = &mut Conv2d> {
        self.convs.iter_mut().chain(self.downsample.as_mut().map(|d| &mut d.conv))
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.convs.last().map_or(0, |c| c.weight_dims()[0])
    }

    /// Floating-point operations of its convolutions for an input shape, and
    /// the output shape.
    pub fn flops(&self, input: Shape) -> Result<(u64, Shape), ResNetError> {
        let (mut total, shape) = sequence::flops(&self.convs, input)?;
        if let Some(d) = &self.downsample {
            let pooled = d.pool.map_or(Ok(input), |pool| pool.output_shape(input))?;
            total += d.conv.flops(pooled)?.0;
        }
        Ok((total, shape))
    }

    /// Parameters (batch-norm statistics counted as in the checkpoint).
    pub fn parameters(&self) -> usize {
        self.convs.iter().map(Conv2d::parameters).sum::<usize>()
            + self.downsample.as_ref().map_or(0, |d| d.conv.parameters())
    }

    /// Runs the block.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, ResNetError> {
        let projected = match &self.downsample {
            Some(Downsample { pool: Some(pool), conv }) => Some(conv.forward(&avg_pool2d(x, pool, false)?)?),
            Some(Downsample { pool: None, conv }) => Some(conv.forward(x)?),
            None => None,
        };
        let shortcut = projected.as_ref().unwrap_or(x);
        let (last, body) = self.convs.split_last().expect("a block has at least two convolutions");
        Ok(last.forward_with_residual(&sequence::forward(body, x)?, shortcut)?)
    }
}
