use std::time::{Duration, Instant};

use ndarray::Array3;
use pspnet_kernels::{Conv2d, ConvSpec, Precision, resize_bilinear, resize_bilinear_argmax};
use pspnet_nn::{Layer, Observer, ParamSource, classifier, conv_bn};
use pspnet_ppm::{PyramidPooling, PyramidPoolingConfig};
use pspnet_resnet::{Features, ResNet, ResNetConfig};
use pspnet_tensor::{Shape, Tensor};

use crate::ModelError;
use crate::context_conv::ContextConv;

/// Time spent in each named stage of a forward pass, in order.
pub type StageTimes = Vec<(&'static str, Duration)>;

/// Everything that determines a PSPNet beyond its weights' shapes.
#[derive(Debug, Clone, PartialEq)]
pub struct PspNetConfig {
    /// The backbone.
    pub backbone: ResNetConfig,
    /// The pyramid (its `align_corners` also governs the final upsampling).
    pub ppm: PyramidPoolingConfig,
}

/// A PSPNet with batch-norm folded into every convolution.
///
/// Parameters use the project's canonical names: `backbone.*` (see
/// [`ResNet::build`]), `decode.ppm.{i}.conv.weight` / `.bn.*`,
/// `decode.bottleneck.conv.weight` / `.bn.*`, `decode.classifier.{weight,bias}`,
/// and optionally `aux.conv.weight` / `aux.bn.*` / `aux.classifier.{weight,bias}`.
#[derive(Debug, Clone)]
pub struct PspNet {
    config: PspNetConfig,
    backbone: ResNet,
    ppm: PyramidPooling,
    context: ContextConv,
    classifier: Conv2d,
    aux: Option<[Conv2d; 2]>,
}

/// Every intermediate result of one forward pass, for cross-checking
/// against a reference implementation stage by stage.
#[derive(Debug, Clone)]
pub struct Trace {
    /// Backbone outputs (stem, stages 1-4).
    pub features: Features,
    /// Stage 4 concatenated with its pyramid levels.
    pub ppm: Tensor,
    /// After the 3x3 head convolution (+ BN + ReLU).
    pub head: Tensor,
    /// Classifier output at feature resolution.
    pub logits_low: Tensor,
    /// The auxiliary head's logits at feature resolution, if it exists.
    pub aux_logits: Option<Tensor>,
    /// Logits upsampled to the input resolution.
    pub logits: Tensor,
}

impl PspNet {
    /// Builds the network from canonical parameters under `source`, taking
    /// each out as it is packed (so the two copies never coexist in full).
    /// Missing and misshaped parameters are noted in `source`'s store.
    pub fn build(config: PspNetConfig, source: &mut ParamSource) -> Result<Self, ModelError> {
        let backbone = ResNet::build(&config.backbone, &mut source.at("backbone"))?;
        let [_, _, stage3, features] = backbone.out_channels();
        let ppm = PyramidPooling::build(config.ppm.clone(), &mut source.at("decode.ppm"), features)?;
        let levels = ppm.level_channels(features);
        let context = ContextConv::build(
            &mut source.at("decode.bottleneck"),
            features,
            &levels,
            &config.ppm.bins,
            config.ppm.align_corners,
        )?;
        let classes =
            source.dim("decode.classifier.weight", 0).or_else(|| source.dim("decode.classifier.bias", 0)).unwrap_or(0);
        let classifier = classifier(&mut source.at("decode.classifier"), context.out_channels(), classes)?;
        let aux = if source.contains("aux.conv.weight") {
            let spec = ConvSpec::default().padding(1);
            let conv = conv_bn(&mut source.at("aux"), "conv.weight", "bn", stage3, None, 3, spec)?.with_relu(true);
            let aux_classifier = self::classifier(&mut source.at("aux.classifier"), conv.weight_dims()[0], classes)?;
            Some([conv, aux_classifier])
        } else {
            None
        };
        Ok(PspNet { config, backbone, ppm, context, classifier, aux })
    }

    /// The configuration.
    pub fn config(&self) -> &PspNetConfig {
        &self.config
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classifier.weight_dims()[0]
    }

    /// Whether the auxiliary head was built.
    pub fn has_aux(&self) -> bool {
        self.aux.is_some()
    }

    /// Floating-point operations of the convolutions (2 per multiply-add)
    /// for one forward pass on an input shape, auxiliary head excluded.
    pub fn flops(&self, input: Shape) -> Result<u64, ModelError> {
        let features = self.backbone.output_shape(input)?;
        let head = self.context.output_shape(features)?;
        Ok(self.backbone.flops(input)?
            + self.ppm.flops(features)?
            + self.context.flops(features)?
            + Layer::flops(&self.classifier, head)?)
    }

    /// Parameters used at inference (auxiliary head excluded).
    pub fn parameters(&self) -> usize {
        self.backbone.parameters() + self.ppm.parameters() + self.context.parameters() + self.classifier.parameters()
    }

    /// Sets every convolution's arithmetic ([`Precision::Bf16`]: bf16
    /// operands, f32 sums), whatever dtype the weights were stored in.
    pub fn set_precision(&mut self, precision: Precision) {
        let visit = &mut |conv: &mut Conv2d| conv.set_precision(precision);
        self.backbone.visit_convs(visit);
        self.ppm.visit_convs(visit);
        self.context.visit_convs(visit);
        self.classifier.visit_convs(visit);
        self.aux.iter_mut().flatten().for_each(|conv| conv.visit_convs(visit));
    }

    /// Logits at the input resolution for a normalised `N x 3 x H x W` batch.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        self.forward_observed(x, &mut |_, _| {})
    }

    /// [`PspNet::forward`], calling `observe` as each stage finishes:
    /// `stem`, `stage1`-`stage4` with their outputs, `ppm` (whose levels
    /// stay at their own size: no output), `head` (the 3x3 convolution and
    /// the classifier) with the 3x3 convolution's output, `upsample` with
    /// the logits. Each intermediate result is freed as soon as the next
    /// one exists, unless the observer keeps a copy.
    pub fn forward_observed(&self, x: &Tensor, observe: &mut Observer) -> Result<Tensor, ModelError> {
        let logits = self.upsample(&self.logits_low(x, observe)?, x)?;
        observe("upsample", Some(&logits));
        Ok(logits)
    }

    /// Logits at feature resolution brought to the input `x`'s size.
    fn upsample(&self, low: &Tensor, x: &Tensor) -> Result<Tensor, ModelError> {
        Ok(resize_bilinear(low, [x.shape().h(), x.shape().w()], self.config.ppm.align_corners)?)
    }

    /// The forward pass keeping a copy of every intermediate result, the
    /// auxiliary head's included. The pyramid's concatenation, which the
    /// forward pass never builds, is assembled from the kept stage 4.
    pub fn trace(&self, x: &Tensor) -> Result<Trace, ModelError> {
        let mut kept = Vec::with_capacity(6);
        let logits_low = self.logits_low(x, &mut |_, out| kept.extend(out.cloned()))?;
        let logits = self.upsample(&logits_low, x)?;
        let head = kept.pop().expect("the head's output");
        let stages = kept.split_off(1);
        let features = Features { stem: kept.remove(0), stages };
        let ppm = self.ppm.forward(&features.stages[3])?;
        let aux_logits = match &self.aux {
            Some([conv, cls]) => Some(cls.forward(&conv.forward(&features.stages[2])?)?),
            None => None,
        };
        Ok(Trace { features, ppm, head, logits_low, aux_logits, logits })
    }

    /// [`PspNet::forward`] with the time spent in each stage: stem,
    /// stage1-4, ppm, head (3x3 convolution and classifier), upsample.
    pub fn profile(&self, x: &Tensor) -> Result<(Tensor, StageTimes), ModelError> {
        let mut times = Vec::with_capacity(8);
        let mut last = Instant::now();
        let logits = self.forward_observed(x, &mut |stage, _| {
            times.push((stage, last.elapsed()));
            last = Instant::now();
        })?;
        Ok((logits, times))
    }

    /// Class labels at the input resolution (`N x H x W`): the argmax of
    /// [`PspNet::forward`]'s logits, computed without materialising them.
    pub fn labels(&self, x: &Tensor) -> Result<Array3<u32>, ModelError> {
        let low = self.logits_low(x, &mut |_, _| {})?;
        Ok(resize_bilinear_argmax(&low, [x.shape().h(), x.shape().w()], self.config.ppm.align_corners)?)
    }

    /// Logits at feature resolution. The pyramid's concatenation is never
    /// built: the head reads its levels at their own size.
    fn logits_low(&self, x: &Tensor, observe: &mut Observer) -> Result<Tensor, ModelError> {
        let features = self.backbone.forward_observed(x, observe)?;
        let levels = self.ppm.levels(&features)?;
        observe("ppm", None);
        let head = self.context.forward(&features, &levels)?;
        drop(features);
        let logits_low = self.classifier.forward(&head)?;
        observe("head", Some(&head));
        Ok(logits_low)
    }
}
