use pspnet_kernels::{Conv2d, ConvSpec, PoolSpec, max_pool2d};
use pspnet_tensor::{Params, Shape, Tensor};

use crate::{ResNetError, StemKind, sequence};

/// The stem: convolutions (each with folded batch-norm and ReLU) bringing
/// the image to 1/2 resolution, then a 3x3 stride-2 max pool to 1/4.
#[derive(Debug, Clone)]
pub struct Stem {
    convs: Vec<Conv2d>,
}

impl Stem {
    /// Reads `{prefix}.stem.{i}.conv.weight` and `{prefix}.stem.{i}.bn.*`
    /// (i = 0..3 for the deep stem, 0 for the classic one).
    pub fn from_params(kind: StemKind, params: &mut Params, prefix: &str) -> Result<Self, ResNetError> {
        let specs = match kind {
            StemKind::Deep => vec![
                ConvSpec::default().stride(2).padding(1),
                ConvSpec::default().padding(1),
                ConvSpec::default().padding(1),
            ],
            StemKind::Classic => vec![ConvSpec::default().stride(2).padding(3)],
        };
        let convs = specs
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                let name = format!("{prefix}.stem.{i}");
                Ok(Conv2d::from_params_bn(params, &format!("{name}.conv.weight"), &format!("{name}.bn"), spec)?
                    .with_relu(true))
            })
            .collect::<Result<Vec<_>, ResNetError>>()?;
        Ok(Stem { convs })
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.convs.last().map_or(0, |c| c.weight_dims()[0])
    }

    /// Floating-point operations of its convolutions for an input shape,
    /// and the output shape (after the max pool).
    pub fn flops(&self, input: Shape) -> Result<(u64, Shape), ResNetError> {
        let (total, shape) = sequence::flops(&self.convs, input)?;
        Ok((total, PoolSpec::square(3, 2, 1).output_shape(shape)?))
    }

    /// Every convolution of the stem.
    pub fn convs_mut(&mut self) -> impl Iterator<Item = &mut Conv2d> {
        self.convs.iter_mut()
    }

    /// Parameters (batch-norm statistics counted as in the checkpoint).
    pub fn parameters(&self) -> usize {
        self.convs.iter().map(Conv2d::parameters).sum()
    }

    /// Runs the stem on an `N x 3 x H x W` batch.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, ResNetError> {
        Ok(max_pool2d(&sequence::forward(&self.convs, x)?, &PoolSpec::square(3, 2, 1))?)
    }
}
