//! The published PSPNet checkpoint layouts, mapped onto the project's
//! canonical parameter names, and what their weights say about the network.
//!
//! Detection looks at which keys exist: `layer0.*` + `ppm.features.*` is
//! hszhao/semseg, `backbone.*` + `decode_head.psp_modules.*` is
//! mmsegmentation, `backbone.*` + `decode.ppm.*` is our own safetensors
//! layout. A table of rules renames each key; the architecture (block type,
//! depth, stem, widths, bins, classes) is read off the renamed weights, and
//! the full list of keys that architecture needs, with their shapes, is
//! checked against what the file holds. Missing, unexpected and misshaped
//! keys are reported together.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use pspnet_ppm::{Pooling, PyramidPoolingConfig};
use pspnet_resnet::{BlockKind, DilationRule, ResNetConfig, StemKind};
use pspnet_tensor::Params;

use crate::{StateDict, Value, WeightsError};

/// Which reference implementation's key names a checkpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// hszhao/semseg, the official PyTorch PSPNet.
    Semseg,
    /// open-mmlab mmsegmentation's `pspnet_r*-d8` models.
    Mmseg,
    /// This project's safetensors layout (canonical names + metadata).
    Native,
}

impl Layout {
    /// The layout's name.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Semseg => "semseg",
            Layout::Mmseg => "mmseg",
            Layout::Native => "pspnet-rs",
        }
    }
}

/// Everything the forward pass needs besides the weights.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// The layout the weights came from.
    pub layout: Layout,
    /// The backbone.
    pub backbone: ResNetConfig,
    /// The pyramid pooling module (its `align_corners` also governs the final upsampling).
    pub ppm: PyramidPoolingConfig,
    /// Number of classes.
    pub classes: usize,
    /// Input normalisation mean (R, G, B, in 0..255).
    pub mean: [f32; 3],
    /// Input normalisation standard deviation.
    pub std: [f32; 3],
    /// Class names, when the checkpoint records them.
    pub class_names: Option<Vec<String>>,
    /// Class colours, when the checkpoint records them.
    pub palette: Option<Vec<[u8; 3]>>,
}

/// What the weights cannot tell, supplied by the user instead of the
/// layout's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Bilinear corner convention of the PPM and the final upsampling.
    pub align_corners: Option<bool>,
    /// Pyramid bins (their count must match the checkpoint's branches).
    pub bins: Option<Vec<usize>>,
    /// Backbone output stride (8, 16 or 32).
    pub output_stride: Option<usize>,
}

/// One renaming rule: `from` and `to` are dotted patterns where `{}`
/// matches one segment and `{*}` the rest of the key (one or more segments).
struct Rule {
    from: &'static str,
    to: &'static str,
}

const fn rule(from: &'static str, to: &'static str) -> Rule {
    Rule { from, to }
}

const SEMSEG: &[Rule] = &[
    rule("layer0.0.weight", "backbone.stem.0.conv.weight"),
    rule("layer0.1.{*}", "backbone.stem.0.bn.{*}"),
    rule("layer0.3.weight", "backbone.stem.1.conv.weight"),
    rule("layer0.4.{*}", "backbone.stem.1.bn.{*}"),
    rule("layer0.6.weight", "backbone.stem.2.conv.weight"),
    rule("layer0.7.{*}", "backbone.stem.2.bn.{*}"),
    rule("layer{}.{}.downsample.0.weight", "backbone.layer{}.{}.downsample.conv.weight"),
    rule("layer{}.{}.downsample.1.{*}", "backbone.layer{}.{}.downsample.bn.{*}"),
    rule("layer{}.{}.{}.{*}", "backbone.layer{}.{}.{}.{*}"),
    rule("ppm.features.{}.1.weight", "decode.ppm.{}.conv.weight"),
    rule("ppm.features.{}.2.{*}", "decode.ppm.{}.bn.{*}"),
    rule("cls.0.weight", "decode.bottleneck.conv.weight"),
    rule("cls.1.{*}", "decode.bottleneck.bn.{*}"),
    rule("cls.4.{*}", "decode.classifier.{*}"),
    rule("aux.0.weight", "aux.conv.weight"),
    rule("aux.1.{*}", "aux.bn.{*}"),
    rule("aux.4.{*}", "aux.classifier.{*}"),
];

const MMSEG: &[Rule] = &[
    rule("backbone.stem.0.weight", "backbone.stem.0.conv.weight"),
    rule("backbone.stem.1.{*}", "backbone.stem.0.bn.{*}"),
    rule("backbone.stem.3.weight", "backbone.stem.1.conv.weight"),
    rule("backbone.stem.4.{*}", "backbone.stem.1.bn.{*}"),
    rule("backbone.stem.6.weight", "backbone.stem.2.conv.weight"),
    rule("backbone.stem.7.{*}", "backbone.stem.2.bn.{*}"),
    rule("backbone.conv1.weight", "backbone.stem.0.conv.weight"),
    rule("backbone.bn1.{*}", "backbone.stem.0.bn.{*}"),
    // ResNetV1d strided shortcuts: AvgPool2d at index 0, conv at 1, BN at 2.
    rule("backbone.layer{}.{}.downsample.2.{*}", "backbone.layer{}.{}.downsample.bn.{*}"),
    rule("backbone.layer{}.{}.downsample.0.weight", "backbone.layer{}.{}.downsample.conv.weight"),
    rule("backbone.layer{}.{}.downsample.1.weight", "backbone.layer{}.{}.downsample.{conv-or-bn}.weight"),
    rule("backbone.layer{}.{}.downsample.1.{*}", "backbone.layer{}.{}.downsample.bn.{*}"),
    rule("backbone.layer{}.{}.{}.{*}", "backbone.layer{}.{}.{}.{*}"),
    rule("decode_head.psp_modules.{}.1.conv.weight", "decode.ppm.{}.conv.weight"),
    rule("decode_head.psp_modules.{}.1.bn.{*}", "decode.ppm.{}.bn.{*}"),
    rule("decode_head.bottleneck.conv.weight", "decode.bottleneck.conv.weight"),
    rule("decode_head.bottleneck.bn.{*}", "decode.bottleneck.bn.{*}"),
    rule("decode_head.conv_seg.{*}", "decode.classifier.{*}"),
    rule("auxiliary_head.convs.0.conv.weight", "aux.conv.weight"),
    rule("auxiliary_head.convs.0.bn.{*}", "aux.bn.{*}"),
    rule("auxiliary_head.conv_seg.{*}", "aux.classifier.{*}"),
];

/// Matches `key` against `pattern`, returning the captures in order. A
/// segment may hold one `{}` between literal text (`layer{}`), where it
/// matches digits.
fn capture(pattern: &str, key: &str) -> Option<Vec<String>> {
    let (p, k): (Vec<&str>, Vec<&str>) = (pattern.split('.').collect(), key.split('.').collect());
    let mut captures = Vec::new();
    for (i, seg) in p.iter().enumerate() {
        if *seg == "{*}" {
            return (k.len() > i).then(|| {
                captures.push(k[i..].join("."));
                captures
            });
        }
        let part = k.get(i)?;
        match seg.split_once("{}") {
            Some((before, after)) => {
                let middle = part.strip_prefix(before)?.strip_suffix(after)?;
                // Inside a word (`layer{}`) the placeholder stands for an index.
                let word = !before.is_empty() || !after.is_empty();
                if middle.is_empty() || (word && !middle.bytes().all(|b| b.is_ascii_digit())) {
                    return None;
                }
                captures.push(middle.to_string());
            }
            None if part == seg => {}
            None => return None,
        }
    }
    (p.len() == k.len()).then_some(captures)
}

/// Fills the `{}` / `{*}` placeholders of `pattern` with `captures` in order.
fn fill(pattern: &str, captures: &[String]) -> String {
    let mut rest = captures.iter();
    pattern
        .split('.')
        .map(|seg| match seg.split_once("{}") {
            _ if seg == "{*}" => rest.next().cloned().unwrap_or_default(),
            Some((before, after)) => format!("{before}{}{after}", rest.next().map_or("", String::as_str)),
            None => seg.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The name a canonical parameter has in `layout` (for error reports; the
/// ResNetV1d shortcut variant is reported under the plain name).
fn source_name(layout: Layout, canonical: &str) -> String {
    let rules = match layout {
        Layout::Semseg => SEMSEG,
        Layout::Mmseg => MMSEG,
        Layout::Native => return canonical.to_string(),
    };
    rules
        .iter()
        .filter(|r| !r.from.contains("downsample.2") && !r.to.contains("{conv-or-bn}"))
        .find_map(|r| capture(r.to, canonical).map(|c| fill(r.from, &c)))
        .unwrap_or_else(|| canonical.to_string())
}

/// Detects the layout from the keys present.
pub fn detect(state: &StateDict) -> Option<Layout> {
    let has = |k: &str| state.get(k).is_some();
    if has("layer0.0.weight") && state.keys().any(|k| k.starts_with("ppm.features.")) {
        Some(Layout::Semseg)
    } else if state.keys().any(|k| k.starts_with("decode_head.psp_modules.")) {
        Some(Layout::Mmseg)
    } else if state.keys().any(|k| k.starts_with("decode.ppm.")) {
        Some(Layout::Native)
    } else {
        None
    }
}

/// Renames a checkpoint's tensors to canonical names (dropping batch-norm
/// step counters), converting them to `f32`. Keys no rule matches are returned.
fn rename(mut state: StateDict, layout: Layout, path: &Path) -> Result<(Params, Vec<String>, bool), WeightsError> {
    let rules = match layout {
        Layout::Semseg => SEMSEG,
        Layout::Mmseg => MMSEG,
        Layout::Native => &[],
    };
    let avg_down = state.keys().any(|k| k.contains(".downsample.2."));
    // In ResNetV1d only strided stages pool in the shortcut; there index 1
    // is the convolution, elsewhere it is the batch-norm.
    let pooled: HashSet<String> =
        state.keys().filter_map(|k| k.strip_suffix(".downsample.2.running_mean")).map(str::to_string).collect();
    let pools = |key: &str| key.split_once(".downsample.").is_some_and(|(block, _)| pooled.contains(block));
    let mut params = Params::new();
    let mut unmatched = Vec::new();
    let keys: Vec<String> = state.keys().map(str::to_string).collect();
    for key in keys.iter().map(String::as_str) {
        if key.ends_with("num_batches_tracked") {
            continue;
        }
        let target = if layout == Layout::Native {
            Some(key.to_string())
        } else {
            rules.iter().find_map(|r| capture(r.from, key).map(|c| fill(r.to, &c)))
        };
        let Some(target) = target else {
            unmatched.push(key.to_string());
            continue;
        };
        let target = target.replace("{conv-or-bn}", if pools(key) { "conv" } else { "bn" });
        let (shape, values) = state.take_f32(key).map_err(|e| e.in_file(path))?;
        params
            .insert(target, shape, values)
            .map_err(|e| WeightsError::Params { path: path.to_path_buf(), source: e })?;
    }
    Ok((params, unmatched, avg_down))
}

/// Shapes of every parameter a network needs: `(name, shape)`.
fn expected_params(spec: &ModelSpec, params: &Params) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    // A layer's width: its weight's first dimension, or its batch-norm's
    // length when the weight itself is the missing key.
    let out_of = |name: &str| {
        let bn = name.replace("conv.weight", "bn.weight").replace("conv1.weight", "bn1.weight");
        [name, bn.as_str()].iter().find_map(|n| params.get(n).ok().and_then(|p| p.shape().first().copied()))
    };
    let conv_bn = |out: &mut Vec<(String, Vec<usize>)>,
                   prefix: &str,
                   weight: &str,
                   bn: &str,
                   cin: usize,
                   cout: usize,
                   k: usize| {
        out.push((format!("{prefix}.{weight}"), vec![cout, cin, k, k]));
        for stat in ["weight", "bias", "running_mean", "running_var"] {
            out.push((format!("{prefix}.{bn}.{stat}"), vec![cout]));
        }
    };
    let mut channels = 3;
    let stems = match spec.backbone.stem {
        StemKind::Deep => vec![3, 3, 3],
        StemKind::Classic => vec![7],
    };
    for (i, k) in stems.into_iter().enumerate() {
        let name = format!("backbone.stem.{i}");
        let cout = out_of(&format!("{name}.conv.weight")).unwrap_or(0);
        conv_bn(&mut out, &name, "conv.weight", "bn", channels, cout, k);
        channels = cout;
    }
    let expansion = spec.backbone.block.expansion();
    let mut stage_channels = Vec::new();
    for (s, &blocks) in spec.backbone.layers.iter().enumerate() {
        for b in 0..blocks {
            let name = format!("backbone.layer{}.{b}", s + 1);
            let planes = out_of(&format!("{name}.conv1.weight")).unwrap_or(0);
            let kernels: &[usize] = match spec.backbone.block {
                BlockKind::Basic => &[3, 3],
                BlockKind::Bottleneck => &[1, 3, 1],
            };
            let mut cin = channels;
            for (j, &k) in kernels.iter().enumerate() {
                let cout = if j + 1 == kernels.len() { planes * expansion } else { planes };
                conv_bn(&mut out, &name, &format!("conv{}.weight", j + 1), &format!("bn{}", j + 1), cin, cout, k);
                cin = cout;
            }
            if b == 0
                && (channels != planes * expansion
                    || s == 1
                    || params.contains(&format!("{name}.downsample.conv.weight")))
            {
                conv_bn(&mut out, &name, "downsample.conv.weight", "downsample.bn", channels, planes * expansion, 1);
            }
            channels = planes * expansion;
        }
        stage_channels.push(channels);
    }
    let reduction = out_of("decode.ppm.0.conv.weight").unwrap_or(0);
    for i in 0..spec.ppm.bins.len() {
        conv_bn(&mut out, &format!("decode.ppm.{i}"), "conv.weight", "bn", channels, reduction, 1);
    }
    let head = out_of("decode.bottleneck.conv.weight").unwrap_or(0);
    conv_bn(&mut out, "decode.bottleneck", "conv.weight", "bn", channels + reduction * spec.ppm.bins.len(), head, 3);
    out.push(("decode.classifier.weight".into(), vec![spec.classes, head, 1, 1]));
    out.push(("decode.classifier.bias".into(), vec![spec.classes]));
    if params.contains("aux.conv.weight") {
        let aux = out_of("aux.conv.weight").unwrap_or(0);
        conv_bn(&mut out, "aux", "conv.weight", "bn", stage_channels[2], aux, 3);
        out.push(("aux.classifier.weight".into(), vec![spec.classes, aux, 1, 1]));
        out.push(("aux.classifier.bias".into(), vec![spec.classes]));
    }
    out
}

/// Counts `{prefix}{i}{suffix}` keys for i = 0, 1, ...
fn count(params: &Params, prefix: &str, suffix: &str) -> usize {
    (0..).take_while(|i| params.contains(&format!("{prefix}{i}{suffix}"))).count()
}

/// Reads class names and palette from mmsegmentation metadata (0.x
/// `meta.CLASSES` / `meta.PALETTE`, 1.x `meta.dataset_meta.{classes,palette}`).
fn class_info(extra: &Value) -> (Option<Vec<String>>, Option<Vec<[u8; 3]>>) {
    let meta = extra.get("meta");
    let dataset = meta.and_then(|m| m.get("dataset_meta"));
    let find =
        |upper: &str, lower: &str| meta.and_then(|m| m.get(upper)).or_else(|| dataset.and_then(|d| d.get(lower)));
    let names = find("CLASSES", "classes")
        .and_then(Value::as_list)
        .and_then(|l| l.iter().map(|v| v.as_str().map(str::to_string)).collect::<Option<Vec<_>>>());
    let palette = find("PALETTE", "palette").and_then(Value::as_list).and_then(|l| {
        l.iter()
            .map(|c| {
                let rgb = c.as_list()?;
                let byte = |i: usize| rgb.get(i)?.as_i64().and_then(|v| u8::try_from(v).ok());
                Some([byte(0)?, byte(1)?, byte(2)?])
            })
            .collect::<Option<Vec<_>>>()
    });
    (names, palette)
}

/// Maps a checkpoint onto canonical parameters and infers its [`ModelSpec`].
/// `native_spec` is the spec recorded in a native file's metadata.
pub(crate) fn import(
    state: StateDict,
    extra: &Value,
    native_spec: Option<ModelSpec>,
    overrides: &Overrides,
    path: &Path,
) -> Result<(Params, ModelSpec), WeightsError> {
    let layout = detect(&state).ok_or_else(|| WeightsError::UnknownLayout {
        path: path.to_path_buf(),
        sample: state.keys().take(5).map(str::to_string).collect(),
    })?;
    let (params, unmatched, avg_down) = rename(state, layout, path)?;
    let mut spec = match native_spec {
        Some(spec) => spec,
        None => infer(&params, layout, avg_down, extra, path)?,
    };
    if let Some(a) = overrides.align_corners {
        spec.ppm.align_corners = a;
    }
    if let Some(os) = overrides.output_stride {
        spec.backbone.output_stride = os;
    }
    if let Some(bins) = &overrides.bins {
        spec.ppm.bins = bins.clone();
    }
    let branches = count(&params, "decode.ppm.", ".conv.weight");
    let mut problems = LayoutProblems { unexpected: unmatched, ..LayoutProblems::default() };
    if spec.ppm.bins.len() != branches {
        problems
            .misshaped
            .push(format!("decode.ppm: {branches} pyramid branches in the file, bins {:?} given", spec.ppm.bins));
    }
    let expected = expected_params(&spec, &params);
    let expected_names: BTreeMap<&str, &Vec<usize>> = expected.iter().map(|(n, s)| (n.as_str(), s)).collect();
    for (name, shape) in &expected {
        let source = source_name(layout, name);
        match params.get(name) {
            Err(_) => problems.missing.push(source),
            Ok(p) if p.shape() != shape.as_slice() => {
                problems.misshaped.push(format!("{source}: {:?} in the file, {shape:?} expected", p.shape()))
            }
            Ok(_) => {}
        }
    }
    problems
        .unexpected
        .extend(params.names().filter(|n| !expected_names.contains_key(n)).map(|n| source_name(layout, n)));
    if !problems.is_empty() {
        return Err(WeightsError::Layout { path: path.to_path_buf(), layout: layout.name(), problems });
    }
    Ok((params, spec))
}

/// The keys a checkpoint gets wrong, all at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayoutProblems {
    /// Keys the architecture needs that the file lacks (canonical names).
    pub missing: Vec<String>,
    /// Keys in the file that no part of the architecture uses.
    pub unexpected: Vec<String>,
    /// Keys whose shape contradicts the rest of the network.
    pub misshaped: Vec<String>,
}

impl LayoutProblems {
    fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.misshaped.is_empty()
    }
}

impl std::fmt::Display for LayoutProblems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (what, keys) in
            [("missing", &self.missing), ("unexpected", &self.unexpected), ("misshaped", &self.misshaped)]
        {
            if !keys.is_empty() {
                write!(f, "\n  {what} ({}): {}", keys.len(), keys.join(", "))?;
            }
        }
        Ok(())
    }
}

fn infer(
    params: &Params,
    layout: Layout,
    avg_down: bool,
    extra: &Value,
    path: &Path,
) -> Result<ModelSpec, WeightsError> {
    let stem = if params.contains("backbone.stem.2.conv.weight") { StemKind::Deep } else { StemKind::Classic };
    let block =
        if params.contains("backbone.layer1.0.conv3.weight") { BlockKind::Bottleneck } else { BlockKind::Basic };
    let layers = [1, 2, 3, 4].map(|s| {
        let prefix = format!("backbone.layer{s}.");
        let block = |name: &str| name.strip_prefix(&prefix)?.split('.').next()?.parse::<usize>().ok();
        params.names().filter_map(block).max().map_or(0, |b| b + 1)
    });
    let dilation_rule = if layout == Layout::Semseg { DilationRule::EveryBlock } else { DilationRule::Contract };
    let classes =
        params.get("decode.classifier.weight").ok().and_then(|p| p.shape().first().copied()).ok_or_else(|| {
            WeightsError::Layout {
                path: path.to_path_buf(),
                layout: layout.name(),
                problems: LayoutProblems {
                    missing: vec!["decode.classifier.weight".into()],
                    ..LayoutProblems::default()
                },
            }
        })?;
    let branches = count(params, "decode.ppm.", ".conv.weight");
    let bins = if branches == 4 { vec![1, 2, 3, 6] } else { (1..=branches).collect() };
    let (class_names, palette) = class_info(extra);
    Ok(ModelSpec {
        layout,
        backbone: ResNetConfig { block, layers, stem, output_stride: 8, dilation_rule, avg_down },
        ppm: PyramidPoolingConfig { bins, pooling: Pooling::Average, align_corners: layout == Layout::Semseg },
        classes,
        mean: [123.675, 116.28, 103.53],
        std: [58.395, 57.12, 57.375],
        class_names,
        palette,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_capture_and_fill() {
        let c = capture("layer{}.{}.downsample.1.{*}", "layer3.0.downsample.1.running_var").unwrap();
        assert_eq!(c, ["3", "0", "running_var"]);
        assert_eq!(fill("backbone.layer{}.{}.downsample.bn.{*}", &c), "backbone.layer3.0.downsample.bn.running_var");
        assert!(capture("layer{}.{}.{}.{*}", "layer1.0.conv1").is_none());
        assert!(capture("layer{}.{}.{}.{*}", "layers.0.conv1.weight").is_none());
        assert_eq!(
            capture("layer{}.{}.{}.{*}", "layer12.3.bn2.running_mean").unwrap(),
            ["12", "3", "bn2", "running_mean"]
        );
        assert!(capture("cls.0.weight", "cls.0.weight.extra").is_none());
        assert_eq!(capture("cls.4.{*}", "cls.4.bias").unwrap(), ["bias"]);
        assert_eq!(source_name(Layout::Semseg, "backbone.stem.1.bn.running_var"), "layer0.4.running_var");
        assert_eq!(source_name(Layout::Semseg, "backbone.layer3.0.downsample.bn.bias"), "layer3.0.downsample.1.bias");
        assert_eq!(source_name(Layout::Mmseg, "decode.ppm.2.conv.weight"), "decode_head.psp_modules.2.1.conv.weight");
    }
}
