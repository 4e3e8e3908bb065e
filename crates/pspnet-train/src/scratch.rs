//! A network from nothing: the parameter shapes of a published layout's
//! PSPNet at a depth, for `--layout L --depth D` (every parameter then
//! initialised fresh). The widths are the references', for a first stage
//! of `w` = 64 planes: semseg's stem w-w-2w, mmsegmentation's w/2-w/2-w;
//! stages of w, 2w, 4w, 8w planes; the pyramid's reductions to C/4
//! (semseg) or 8w / 2w (mmsegmentation with bottleneck / basic blocks); the
//! head and the auxiliary head as each reference builds them.

use pspnet_model::{Layout, ModelSpec, Normalization};
use pspnet_ppm::{Pooling, PyramidPoolingConfig};
use pspnet_resnet::{BlockKind, DilationRule, ResNetConfig};
use pspnet_tensor::Params;

use crate::TrainError;

/// The choices of a from-scratch network (the paper's ablation knobs).
#[derive(Debug, Clone, PartialEq)]
pub struct Scratch {
    /// `Layout::Semseg` or `Layout::Mmseg`.
    pub layout: Layout,
    /// ResNet depth: 18, 34, 50, 101 or 152.
    pub depth: usize,
    /// Planes of the first stage (64 in the published networks); every
    /// other width scales with it.
    pub width: usize,
    /// Number of classes.
    pub classes: usize,
    /// Pyramid bins.
    pub bins: Vec<usize>,
    /// Average or max pooling in the pyramid.
    pub pooling: Pooling,
    /// The pyramid's 1x1 dimension reductions (false: the paper's ablation
    /// without them, the head taking every pooled channel).
    pub reduction: bool,
    /// Backbone output stride: 8, 16 or 32.
    pub output_stride: usize,
}

/// Zero parameters of the network `s` describes, under canonical names,
/// with its spec.
pub fn scratch(s: &Scratch) -> Result<(Params, ModelSpec), TrainError> {
    let semseg = match s.layout {
        Layout::Semseg => true,
        Layout::Mmseg => false,
        other => return Err(TrainError::Config(format!("--layout {}: semseg or mmseg", other.name()))),
    };
    let mut backbone = ResNetConfig::for_depth(s.depth).map_err(|e| TrainError::Config(e.to_string()))?;
    backbone.output_stride = s.output_stride;
    backbone.dilation_rule = if semseg { DilationRule::EveryBlock } else { DilationRule::Contract };
    let mut params = Params::new();
    let w = s.width;
    let stem = if semseg { [w, w, 2 * w] } else { [w / 2, w / 2, w] };
    let mut channels = 3;
    for (i, &width) in stem.iter().enumerate() {
        conv_bn(&mut params, &format!("backbone.stem.{i}"), "conv.weight", "bn", [width, channels, 3])?;
        channels = width;
    }
    let expansion = backbone.block.expansion();
    let kernels: &[usize] = match backbone.block {
        BlockKind::Basic => &[3, 3],
        BlockKind::Bottleneck => &[1, 3, 1],
    };
    let geometry = backbone.stage_geometry().map_err(|e| TrainError::Config(e.to_string()))?;
    let mut stage3 = 0;
    for (stage, (&(stride, _), blocks)) in geometry.iter().zip(backbone.layers).enumerate() {
        let planes = w << stage;
        for b in 0..blocks {
            let prefix = format!("backbone.layer{}.{b}", stage + 1);
            let mut inner = channels;
            for (j, &k) in kernels.iter().enumerate() {
                let out = if j + 1 == kernels.len() { planes * expansion } else { planes };
                conv_bn(
                    &mut params,
                    &prefix,
                    &format!("conv{}.weight", j + 1),
                    &format!("bn{}", j + 1),
                    [out, inner, k],
                )?;
                inner = out;
            }
            if b == 0 && (stride != 1 || channels != planes * expansion) {
                let shortcut = format!("{prefix}.downsample");
                conv_bn(&mut params, &shortcut, "conv.weight", "bn", [planes * expansion, channels, 1])?;
            }
            channels = planes * expansion;
        }
        if stage == 2 {
            stage3 = channels;
        }
    }
    let features = channels;
    let bottleneck = backbone.block == BlockKind::Bottleneck;
    let reduction = if semseg {
        features / s.bins.len()
    } else if bottleneck {
        8 * w
    } else {
        2 * w
    };
    let level = if s.reduction { reduction } else { features };
    for i in (0..s.bins.len()).filter(|_| s.reduction) {
        conv_bn(&mut params, &format!("decode.ppm.{i}"), "conv.weight", "bn", [reduction, features, 1])?;
    }
    let head = if semseg { 8 * w } else { reduction };
    conv_bn(&mut params, "decode.bottleneck", "conv.weight", "bn", [head, features + s.bins.len() * level, 3])?;
    classifier(&mut params, "decode.classifier", [s.classes, head])?;
    let aux = if semseg || bottleneck { 4 * w } else { w };
    conv_bn(&mut params, "aux", "conv.weight", "bn", [aux, stage3, 3])?;
    classifier(&mut params, "aux.classifier", [s.classes, aux])?;
    let norm = Normalization::default();
    let spec = ModelSpec {
        layout: s.layout,
        backbone,
        ppm: PyramidPoolingConfig {
            bins: s.bins.clone(),
            pooling: s.pooling,
            align_corners: semseg,
            reduction: s.reduction,
        },
        classes: s.classes,
        mean: norm.mean,
        std: norm.std,
        class_names: None,
        palette: None,
    };
    Ok((params, spec))
}

/// Zeros of `shape` under `name`.
fn zeros(params: &mut Params, name: String, shape: Vec<usize>) -> Result<(), TrainError> {
    let len = shape.iter().product();
    params.insert(name, shape, vec![0.0; len]).map_err(|e| TrainError::Config(e.to_string()))
}

/// A convolution `{prefix}.{weight}` of `[out, in, k, k]` and its batch-norm
/// `{prefix}.{bn}.*`.
fn conv_bn(params: &mut Params, prefix: &str, weight: &str, bn: &str, [o, i, k]: [usize; 3]) -> Result<(), TrainError> {
    zeros(params, format!("{prefix}.{weight}"), vec![o, i, k, k])?;
    for stat in ["weight", "bias", "running_mean", "running_var"] {
        zeros(params, format!("{prefix}.{bn}.{stat}"), vec![o])?;
    }
    Ok(())
}

/// A 1x1 classifier `{prefix}.weight` of `[classes, in]` with its bias.
fn classifier(params: &mut Params, prefix: &str, [classes, ins]: [usize; 2]) -> Result<(), TrainError> {
    zeros(params, format!("{prefix}.weight"), vec![classes, ins, 1, 1])?;
    zeros(params, format!("{prefix}.bias"), vec![classes])
}
