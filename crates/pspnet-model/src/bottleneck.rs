//! The head's 3x3 convolution (+ batch-norm + ReLU) over the pyramid's
//! concatenation `[x, up(level_1), ..., up(level_k)]`, computed without
//! building the concatenation.
//!
//! A convolution over concatenated channels is the sum of convolutions over
//! each part. The part over `x` is an ordinary convolution; each level's
//! part convolves a bilinear upsampling of a map of at most 6x6 bins, which
//! [`UpsampledConv`] computes at the level's own size. In PSPNet-50 the
//! levels are half of the head's 4096 input channels, and the head was 42%
//! of the network's arithmetic.

use ndarray::s;
use pspnet_kernels::{BatchNorm, Conv2d, ConvSpec, Precision, UpsampledConv};
use pspnet_tensor::{Params, Shape, Tensor, TensorError};

use crate::ModelError;

/// See the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct Bottleneck {
    /// The part over the features, carrying the batch-norm and the ReLU,
    /// which it applies after adding the levels' parts.
    features: Conv2d,
    /// One part per level, its weights multiplied by the batch-norm's scale.
    levels: Vec<UpsampledConv>,
}

impl Bottleneck {
    /// Reads `{prefix}.conv.weight` (its input channels: `features`, then
    /// each of `levels`) and `{prefix}.bn.*`; `align_corners` is the
    /// pyramid's upsampling convention.
    pub(crate) fn from_params(
        params: &mut Params,
        prefix: &str,
        features: usize,
        levels: &[usize],
        align_corners: bool,
    ) -> Result<Self, ModelError> {
        let name = format!("{prefix}.conv.weight");
        let weight = params.take_tensor4(&name)?;
        let [outs, ins, kh, kw] = weight.shape().dims();
        let expected = features + levels.iter().sum::<usize>();
        if ins != expected {
            return Err(TensorError::ParamShape {
                name,
                expected: format!("{expected} input channels ({features} features + pyramid levels {levels:?})"),
                got: weight.shape().dims().to_vec(),
            }
            .into());
        }
        let bn = BatchNorm::from_params(params, &format!("{prefix}.bn"), outs)?;
        let (scale, _) = bn.scale_shift();
        let spec = ConvSpec::default().padding(1);
        let part = |channels: std::ops::Range<usize>| {
            Tensor::from_array(weight.view().slice(s![.., channels, .., ..]).to_owned())
        };
        let mut levels_parts = Vec::with_capacity(levels.len());
        let mut c0 = features;
        for &c in levels {
            let mut w = part(c0..c0 + c)?;
            for (filters, scale) in w.as_mut_slice().chunks_exact_mut(c * kh * kw).zip(&scale) {
                filters.iter_mut().for_each(|v| *v *= scale);
            }
            levels_parts.push(UpsampledConv::new(&w, spec, align_corners)?);
            c0 += c;
        }
        let features = Conv2d::from_weight(part(0..features)?, spec)?.with_batch_norm(&bn)?.with_relu(true);
        Ok(Bottleneck { features, levels: levels_parts })
    }

    /// The output for features `x` and the pyramid's `levels` (as
    /// [`pspnet_ppm::PyramidPooling::levels`] gives them).
    pub(crate) fn forward(&self, x: &Tensor, levels: &[Tensor]) -> Result<Tensor, ModelError> {
        if levels.len() != self.levels.len() {
            return Err(ModelError::Input(format!(
                "the head convolves {} pyramid levels, got {}",
                self.levels.len(),
                levels.len()
            )));
        }
        let size = [x.shape().h(), x.shape().w()];
        let mut context = Tensor::zeros(self.features.output_shape(x.shape())?);
        for (conv, level) in self.levels.iter().zip(levels) {
            conv.accumulate(level, size, &mut context)?;
        }
        Ok(self.features.forward_with_residual(x, &context)?)
    }

    /// Floating-point operations of the whole convolution over the
    /// concatenation, for features of shape `x` and levels of `level_shapes`.
    pub(crate) fn flops(&self, x: Shape, level_shapes: &[Shape]) -> Result<(u64, Shape), ModelError> {
        let (mut total, out) = self.features.flops(x)?;
        for (conv, &level) in self.levels.iter().zip(level_shapes) {
            total += conv.flops(level, [x.h(), x.w()])?;
        }
        Ok((total, out))
    }

    /// Parameters as the checkpoint counts them (weights and batch-norm).
    pub(crate) fn parameters(&self) -> usize {
        self.features.parameters() + self.levels.iter().map(UpsampledConv::parameters).sum::<usize>()
    }

    /// Sets the arithmetic of every part.
    pub(crate) fn set_precision(&mut self, precision: Precision) {
        self.features.set_precision(precision);
        self.levels.iter_mut().for_each(|level| level.set_precision(precision));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(in_channels: usize) -> Params {
        let mut params = Params::new();
        params.insert("head.conv.weight", vec![3, in_channels, 3, 3], vec![0.5; 3 * in_channels * 9]).unwrap();
        for name in ["weight", "bias", "running_mean", "running_var"] {
            params.insert(format!("head.bn.{name}"), vec![3], vec![1.0; 3]).unwrap();
        }
        params
    }

    #[test]
    fn input_channels_must_be_the_features_and_levels() {
        let err = Bottleneck::from_params(&mut params(7), "head", 4, &[2, 2], true).unwrap_err().to_string();
        assert!(err.contains("head.conv.weight") && err.contains("8 input channels"), "{err}");
        let head = Bottleneck::from_params(&mut params(8), "head", 4, &[2, 2], true).unwrap();
        let x = Tensor::zeros(Shape::new(1, 4, 5, 5).unwrap());
        let one_level = [Tensor::zeros(Shape::new(1, 2, 1, 1).unwrap())];
        let err = head.forward(&x, &one_level).unwrap_err().to_string();
        assert!(err.contains("2 pyramid levels, got 1"), "{err}");
    }
}
