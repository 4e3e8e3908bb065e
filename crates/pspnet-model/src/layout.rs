//! The published PSPNet checkpoint layouts, mapped onto the project's
//! canonical parameter names, and what their weights say about the network.
//!
//! Detection looks at which keys exist: `layer0.*` + `ppm.features.*` is
//! hszhao/semseg, `backbone.*` + `decode_head.psp_modules.*` is
//! mmsegmentation, `backbone.*` + `decode.ppm.*` is our own safetensors
//! layout. A table of rules renames each key; the architecture (block type,
//! depth, stem, bins, classes) is read off the renamed weights. The
//! network's builders then take every key they need by name and shape
//! (`pspnet_nn::ParamSource`), and the keys that do not fit are reported
//! together, in the checkpoint's own names.

use std::collections::HashSet;
use std::path::Path;

use pspnet_nn::Problems;
use pspnet_ppm::{Pooling, PyramidPoolingConfig};
use pspnet_resnet::{BlockKind, DilationRule, ResNetConfig, StemKind, StridePlacement};
use pspnet_tensor::Params;
use pspnet_weights::{StateDict, Value};

use crate::{Layout, LayoutProblems, ModelError, ModelSpec, OPTIMIZER_PREFIX};

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
pub(crate) fn source_name(layout: Layout, canonical: &str) -> String {
    let rules = match layout {
        Layout::Semseg => SEMSEG,
        Layout::Mmseg => MMSEG,
        Layout::Native => return canonical.to_string(),
        Layout::Caffe => return crate::caffe::source_name(canonical),
    };
    rules
        .iter()
        .filter(|r| !r.from.contains("downsample.2") && !r.to.contains("{conv-or-bn}"))
        .find_map(|r| capture(r.to, canonical).map(|c| fill(r.from, &c)))
        .unwrap_or_else(|| canonical.to_string())
}

/// Detects the layout from the keys present.
pub(crate) fn detect(state: &StateDict) -> Option<Layout> {
    let has = |k: &str| state.get(k).is_some();
    if has("layer0.0.weight") && state.keys().any(|k| k.starts_with("ppm.features.")) {
        Some(Layout::Semseg)
    } else if state.keys().any(|k| k.starts_with("decode_head.psp_modules.")) {
        Some(Layout::Mmseg)
    } else if state.keys().any(|k| k.starts_with("decode.ppm.") || k.starts_with("decode.bottleneck.")) {
        // The head as well as the pyramid: a pyramid without reductions has no parameters.
        Some(Layout::Native)
    } else {
        None
    }
}

/// Renames a checkpoint's tensors to canonical names (dropping batch-norm
/// step counters), converting them to `f32`. Keys no rule matches are
/// returned, and whether the shortcuts average-pool (ResNetV1d).
pub(crate) fn rename(
    mut state: StateDict,
    layout: Layout,
    path: &Path,
) -> Result<(Params, Vec<String>, bool), ModelError> {
    let rules = match layout {
        Layout::Semseg => SEMSEG,
        Layout::Mmseg => MMSEG,
        Layout::Native | Layout::Caffe => &[],
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
        // Step counters, and a training checkpoint's optimiser state.
        if key.ends_with("num_batches_tracked") || (layout == Layout::Native && key.starts_with(OPTIMIZER_PREFIX)) {
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
        params.insert(target, shape, values).map_err(|e| ModelError::Params { path: path.to_path_buf(), source: e })?;
    }
    Ok((params, unmatched, avg_down))
}

/// Reads class names and palette from mmsegmentation metadata (0.x
/// `meta.CLASSES` / `meta.PALETTE`, 1.x `meta.dataset_meta.{classes,palette}`).
pub(crate) fn class_info(extra: &Value) -> (Option<Vec<String>>, Option<Vec<[u8; 3]>>) {
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

/// The problems a network's builders found, in `layout`'s own key names
/// (keys no renaming rule matched come first among the unexpected).
pub(crate) fn layout_problems(layout: Layout, unmatched: Vec<String>, problems: Problems) -> LayoutProblems {
    let name = |n: &str| source_name(layout, n);
    let misshaped = problems
        .misshaped
        .iter()
        .map(|m| format!("{}: {:?} in the file, {:?} expected", name(&m.name), m.found, m.expected));
    LayoutProblems {
        missing: problems.missing.iter().map(|n| name(n)).collect(),
        unexpected: unmatched.into_iter().chain(problems.unexpected.iter().map(|n| name(n))).collect(),
        misshaped: problems.notes.into_iter().chain(misshaped).collect(),
    }
}

/// The architecture a checkpoint's renamed weights describe, with its
/// layout's defaults for what they cannot tell.
pub(crate) fn infer(
    params: &Params,
    layout: Layout,
    avg_down: bool,
    extra: &Value,
    path: &Path,
) -> Result<ModelSpec, ModelError> {
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
            ModelError::Layout {
                path: path.to_path_buf(),
                layout: layout.name(),
                problems: LayoutProblems {
                    missing: vec!["decode.classifier.weight".into()],
                    ..LayoutProblems::default()
                },
            }
        })?;
    let branches = (0..).take_while(|i| params.contains(&format!("decode.ppm.{i}.conv.weight"))).count();
    let bins = if branches == 4 { vec![1, 2, 3, 6] } else { (1..=branches).collect() };
    let (class_names, palette) = class_info(extra);
    Ok(ModelSpec {
        layout,
        backbone: ResNetConfig {
            block,
            layers,
            stem,
            output_stride: 8,
            dilation_rule,
            avg_down,
            stride_placement: StridePlacement::Middle,
            pool_ceil: false,
        },
        ppm: PyramidPoolingConfig {
            bins,
            pooling: Pooling::Average,
            align_corners: layout == Layout::Semseg,
            reduction: true,
        },
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
