use std::time::{Duration, Instant};

use ndarray::Array3;
use pspnet_kernels::{Conv2d, ConvSpec, Precision, resize_bilinear, resize_bilinear_argmax};
use pspnet_ppm::{PyramidPooling, PyramidPoolingConfig};
use pspnet_resnet::{Features, ResNet, ResNetConfig};
use pspnet_tensor::{Params, Shape, Tensor};

use crate::bottleneck::Bottleneck;
use crate::{ModelError, Normalization};

/// Time spent in each named stage of a forward pass, in order.
pub type StageTimes = Vec<(&'static str, Duration)>;

/// Everything that determines a PSPNet beyond its weights' shapes.
#[derive(Debug, Clone, PartialEq)]
pub struct PspNetConfig {
    /// The backbone.
    pub backbone: ResNetConfig,
    /// The pyramid (its `align_corners` also governs the final upsampling).
    pub ppm: PyramidPoolingConfig,
    /// Input normalisation.
    pub normalization: Normalization,
}

/// A PSPNet with batch-norm folded into every convolution.
///
/// Parameters use the project's canonical names: `backbone.*` (see
/// [`ResNet::from_params`]), `decode.ppm.{i}.conv.weight` / `.bn.*`,
/// `decode.bottleneck.conv.weight` / `.bn.*`, `decode.classifier.{weight,bias}`,
/// and optionally `aux.conv.weight` / `aux.bn.*` / `aux.classifier.{weight,bias}`.
#[derive(Debug, Clone)]
pub struct PspNet {
    config: PspNetConfig,
    backbone: ResNet,
    ppm: PyramidPooling,
    bottleneck: Bottleneck,
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

/// A 1x1 classifier with bias from `{prefix}.weight` / `{prefix}.bias`.
fn classifier(params: &mut Params, prefix: &str) -> Result<Conv2d, ModelError> {
    let weight = params.take_tensor4(&format!("{prefix}.weight"))?;
    let bias = params.take_vector(&format!("{prefix}.bias"), weight.shape().n())?;
    Ok(Conv2d::from_weight(weight, ConvSpec::default())?.with_bias(&bias)?)
}

/// A 3x3 conv + BN + ReLU from `{prefix}.conv.weight` / `{prefix}.bn.*`.
fn conv3x3_bn_relu(params: &mut Params, prefix: &str) -> Result<Conv2d, ModelError> {
    let conv = Conv2d::from_params_bn(
        params,
        &format!("{prefix}.conv.weight"),
        &format!("{prefix}.bn"),
        ConvSpec::default().padding(1),
    )?;
    Ok(conv.with_relu(true))
}

impl PspNet {
    /// Builds the network from canonical parameters, taking each out of
    /// `params` as it is packed (so the two copies never coexist in full);
    /// what is left over is unused by the network.
    pub fn from_params(config: PspNetConfig, params: &mut Params) -> Result<Self, ModelError> {
        let backbone = ResNet::from_params(&config.backbone, params, "backbone")?;
        let ppm = PyramidPooling::from_params(config.ppm.clone(), params, "decode.ppm")?;
        let features = backbone.out_channels()[3];
        let levels = ppm.level_channels(features);
        let bottleneck =
            Bottleneck::from_params(params, "decode.bottleneck", features, &levels, config.ppm.align_corners)?;
        let classifier = classifier(params, "decode.classifier")?;
        let aux = if params.contains("aux.conv.weight") {
            Some([conv3x3_bn_relu(params, "aux")?, self::classifier(params, "aux.classifier")?])
        } else {
            None
        };
        Ok(PspNet { config, backbone, ppm, bottleneck, classifier, aux })
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
        let (backbone, stages) = self.backbone.flops(input)?;
        let features = stages[3];
        let ppm = self.ppm.flops(features)?;
        let (head, head_out) = self.bottleneck.flops(features, &self.ppm.level_shapes(features)?)?;
        let (classifier, _) = self.classifier.flops(head_out)?;
        Ok(backbone + ppm + head + classifier)
    }

    /// Parameters used at inference (auxiliary head excluded).
    pub fn parameters(&self) -> usize {
        self.backbone.parameters() + self.ppm.parameters() + self.bottleneck.parameters() + self.classifier.parameters()
    }

    /// Sets every convolution's arithmetic ([`Precision::Bf16`]: bf16
    /// operands, f32 sums), whatever dtype the weights were stored in.
    pub fn set_precision(&mut self, precision: Precision) {
        self.bottleneck.set_precision(precision);
        let head = std::iter::once(&mut self.classifier).chain(self.aux.iter_mut().flatten());
        for conv in self.backbone.convs_mut().chain(self.ppm.convs_mut()).chain(head) {
            conv.set_precision(precision);
        }
    }

    /// Logits at the input resolution for a normalised `N x 3 x H x W` batch.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        self.logits(x, &mut |_| {})
    }

    /// The forward pass keeping every intermediate result, auxiliary head included.
    pub fn trace(&self, x: &Tensor) -> Result<Trace, ModelError> {
        let features = self.backbone.forward(x)?;
        let ppm = self.ppm.forward(&features.stages[3])?;
        let head = self.bottleneck.forward(&features.stages[3], &self.ppm.levels(&features.stages[3])?)?;
        let logits_low = self.classifier.forward(&head)?;
        let aux_logits = match &self.aux {
            Some([conv, cls]) => Some(cls.forward(&conv.forward(&features.stages[2])?)?),
            None => None,
        };
        let logits = resize_bilinear(&logits_low, [x.shape().h(), x.shape().w()], self.config.ppm.align_corners)?;
        Ok(Trace { features, ppm, head, logits_low, aux_logits, logits })
    }

    /// [`PspNet::forward`] with the time spent in each stage: stem,
    /// stage1-4, ppm, head (3x3 convolution and classifier), upsample.
    pub fn profile(&self, x: &Tensor) -> Result<(Tensor, StageTimes), ModelError> {
        let mut times = Vec::with_capacity(8);
        let mut last = Instant::now();
        let logits = self.logits(x, &mut |stage| {
            times.push((stage, last.elapsed()));
            last = Instant::now();
        })?;
        Ok((logits, times))
    }

    /// Class labels at the input resolution (`N x H x W`): the argmax of
    /// [`PspNet::forward`]'s logits, computed without materialising them.
    pub fn labels(&self, x: &Tensor) -> Result<Array3<u32>, ModelError> {
        let low = self.logits_low(x, &mut |_| {})?;
        Ok(resize_bilinear_argmax(&low, [x.shape().h(), x.shape().w()], self.config.ppm.align_corners)?)
    }

    /// Logits at the input resolution, keeping only what the next step reads.
    fn logits(&self, x: &Tensor, done: &mut dyn FnMut(&'static str)) -> Result<Tensor, ModelError> {
        let low = self.logits_low(x, done)?;
        let logits = resize_bilinear(&low, [x.shape().h(), x.shape().w()], self.config.ppm.align_corners)?;
        done("upsample");
        Ok(logits)
    }

    /// Logits at feature resolution; each intermediate result is freed as
    /// soon as the next one exists. The pyramid's concatenation is never
    /// built: the head reads its levels at their own size.
    fn logits_low(&self, x: &Tensor, done: &mut dyn FnMut(&'static str)) -> Result<Tensor, ModelError> {
        let features = self.backbone.forward_last(x, done)?;
        let levels = self.ppm.levels(&features)?;
        done("ppm");
        let head = self.bottleneck.forward(&features, &levels)?;
        drop(features);
        let logits_low = self.classifier.forward(&head)?;
        done("head");
        Ok(logits_low)
    }
}
