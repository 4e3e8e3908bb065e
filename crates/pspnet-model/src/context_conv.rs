//! The head's 3x3 convolution (+ batch-norm + ReLU) that fuses the features
//! with their context: a convolution over the pyramid's concatenation
//! `[x, up(level_1), ..., up(level_k)]`, computed without building it.
//!
//! A convolution over concatenated channels is the sum of convolutions over
//! each part. The part over `x` is an ordinary convolution; each level's
//! part convolves a bilinear upsampling of a map of at most 6x6 bins, which
//! [`UpsampledConv`] computes at the level's own size. In PSPNet-50 the
//! levels are half of the head's 4096 input channels, and the head was 42%
//! of the network's arithmetic.

use ndarray::s;
use pspnet_kernels::{Conv2d, ConvSpec, KernelError, UpsampledConv};
use pspnet_nn::{Layer, ParamSource, batch_norm};
use pspnet_tensor::{Shape, Tensor};

use crate::ModelError;

/// See the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct ContextConv {
    /// The part over the features, carrying the batch-norm and the ReLU,
    /// which it applies after adding the levels' parts.
    features: Conv2d,
    /// One part per level, its weights multiplied by the batch-norm's scale.
    levels: Vec<UpsampledConv>,
    /// Each level's grid side, for its shape.
    bins: Vec<usize>,
}

impl ContextConv {
    /// Reads `conv.weight` (its input channels: `features`, then each of
    /// `levels`) and `bn.*` under `source`; `bins` are the levels' grid
    /// sides and `align_corners` the pyramid's upsampling convention.
    pub(crate) fn build(
        source: &mut ParamSource,
        features: usize,
        levels: &[usize],
        bins: &[usize],
        align_corners: bool,
    ) -> Result<Self, ModelError> {
        let outs = source.dim("conv.weight", 0).or_else(|| source.dim("bn.weight", 0)).unwrap_or(0);
        let ins = features + levels.iter().sum::<usize>();
        let weight = source.take_tensor4("conv.weight", [outs, ins, 3, 3])?;
        let [_, _, kh, kw] = weight.shape().dims();
        let bn = batch_norm(&mut source.at("bn"), outs)?;
        let (scale, _) = bn.scale_shift();
        let spec = ConvSpec::default().padding(1);
        let options = source.options();
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
            levels_parts.push(UpsampledConv::new(&w, spec, align_corners, options)?);
            c0 += c;
        }
        let features = Conv2d::with_options(part(0..features)?, spec, options)?.with_batch_norm(&bn)?.with_relu(true);
        Ok(ContextConv { features, levels: levels_parts, bins: bins.to_vec() })
    }

    /// Output channels.
    pub(crate) fn out_channels(&self) -> usize {
        self.features.weight_dims()[0]
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
}

/// The convolution as one layer over the features: the levels' shapes
/// follow from the features' and the bins.
impl Layer for ContextConv {
    fn output_shape(&self, input: Shape) -> Result<Shape, KernelError> {
        self.features.output_shape(input)
    }

    /// The whole convolution over the concatenation, whatever shortcut computes it.
    fn flops(&self, input: Shape) -> Result<u64, KernelError> {
        let mut total = Layer::flops(&self.features, input)?;
        for (conv, &bin) in self.levels.iter().zip(&self.bins) {
            let level = input.with_c(conv.in_channels())?.with_hw(bin, bin)?;
            total += conv.flops(level, [input.h(), input.w()])?;
        }
        Ok(total)
    }

    /// Weights and batch-norm, as the checkpoint counts them.
    fn parameters(&self) -> usize {
        self.features.parameters() + self.levels.iter().map(UpsampledConv::parameters).sum::<usize>()
    }

    fn visit_convs(&mut self, visit: &mut dyn FnMut(&mut Conv2d)) {
        visit(&mut self.features);
        self.levels.iter_mut().for_each(|level| visit(level.mix_mut()));
    }
}

#[cfg(test)]
mod tests {
    use pspnet_kernels::ConvOptions;
    use pspnet_nn::{Misshaped, ParamStore};
    use pspnet_tensor::Params;

    use super::*;

    fn params(in_channels: usize) -> Params {
        let mut params = Params::new();
        params.insert("head.conv.weight", vec![3, in_channels, 3, 3], vec![0.5; 3 * in_channels * 9]).unwrap();
        for name in ["weight", "bias", "running_mean", "running_var"] {
            params.insert(format!("head.bn.{name}"), vec![3], vec![1.0; 3]).unwrap();
        }
        params
    }

    fn build(in_channels: usize) -> (Result<ContextConv, ModelError>, ParamStore) {
        let mut store = ParamStore::new(params(in_channels), ConvOptions::default());
        let head = ContextConv::build(&mut store.root().at("head"), 4, &[2, 2], &[1, 2], true);
        (head, store)
    }

    #[test]
    fn input_channels_must_be_the_features_and_levels() {
        let (_, store) = build(7);
        let expected =
            Misshaped { name: "head.conv.weight".into(), found: vec![3, 7, 3, 3], expected: vec![3, 8, 3, 3] };
        assert_eq!(store.finish().misshaped, [expected]);
        let (head, store) = build(8);
        assert!(store.finish().is_empty());
        let x = Tensor::zeros(Shape::new(1, 4, 5, 5).unwrap());
        let one_level = [Tensor::zeros(Shape::new(1, 2, 1, 1).unwrap())];
        let err = head.unwrap().forward(&x, &one_level).unwrap_err().to_string();
        assert!(err.contains("2 pyramid levels, got 1"), "{err}");
    }
}
