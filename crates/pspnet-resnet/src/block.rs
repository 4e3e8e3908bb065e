use pspnet_kernels::{Conv2d, ConvSpec, KernelError, PoolSpec, avg_pool2d};
use pspnet_nn::{Layer, ParamSource, conv_bn};
use pspnet_tensor::{Shape, Tensor};

use crate::{BlockKind, ResNetConfig, ResNetError, StridePlacement};

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
    pub(crate) stride_placement: StridePlacement,
}

impl BlockGeometry {
    /// Each convolution's kernel size and spec, in order.
    pub(crate) fn convs(&self) -> Vec<(usize, ConvSpec)> {
        let (s, d) = (self.stride, self.dilation);
        let dilated = ConvSpec::default().padding(d).dilation(d);
        match (self.kind, self.stride_placement) {
            // mmsegmentation's BasicBlock dilates only its first convolution.
            (BlockKind::Basic, _) => vec![(3, dilated.stride(s)), (3, ConvSpec::default().padding(1))],
            (BlockKind::Bottleneck, StridePlacement::Middle) => {
                vec![(1, ConvSpec::default()), (3, dilated.stride(s)), (1, ConvSpec::default())]
            }
            (BlockKind::Bottleneck, StridePlacement::Reduce) => {
                vec![(1, ConvSpec::default().stride(s)), (3, dilated), (1, ConvSpec::default())]
            }
        }
    }
}

/// One convolution of a block as its builders read it: the weight's and
/// the batch-norm's names, its widths, kernel and spec.
#[derive(Debug, Clone)]
pub(crate) struct PlannedConv {
    pub(crate) weight: String,
    pub(crate) bn: String,
    pub(crate) in_channels: usize,
    pub(crate) out_channels: usize,
    pub(crate) kernel: usize,
    pub(crate) spec: ConvSpec,
}

impl BlockGeometry {
    /// The block's convolutions in order (`conv{j}.weight` with `bn{j}`),
    /// for `in_channels` channels in; its width (`planes`) is read off the
    /// first convolution in `source`.
    pub(crate) fn plan(&self, source: &ParamSource, in_channels: usize) -> Vec<PlannedConv> {
        let planes = source.dim("conv1.weight", 0).or_else(|| source.dim("bn1.weight", 0)).unwrap_or(0);
        let specs = self.convs();
        let last = specs.len() - 1;
        let mut channels = in_channels;
        let mut plan = Vec::with_capacity(specs.len());
        for (j, (kernel, spec)) in specs.into_iter().enumerate() {
            let out_channels = if j == last { planes * self.kind.expansion() } else { planes };
            let (weight, bn) = (format!("conv{}.weight", j + 1), format!("bn{}", j + 1));
            plan.push(PlannedConv { weight, bn, in_channels: channels, out_channels, kernel, spec });
            channels = out_channels;
        }
        plan
    }

    /// Block `index` of a stage of `(stride, dilation)` in `config`: only
    /// the first block strides.
    pub(crate) fn of(config: &ResNetConfig, (stride, dilation): (usize, usize), index: usize) -> Self {
        BlockGeometry {
            kind: config.block,
            stride: if index == 0 { stride } else { 1 },
            dilation: config.block_dilation(dilation, index),
            avg_down: config.avg_down,
            stride_placement: config.stride_placement,
        }
    }

    /// The projection shortcut's pool (ResNetV1d) and 1x1 convolution's
    /// spec, where the block changes shape or the checkpoint `has` one.
    pub(crate) fn shortcut(
        &self,
        in_channels: usize,
        out_channels: usize,
        has: bool,
    ) -> Option<(Option<PoolSpec>, ConvSpec)> {
        if self.stride == 1 && in_channels == out_channels && !has {
            return None;
        }
        let pool = (self.avg_down && self.stride > 1)
            .then(|| PoolSpec { ceil_mode: true, ..PoolSpec::square(self.stride, self.stride, 0) });
        Some((pool, ConvSpec::default().stride(if pool.is_some() { 1 } else { self.stride })))
    }
}

impl Block {
    /// Reads `conv{j}.weight`, `bn{j}.*` and, where the block changes shape
    /// (or the checkpoint has one anyway), `downsample.conv.weight` /
    /// `downsample.bn.*` under `source`, for `in_channels` channels in. The
    /// block's width (`planes`) is read off its first convolution.
    pub(crate) fn build(source: &mut ParamSource, in_channels: usize, g: BlockGeometry) -> Result<Self, ResNetError> {
        let plan = g.plan(source, in_channels);
        let out_channels = plan.last().map_or(0, |c| c.out_channels);
        let mut convs = Vec::with_capacity(plan.len());
        for c in plan {
            let conv = conv_bn(source, &c.weight, &c.bn, c.in_channels, Some(c.out_channels), c.kernel, c.spec)?;
            convs.push(conv.with_relu(true));
        }
        let downsample = match g.shortcut(in_channels, out_channels, source.contains("downsample.conv.weight")) {
            Some((pool, spec)) => {
                let mut shortcut = source.at("downsample");
                let conv = conv_bn(&mut shortcut, "conv.weight", "bn", in_channels, Some(out_channels), 1, spec)?;
                Some(Downsample { pool, conv })
            }
            None => None,
        };
        Ok(Block { convs, downsample })
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.convs.last().map_or(0, |c| c.weight_dims()[0])
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
}

impl Layer for Block {
    fn output_shape(&self, input: Shape) -> Result<Shape, KernelError> {
        self.convs.output_shape(input)
    }

    fn flops(&self, input: Shape) -> Result<u64, KernelError> {
        let mut total = self.convs.flops(input)?;
        if let Some(d) = &self.downsample {
            let pooled = d.pool.map_or(Ok(input), |pool| pool.output_shape(input))?;
            total += Layer::flops(&d.conv, pooled)?;
        }
        Ok(total)
    }

    fn parameters(&self) -> usize {
        self.convs.parameters() + self.downsample.as_ref().map_or(0, |d| d.conv.parameters())
    }

    fn visit_convs(&mut self, visit: &mut dyn FnMut(&mut Conv2d)) {
        self.convs.visit_convs(visit);
        if let Some(d) = &mut self.downsample {
            visit(&mut d.conv);
        }
    }
}

#[cfg(test)]
mod tests {
    use pspnet_kernels::ConvOptions;
    use pspnet_nn::ParamStore;
    use pspnet_tensor::Params;

    use super::*;

    /// A pseudo-random value in [-0.5, 0.5) for element `i` of stream `seed`.
    fn noise(seed: usize, i: usize) -> f32 {
        ((i.wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)) >> 5) as f32 % 1000.0 / 1000.0 - 0.5
    }

    /// Conv + batch-norm parameters `{name}.weight` (`[o, i, k, k]`) and `{bn}.*`.
    fn conv_bn_params(params: &mut Params, seed: usize, weight: &str, bn: &str, [o, i, k]: [usize; 3]) {
        let values = (0..o * i * k * k).map(|v| noise(seed, v) / (i * k * k) as f32 * 6.0).collect();
        params.insert(weight, vec![o, i, k, k], values).unwrap();
        // Scales near 1 and small means keep about half of each ReLU's inputs positive.
        for (s, (stat, base)) in
            [("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)].into_iter().enumerate()
        {
            let values = (0..o).map(|c| base + 0.5 * noise(10 * seed + s, c)).collect();
            params.insert(format!("{bn}.{stat}"), vec![o], values).unwrap();
        }
    }

    /// The parameters of a bottleneck block `channels` -> `mid` -> `out`,
    /// with a projection shortcut when `out` differs or the block strides.
    fn bottleneck(channels: usize, mid: usize, out: usize, shortcut: bool) -> Params {
        let mut params = Params::new();
        for (j, shape) in [[mid, channels, 1], [mid, mid, 3], [out, mid, 1]].into_iter().enumerate() {
            conv_bn_params(&mut params, j, &format!("conv{}.weight", j + 1), &format!("bn{}", j + 1), shape);
        }
        if shortcut {
            conv_bn_params(&mut params, 7, "downsample.conv.weight", "downsample.bn", [out, channels, 1]);
        }
        params
    }

    fn build(params: Params, in_channels: usize, g: BlockGeometry) -> Block {
        let mut store = ParamStore::new(params, ConvOptions::default());
        let block = Block::build(&mut store.root(), in_channels, g).unwrap();
        let problems = store.finish();
        assert!(problems.is_empty(), "{problems:?}");
        block
    }

    fn geometry(stride: usize, dilation: usize, stride_placement: StridePlacement) -> BlockGeometry {
        BlockGeometry { kind: BlockKind::Bottleneck, stride, dilation, avg_down: false, stride_placement }
    }

    /// Whatever the buffers held before (the wrong shape, stale values),
    /// the block writes what its convolutions give one after another.
    #[test]
    fn forward_into_overwrites_reused_buffers() {
        let block = build(bottleneck(16, 4, 16, false), 16, geometry(1, 2, StridePlacement::Middle));
        let shape = Shape::new(1, 16, 9, 11).unwrap();
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

    /// A plain f64 convolution (PyTorch's definition) followed by the
    /// batch-norm `{bn}` in eval mode, for the oracle below.
    fn conv_bn_f64(
        x: &[f64],
        [c, h, w]: [usize; 3],
        params: &Params,
        weight: &str,
        bn: &str,
        [stride, padding, dilation]: [usize; 3],
    ) -> (Vec<f64>, [usize; 3]) {
        let p = params.get(weight).unwrap();
        let &[o, i, k, _] = p.shape() else { panic!("OIHW") };
        assert_eq!(i, c);
        let out_len = |n: usize| (n + 2 * padding - dilation * (k - 1) - 1) / stride + 1;
        let (oh, ow) = (out_len(h), out_len(w));
        let stat = |name: &str, ch: usize| params.get(&format!("{bn}.{name}")).unwrap().data()[ch] as f64;
        let mut y = vec![0.0; o * oh * ow];
        for (oc, plane) in y.chunks_exact_mut(oh * ow).enumerate() {
            let scale = stat("weight", oc) / (stat("running_var", oc) + 1e-5).sqrt();
            for (oy, ox) in (0..oh).flat_map(|oy| (0..ow).map(move |ox| (oy, ox))) {
                let mut sum = 0.0;
                for (ic, ky, kx) in (0..c).flat_map(|ic| (0..k).flat_map(move |ky| (0..k).map(move |kx| (ic, ky, kx))))
                {
                    let iy = (oy * stride + ky * dilation).checked_sub(padding).filter(|&v| v < h);
                    let ix = (ox * stride + kx * dilation).checked_sub(padding).filter(|&v| v < w);
                    if let (Some(iy), Some(ix)) = (iy, ix) {
                        sum += p.data()[((oc * c + ic) * k + ky) * k + kx] as f64 * x[(ic * h + iy) * w + ix];
                    }
                }
                plane[oy * ow + ox] = (sum - stat("running_mean", oc)) * scale + stat("bias", oc);
            }
        }
        (y, [o, oh, ow])
    }

    /// A strided bottleneck block, with the stride on the 1x1 reduce
    /// convolution or on the 3x3, against the block written out in f64.
    #[test]
    fn stride_placement_matches_an_f64_oracle() {
        let relu = |v: Vec<f64>| v.into_iter().map(|v| v.max(0.0)).collect::<Vec<_>>();
        let mut outputs = Vec::new();
        for placement in [StridePlacement::Reduce, StridePlacement::Middle] {
            let params = bottleneck(6, 3, 12, true);
            let block = build(params.clone(), 6, geometry(2, 2, placement));
            let shape = Shape::new(1, 6, 11, 14).unwrap();
            let x = Tensor::from_fn(shape, |_, c, y, x| noise(5, c * 1000 + y * 20 + x));
            let x64: Vec<f64> = x.as_slice().iter().map(|&v| v as f64).collect();
            let (s1, s2) = match placement {
                StridePlacement::Reduce => (2, 1),
                StridePlacement::Middle => (1, 2),
            };
            let (y, dims) = conv_bn_f64(&x64, [6, 11, 14], &params, "conv1.weight", "bn1", [s1, 0, 1]);
            let (y, dims) = conv_bn_f64(&relu(y), dims, &params, "conv2.weight", "bn2", [s2, 2, 2]);
            let (y, dims) = conv_bn_f64(&relu(y), dims, &params, "conv3.weight", "bn3", [1, 0, 1]);
            let (shortcut, _) =
                conv_bn_f64(&x64, [6, 11, 14], &params, "downsample.conv.weight", "downsample.bn", [2, 0, 1]);
            let want = relu(y.iter().zip(&shortcut).map(|(a, b)| a + b).collect());
            let got = block.forward(&x).unwrap();
            assert_eq!(got.shape().dims(), [1, dims[0], dims[1], dims[2]], "{placement:?}");
            let err: f64 = got.as_slice().iter().zip(&want).map(|(&g, w)| (g as f64 - w).powi(2)).sum::<f64>().sqrt();
            let norm: f64 = want.iter().map(|w| w * w).sum::<f64>().sqrt();
            assert!(err <= 1e-6 * norm, "{placement:?}: relative L2 {}", err / norm);
            outputs.push(want);
        }
        let differ: f64 = outputs[0].iter().zip(&outputs[1]).map(|(a, b)| (a - b).abs()).sum();
        assert!(differ > 1.0, "the two placements must compute different blocks ({differ})");
    }
}
