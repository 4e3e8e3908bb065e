//! The authors' Caffe release (hszhao/PSPNet) mapped onto the canonical
//! parameters: which layer is which, and what the file says about the
//! network.
//!
//! The architecture comes from the layer names and blob shapes, and from the
//! layers' parameters where the file (or a deploy prototxt) has them:
//! - `conv1_{1,2,3}_3x3*` is the deep stem; its max pool rounds up (Caffe);
//! - `conv{S}_{B}_1x1_reduce | _3x3 | _1x1_increase | _1x1_proj` is block
//!   B of stage S; each convolution's batch-norm is `{name}/bn` with four
//!   blobs (slope, bias, mean, variance), its eps folded into the variance;
//! - `conv5_3_pool{N}_conv` is the pyramid branch of N bins, `conv5_4` the
//!   3x3 head, `conv6` the classifier, and `conv4_{blocks+1}` with
//!   `conv6_1` the auxiliary head;
//! - the stride of stage 3 sits on the 1x1 reduce (pspnet50) or the 3x3
//!   (pspnet101), as the layers' parameters say or, without them, as the
//!   released models have it; dilation 2 and 4 in every block of stages 4, 5.
//!
//! Two conventions differ from PyTorch's and are converted once, here: the
//! input is BGR (the first convolution's input channels are reversed), and
//! the pyramid is concatenated as `[x, pool6, pool3, pool2, pool1]` (the
//! head's input channels are reordered to `[x, pool1, pool2, pool3, pool6]`).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use pspnet_kernels::BN_EPS;
use pspnet_ppm::{Pooling, PyramidPoolingConfig};
use pspnet_resnet::{BlockKind, DilationRule, ResNetConfig, StemKind, StridePlacement};
use pspnet_tensor::Params;
use pspnet_weights::caffe::{CaffeLayer, CaffeNet, ConvolutionParam};

use crate::{Layout, ModelError, ModelSpec};

/// The Caffe models' normalisation: the ImageNet mean in 0..255, no scaling.
const MEAN: [f32; 3] = [123.68, 116.779, 103.939];

/// The stem's convolutions, in order.
const STEM: [&str; 3] = ["conv1_1_3x3_s2", "conv1_2_3x3", "conv1_3_3x3"];

/// A block's convolutions: Caffe's suffix, the canonical convolution and
/// batch-norm.
const BLOCK: [(&str, &str, &str); 4] = [
    ("1x1_reduce", "conv1", "bn1"),
    ("3x3", "conv2", "bn2"),
    ("1x1_increase", "conv3", "bn3"),
    ("1x1_proj", "downsample.conv", "downsample.bn"),
];

/// The heads' convolutions: Caffe's name, the canonical convolution and
/// batch-norm (`None`: a classifier with a bias).
const HEADS: [(&str, &str, Option<&str>); 3] = [
    ("conv5_4", "decode.bottleneck.conv", Some("decode.bottleneck.bn")),
    ("conv6", "decode.classifier", None),
    ("conv6_1", "aux.classifier", None),
];

/// The pyramid's bins when nothing else says (the released models').
const BINS: [usize; 4] = [1, 2, 3, 6];

/// `(stage, block)` of a block convolution `conv{S}_{B}_{suffix}`, 1-based.
fn block_conv(name: &str, suffix: &str) -> Option<(usize, usize)> {
    let (stage, rest) = name.strip_prefix("conv")?.split_once('_')?;
    let block = rest.strip_suffix(suffix)?.strip_suffix('_')?;
    let number = |s: &str| s.bytes().all(|b| b.is_ascii_digit()).then(|| s.parse().ok()).flatten();
    let stage = number(stage).filter(|s| (2..=5).contains(s))?;
    Some((stage, number(block).filter(|&b| b > 0)?))
}

/// The bin count of a pyramid branch `conv5_3_pool{N}_conv`.
fn pyramid_branch(name: &str) -> Option<usize> {
    name.strip_prefix("conv5_3_pool")?.strip_suffix("_conv")?.parse().ok().filter(|&n| n > 0)
}

/// How the file's layer names map onto canonical ones.
struct Names {
    /// The pyramid's bins, ascending: branch i is `decode.ppm.{i}`.
    bins: Vec<usize>,
    /// The auxiliary head's 3x3 convolution (`conv4_{blocks + 1}`).
    aux: String,
}

impl Names {
    /// The canonical convolution and batch-norm of a convolution layer.
    fn canonical(&self, name: &str) -> Option<(String, Option<String>)> {
        if let Some(i) = STEM.iter().position(|s| *s == name) {
            return Some((format!("backbone.stem.{i}.conv"), Some(format!("backbone.stem.{i}.bn"))));
        }
        for (suffix, conv, bn) in BLOCK {
            if let Some((stage, block)) = block_conv(name, suffix) {
                let prefix = format!("backbone.layer{}.{}", stage - 1, block - 1);
                return Some((format!("{prefix}.{conv}"), Some(format!("{prefix}.{bn}"))));
            }
        }
        if let Some(i) = pyramid_branch(name).and_then(|bin| self.bins.iter().position(|&b| b == bin)) {
            return Some((format!("decode.ppm.{i}.conv"), Some(format!("decode.ppm.{i}.bn"))));
        }
        if name == self.aux {
            return Some(("aux.conv".into(), Some("aux.bn".into())));
        }
        HEADS.iter().find(|h| h.0 == name).map(|(_, conv, bn)| (conv.to_string(), bn.map(str::to_string)))
    }

    /// The Caffe layer and blob a canonical parameter comes from (for errors).
    fn caffe(&self, canonical: &str) -> String {
        let (path, leaf) = canonical.rsplit_once('.').unwrap_or((canonical, ""));
        let bn_blob = ["weight", "bias", "running_mean", "running_var"].iter().position(|b| *b == leaf);
        let blob = |layer: String, bn: bool| match (bn, bn_blob) {
            (true, Some(i)) => format!("{layer}/bn blob {i} ({})", ["slope", "bias", "mean", "variance"][i]),
            _ => format!("{layer} blob {}", usize::from(leaf == "bias")),
        };
        let parts: Vec<&str> = path.split('.').collect();
        let named = match parts.as_slice() {
            ["backbone", "stem", i, kind] => {
                i.parse::<usize>().ok().and_then(|i| STEM.get(i)).map(|s| (s.to_string(), *kind))
            }
            ["backbone", layer, block, rest @ ..] => {
                let stage = layer.strip_prefix("layer").and_then(|s| s.parse::<usize>().ok());
                let block = block.parse::<usize>().ok();
                let rest = rest.join(".");
                let found = BLOCK.iter().find_map(|(suffix, conv, bn)| {
                    (rest == *conv || rest == *bn).then(|| (*suffix, if rest == *bn { "bn" } else { "conv" }))
                });
                match (stage, block, found) {
                    (Some(s), Some(b), Some((suffix, kind))) => {
                        Some((format!("conv{}_{}_{suffix}", s + 1, b + 1), kind))
                    }
                    _ => None,
                }
            }
            ["decode", "ppm", i, kind] => i
                .parse::<usize>()
                .ok()
                .and_then(|i| self.bins.get(i))
                .map(|bin| (format!("conv5_3_pool{bin}_conv"), *kind)),
            ["aux", kind @ ("conv" | "bn")] => Some((self.aux.clone(), *kind)),
            _ => HEADS.iter().find_map(|(name, conv, bn)| {
                let kind = if path == *conv {
                    "conv"
                } else if Some(path) == *bn {
                    "bn"
                } else {
                    return None;
                };
                Some((name.to_string(), kind))
            }),
        };
        named.map_or_else(|| canonical.to_string(), |(layer, kind)| blob(layer, kind == "bn"))
    }
}

/// A Caffe network's parameters under canonical names, with the spec its
/// layers describe. `architecture` supplies the layers' parameters (a deploy
/// prototxt, or the file itself); the blobs come from `weights`. Returns
/// the layers with blobs that no rule places, by name.
pub(crate) fn import(
    weights: CaffeNet,
    architecture: Option<&CaffeNet>,
    path: &Path,
) -> Result<(Params, ModelSpec, Vec<String>), ModelError> {
    let spec_error = |reason: String| ModelError::Spec { path: path.to_path_buf(), reason };
    let given = architecture.is_some();
    let architecture = architecture.unwrap_or(&weights);
    let arch: HashMap<&str, &CaffeLayer> = architecture.layers.iter().map(|l| (l.name.as_str(), l)).collect();
    let param = |name: &str| arch.get(name).and_then(|l| l.convolution.as_ref());
    let blocks = [2, 3, 4, 5].map(|stage| {
        let block = |l: &CaffeLayer| block_conv(&l.name, "1x1_reduce").filter(|(s, _)| *s == stage).map(|(_, b)| b);
        architecture.layers.iter().filter_map(block).max().unwrap_or(0)
    });
    if blocks.contains(&0) {
        return Err(spec_error(format!(
            "no `conv{{S}}_{{B}}_1x1_reduce` layers for stages {:?}: not a PSPNet of the Caffe release",
            [2, 3, 4, 5].iter().zip(blocks).filter(|(_, b)| *b == 0).map(|(s, _)| s).collect::<Vec<_>>()
        )));
    }
    let mut bins: Vec<usize> = architecture.layers.iter().filter_map(|l| pyramid_branch(&l.name)).collect();
    bins.sort_unstable();
    bins.dedup();
    let names = Names { bins, aux: format!("conv4_{}", blocks[2] + 1) };
    let stride = |name: &str| param(name).and_then(|p| p.stride[0]).unwrap_or(1);
    let stride_placement = match (stride("conv3_1_1x1_reduce"), stride("conv3_1_3x3")) {
        (2, _) => StridePlacement::Reduce,
        (_, 2) => StridePlacement::Middle,
        // The released pspnet50 strides on the reduce, the pspnet101s on the 3x3.
        _ if blocks == [3, 4, 6, 3] => StridePlacement::Reduce,
        _ => StridePlacement::Middle,
    };
    check_dilations(&weights, &param).map_err(spec_error)?;
    // What the weights are read with, taken before they are moved out.
    let eps: HashMap<String, f64> = weights
        .layers
        .iter()
        .filter_map(|l| Some((l.name.clone(), arch.get(l.name.as_str()).and_then(|a| a.bn_eps).or(l.bn_eps)?)))
        .map(|(name, eps)| (name, f64::from(eps)))
        .collect();
    let head = concat_order(&weights, architecture, &names);
    // With a prototxt, the weights of layers it lacks are unexpected, but
    // for the auxiliary head (training-time layers a deploy file omits).
    let described: Option<HashSet<String>> = given.then(|| arch.keys().map(|k| k.to_string()).collect());
    let described = |name: &str| {
        let conv = name.strip_suffix("/bn").unwrap_or(name);
        described.as_ref().is_none_or(|d| d.contains(name)) || conv == names.aux || conv == "conv6_1"
    };

    let mut params = Params::new();
    let mut insert = |name: String, shape: Vec<usize>, data: Vec<f32>| {
        params.insert(name, shape, data).map_err(|e| ModelError::Params { path: path.to_path_buf(), source: e })
    };
    let mut unmatched = Vec::new();
    let mut classes = None;
    for layer in weights.layers.into_iter().filter(|l| !l.blobs.is_empty()) {
        if !described(&layer.name) {
            unmatched.push(layer.name);
            continue;
        }
        if let Some(conv) = layer.name.strip_suffix("/bn") {
            let Some((_, Some(bn))) = names.canonical(conv) else {
                unmatched.push(layer.name);
                continue;
            };
            let eps = eps.get(&layer.name).copied().unwrap_or(BN_EPS);
            for (i, blob) in layer.blobs.into_iter().enumerate() {
                let Some(stat) = ["weight", "bias", "running_mean", "running_var"].get(i) else {
                    unmatched.push(format!("{} blob {i}", layer.name));
                    continue;
                };
                let mut data = blob.data;
                if *stat == "running_var" && eps != BN_EPS {
                    // The network adds BN_EPS; the layer's own eps is folded in.
                    data.iter_mut().for_each(|v| *v = (f64::from(*v) + eps - BN_EPS) as f32);
                }
                insert(format!("{bn}.{stat}"), vec![data.len()], data)?;
            }
            continue;
        }
        let Some((conv, _)) = names.canonical(&layer.name) else {
            unmatched.push(layer.name);
            continue;
        };
        for (i, blob) in layer.blobs.into_iter().enumerate() {
            match i {
                0 => {
                    let mut data = blob.data;
                    if layer.name == STEM[0] {
                        reverse_input_channels(&mut data, &blob.shape);
                    }
                    if layer.name == "conv5_4" {
                        data = pyramid_order(data, &blob.shape, &head)
                            .map_err(|reason| spec_error(format!("conv5_4: {reason}")))?;
                    }
                    if layer.name == "conv6" {
                        classes = blob.shape.first().copied();
                    }
                    insert(format!("{conv}.weight"), blob.shape, data)?;
                }
                1 => insert(format!("{conv}.bias"), vec![blob.data.len()], blob.data)?,
                _ => unmatched.push(format!("{} blob {i}", layer.name)),
            }
        }
    }
    let classes = classes.ok_or_else(|| spec_error("no `conv6` classifier layer with a weight blob".into()))?;
    let spec = ModelSpec {
        layout: Layout::Caffe,
        backbone: ResNetConfig {
            block: BlockKind::Bottleneck,
            layers: blocks,
            stem: StemKind::Deep,
            output_stride: 8,
            dilation_rule: DilationRule::EveryBlock,
            avg_down: false,
            stride_placement,
            pool_ceil: true,
        },
        ppm: PyramidPoolingConfig {
            bins: if names.bins.is_empty() { BINS.to_vec() } else { names.bins.clone() },
            pooling: Pooling::Average,
            align_corners: true,
            reduction: true,
        },
        classes,
        mean: MEAN,
        std: [1.0; 3],
        class_names: None,
        palette: None,
    };
    Ok((params, spec, unmatched))
}

/// The file's name of a canonical parameter, for error reports.
pub(crate) fn source_name(canonical: &str) -> String {
    Names { bins: BINS.to_vec(), aux: "conv4_{blocks + 1}".into() }.caffe(canonical)
}

/// Refuses stated geometry this network does not compute: stages 4 and 5
/// dilate their 3x3s by 2 and 4 in every block and do not stride.
fn check_dilations<'a>(
    weights: &CaffeNet,
    param: &impl Fn(&str) -> Option<&'a ConvolutionParam>,
) -> Result<(), String> {
    for layer in &weights.layers {
        let Some((stage @ (4 | 5), _)) = block_conv(&layer.name, "3x3") else { continue };
        let Some(p) = param(&layer.name) else { continue };
        let want = if stage == 4 { 2 } else { 4 };
        let (dilation, stride, pad) = (p.dilation[0].unwrap_or(1), p.stride[0].unwrap_or(1), p.pad[0].unwrap_or(0));
        if (dilation, stride, pad) != (want, 1, want) {
            return Err(format!(
                "{}: dilation {dilation}, stride {stride}, pad {pad}; PSPNet's stage {stage} has {want}, 1, {want}",
                layer.name
            ));
        }
    }
    Ok(())
}

/// Reverses the input channels of an `O x 3 x kh x kw` weight (BGR to RGB).
fn reverse_input_channels(data: &mut [f32], shape: &[usize]) {
    let [_, 3, kh, kw] = *shape else { return };
    let plane = kh * kw;
    for filter in data.chunks_exact_mut(3 * plane) {
        let (b, rest) = filter.split_at_mut(plane);
        b.swap_with_slice(&mut rest[plane..]);
    }
}

/// The pyramid's concatenation in the order the file makes it: each part's
/// bin (`None`: the features) and, for the branches, its width. From the
/// Concat layer (`architecture`'s, else the file's, followed through the
/// Split layers Caffe inserts), else the release's `[x, bins descending]`.
fn concat_order(weights: &CaffeNet, architecture: &CaffeNet, names: &Names) -> Vec<(Option<usize>, usize)> {
    let layers: Vec<&CaffeLayer> = architecture.layers.iter().chain(&weights.layers).collect();
    let mut splits: HashMap<&str, &str> = HashMap::new();
    for layer in layers.iter().filter(|l| l.kind == "Split") {
        if let Some(bottom) = layer.bottoms.first() {
            splits.extend(layer.tops.iter().map(|top| (top.as_str(), bottom.as_str())));
        }
    }
    let source = |blob: &str| -> String {
        let mut blob = blob.to_string();
        // Bounded: a file whose splits form a cycle is not followed forever.
        for _ in 0..splits.len() {
            match splits.get(blob.as_str()) {
                Some(up) => blob = up.to_string(),
                None => break,
            }
        }
        blob
    };
    // A branch's bin from its blob (`conv5_3_pool6_interp`); None: the features.
    let bin_of = |blob: &str| -> Option<usize> { blob.strip_prefix("conv5_3_pool")?.split('_').next()?.parse().ok() };
    let order: Vec<Option<usize>> = match layers.iter().find(|l| l.kind == "Concat") {
        Some(layer) => layer.bottoms.iter().map(|b| bin_of(&source(b))).collect(),
        None => std::iter::once(None).chain(names.bins.iter().rev().map(|&b| Some(b))).collect(),
    };
    let width = |bin: usize| {
        let name = format!("conv5_3_pool{bin}_conv");
        let layer = weights.layers.iter().find(|l| l.name == name);
        layer.and_then(|l| l.blobs.first()).and_then(|b| b.shape.first().copied()).unwrap_or(0)
    };
    order.into_iter().map(|bin| (bin, bin.map_or(0, width))).collect()
}

/// `conv5_4`'s weight with its input channels in the pyramid's order
/// (`[x, bins ascending]`) instead of the file's `order` (see [`concat_order`]).
fn pyramid_order(data: Vec<f32>, shape: &[usize], order: &[(Option<usize>, usize)]) -> Result<Vec<f32>, String> {
    let &[outs, ins, kh, kw] = shape else { return Err(format!("a weight of shape {shape:?}")) };
    let branches: usize = order.iter().filter(|(bin, _)| bin.is_some()).map(|(_, w)| w).sum();
    let mut segments = Vec::with_capacity(order.len());
    let mut start = 0;
    for &(bin, width) in order {
        let width = if bin.is_some() { width } else { ins.saturating_sub(branches) };
        segments.push((bin, start, width));
        start += width;
    }
    if start != ins {
        let bins: Vec<_> = order.iter().map(|(bin, _)| bin).collect();
        return Err(format!("the concatenation of {bins:?} gives {start} channels, the weight takes {ins}"));
    }
    segments.sort_by_key(|(bin, _, _)| bin.map_or(0, |b| b + 1));
    let plane = kh * kw;
    // Filter by filter, through one filter's scratch: the weight is large.
    let mut data = data;
    let mut scratch = Vec::with_capacity(ins * plane);
    for filter in data.chunks_exact_mut(ins * plane).take(outs) {
        scratch.clear();
        for &(_, start, width) in &segments {
            scratch.extend_from_slice(&filter[start * plane..(start + width) * plane]);
        }
        filter.copy_from_slice(&scratch);
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways() {
        let names = Names { bins: vec![1, 2, 3, 6], aux: "conv4_24".into() };
        let cases = [
            ("conv1_1_3x3_s2", "backbone.stem.0.conv", "backbone.stem.0.bn"),
            ("conv4_23_1x1_reduce", "backbone.layer3.22.conv1", "backbone.layer3.22.bn1"),
            ("conv3_1_1x1_proj", "backbone.layer2.0.downsample.conv", "backbone.layer2.0.downsample.bn"),
            ("conv5_3_pool6_conv", "decode.ppm.3.conv", "decode.ppm.3.bn"),
            ("conv4_24", "aux.conv", "aux.bn"),
            ("conv5_4", "decode.bottleneck.conv", "decode.bottleneck.bn"),
        ];
        for (caffe, conv, bn) in cases {
            assert_eq!(names.canonical(caffe), Some((conv.to_string(), Some(bn.to_string()))), "{caffe}");
            assert_eq!(names.caffe(&format!("{conv}.weight")), format!("{caffe} blob 0"));
            assert_eq!(names.caffe(&format!("{bn}.running_var")), format!("{caffe}/bn blob 3 (variance)"));
        }
        assert_eq!(names.canonical("conv6"), Some(("decode.classifier".into(), None)));
        assert_eq!(names.caffe("aux.classifier.bias"), "conv6_1 blob 1");
        for stranger in ["conv7", "conv4_x_3x3", "conv1_4_3x3", "conv5_3_pool4_conv", "fc1000"] {
            assert_eq!(names.canonical(stranger), None, "{stranger}");
        }
    }

    #[test]
    fn bgr_filters_become_rgb() {
        let mut w: Vec<f32> = (0..12).map(|v| v as f32).collect();
        reverse_input_channels(&mut w, &[2, 3, 1, 2]);
        assert_eq!(w, [4.0, 5.0, 2.0, 3.0, 0.0, 1.0, 10.0, 11.0, 8.0, 9.0, 6.0, 7.0]);
    }
}
