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
        let mut out = Tensor::zeros(self.output_shape(x.shape())?);
        self.forward_into(x, &mut Vec::new(), &mut out)?;
        Ok(out)
    }

    /// Runs the block into `out` (of the output shape), keeping the inner
    /// activations in `inner`, whose tensors are reused when they have the
    /// right shape (and replaced when not): a stage's blocks after the first
    /// all have the same shapes, so they share one set of buffers instead of
    /// allocating their own.
    pub fn forward_into(&self, x: &Tensor, inner: &mut Vec<Tensor>, out: &mut Tensor) -> Result<(), ResNetError> {
        let projected = match &self.downsample {
            Some(Downsample { pool: Some(pool), conv }) => Some(conv.forward(&avg_pool2d(x, pool, false)?)?),
            Some(Downsample { pool: None, conv }) => Some(conv.forward(x)?),
            None => None,
        };
        let shortcut = projected.as_ref().unwrap_or(x);
        let (last, body) = self.convs.split_last().expect("a block has at least two convolutions");
        inner.truncate(body.len());
        let mut shape = x.shape();
        for (i, conv) in body.iter().enumerate() {
            shape = conv.output_shape(shape)?;
            match inner.get(i) {
                Some(t) if t.shape() == shape => {}
                Some(_) => inner[i] = Tensor::zeros(shape),
                None => inner.push(Tensor::zeros(shape)),
            }
        }
        for (i, conv) in body.iter().enumerate() {
            let (done, rest) = inner.split_at_mut(i);
            conv.forward_into(done.last().unwrap_or(x), None, &mut rest[0])?;
        }
        let input = inner.last().unwrap_or(x);
        Ok(last.forward_into(input, Some(shortcut), out)?)
    }

    /// The output shape for an input shape.
    pub fn output_shape(&self, input: Shape) -> Result<Shape, ResNetError> {
        Ok(self.flops(input)?.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pseudo-random value in [-0.5, 0.5) for element `i` of stream `seed`.
    fn noise(seed: usize, i: usize) -> f32 {
        ((i.wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)) >> 5) as f32 % 1000.0 / 1000.0 - 0.5
    }

    /// The parameters of a bottleneck block `b`: `channels` -> `mid` -> `channels`.
    fn bottleneck(channels: usize, mid: usize) -> Params {
        let mut params = Params::new();
        for (j, (o, i, k)) in [(mid, channels, 1), (mid, mid, 3), (channels, mid, 1)].into_iter().enumerate() {
            let weight = (0..o * i * k * k).map(|v| 0.3 * noise(j, v)).collect();
            params.insert(format!("b.conv{}.weight", j + 1), vec![o, i, k, k], weight).unwrap();
            for (s, stat) in ["weight", "bias", "running_mean", "running_var"].into_iter().enumerate() {
                let values = (0..o).map(|c| noise(10 * j + s, c) + if s == 3 { 1.0 } else { 0.0 }).collect();
                params.insert(format!("b.bn{}.{stat}", j + 1), vec![o], values).unwrap();
            }
        }
        params
    }

    /// Whatever the buffers held before (the wrong shape, stale values),
    /// the block writes what its convolutions give one after another.
    #[test]
    fn forward_into_overwrites_reused_buffers() {
        let geometry = BlockGeometry { kind: BlockKind::Bottleneck, stride: 1, dilation: 2, avg_down: false };
        let block = Block::from_params(&mut bottleneck(8, 4), "b", geometry).unwrap();
        let shape = Shape::new(1, 8, 9, 11).unwrap();
        let x = Tensor::from_fn(shape, |_, c, y, x| noise(99, c * 1000 + y * 20 + x));
        let [c1, c2, c3] = &block.convs[..] else { panic!("a bottleneck has three convolutions") };
        let expected = c3.forward_with_residual(&c2.forward(&c1.forward(&x).unwrap()).unwrap(), &x).unwrap();
        let mut inner = vec![Tensor::filled(Shape::new(1, 3, 2, 2).unwrap(), f32::NAN)];
        let mut out = Tensor::filled(shape, f32::NAN);
        for _ in 0..2 {
            block.forward_into(&x, &mut inner, &mut out).unwrap();
            assert_eq!(out, expected);
            assert_eq!(inner.iter().map(Tensor::shape).collect::<Vec<_>>(), [Shape::new(1, 4, 9, 11).unwrap(); 2]);
        }
        assert_eq!(block.forward(&x).unwrap(), expected);
    }
}
