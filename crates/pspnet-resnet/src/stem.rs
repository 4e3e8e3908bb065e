use pspnet_kernels::{Conv2d, ConvSpec, KernelError, PoolSpec, max_pool2d};
use pspnet_nn::{Layer, ParamSource, conv_bn};
use pspnet_tensor::{Shape, Tensor};

use crate::{ResNetError, StemKind};

/// The stem: convolutions (each with folded batch-norm and ReLU) bringing
/// the image to 1/2 resolution, then a 3x3 stride-2 max pool to 1/4.
#[derive(Debug, Clone)]
pub struct Stem {
    convs: Vec<Conv2d>,
    pool: PoolSpec,
}

/// The stem's convolutions: their kernel size and each one's spec.
pub(crate) fn convs(kind: StemKind) -> (usize, Vec<ConvSpec>) {
    match kind {
        StemKind::Deep => (
            3,
            vec![
                ConvSpec::default().stride(2).padding(1),
                ConvSpec::default().padding(1),
                ConvSpec::default().padding(1),
            ],
        ),
        StemKind::Classic => (7, vec![ConvSpec::default().stride(2).padding(3)]),
    }
}

/// The stem's 3x3 stride-2 max pool, rounding its size up when `ceil`.
pub(crate) fn pool(ceil: bool) -> PoolSpec {
    PoolSpec { ceil_mode: ceil, ..PoolSpec::square(3, 2, 1) }
}

impl Stem {
    /// Reads `{i}.conv.weight` and `{i}.bn.*` under `source` (i = 0..3 for
    /// the deep stem, 0 for the classic one) for an RGB input; the 3x3
    /// stride-2 max pool rounds its size up when `pool_ceil`.
    pub fn build(kind: StemKind, pool_ceil: bool, source: &mut ParamSource) -> Result<Self, ResNetError> {
        let (kernel, specs) = convs(kind);
        let mut channels = 3;
        let mut convs = Vec::with_capacity(specs.len());
        for (i, spec) in specs.into_iter().enumerate() {
            let conv = conv_bn(&mut source.at(i), "conv.weight", "bn", channels, None, kernel, spec)?.with_relu(true);
            channels = conv.weight_dims()[0];
            convs.push(conv);
        }
        Ok(Stem { convs, pool: pool(pool_ceil) })
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.convs.last().map_or(0, |c| c.weight_dims()[0])
    }

    /// Runs the stem on an `N x 3 x H x W` batch.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, ResNetError> {
        let (first, rest) = self.convs.split_first().expect("a stem has a convolution");
        let y = rest.iter().try_fold(first.forward(x)?, |y, conv| conv.forward(&y))?;
        Ok(max_pool2d(&y, &self.pool)?)
    }
}

impl Layer for Stem {
    fn output_shape(&self, input: Shape) -> Result<Shape, KernelError> {
        self.pool.output_shape(self.convs.output_shape(input)?)
    }

    fn flops(&self, input: Shape) -> Result<u64, KernelError> {
        self.convs.flops(input)
    }

    fn parameters(&self) -> usize {
        self.convs.parameters()
    }

    fn visit_convs(&mut self, visit: &mut dyn FnMut(&mut Conv2d)) {
        self.convs.visit_convs(visit)
    }
}
