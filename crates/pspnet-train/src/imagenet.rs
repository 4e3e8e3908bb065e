//! ImageNet ResNets as a starting backbone (`--backbone`): torchvision's
//! (`conv1` 7x7, `bn1`), semseg's `resnet*_v2` (a deep stem `conv1` /
//! `conv2` / `conv3` with `bn1` / `bn2` / `bn3`) and mmcv's ResNetV1c
//! (`stem.0` / `.1`, `.3` / `.4`, `.6` / `.7`), all with torchvision's
//! `layer{1..4}.{b}.conv{j}`, `bn{j}` and `downsample.0` / `.1`; the
//! classifier `fc.*` is ignored. Their weights replace the backbone of a
//! from-scratch network of the chosen layout.

use pspnet_model::ModelSpec;
use pspnet_resnet::{BlockKind, StemKind};
use pspnet_tensor::Params;
use pspnet_weights::StateDict;

use crate::TrainError;
use crate::scratch::{Scratch, scratch};

/// The stem's canonical index and part (`conv` or `bn`) of an ImageNet
/// ResNet key's stem module, and whether the stem is deep.
fn stem_part(module: &str) -> Option<(usize, &'static str, bool)> {
    Some(match module {
        "conv1" => (0, "conv", false),
        "bn1" => (0, "bn", false),
        "conv2" => (1, "conv", true),
        "bn2" => (1, "bn", true),
        "conv3" => (2, "conv", true),
        "bn3" => (2, "bn", true),
        "stem.0" => (0, "conv", true),
        "stem.1" => (0, "bn", true),
        "stem.3" => (1, "conv", true),
        "stem.4" => (1, "bn", true),
        "stem.6" => (2, "conv", true),
        "stem.7" => (2, "bn", true),
        _ => return None,
    })
}

/// A backbone key's canonical name (`None`: not a backbone key, such as
/// `fc.*` or a step counter).
fn canonical(key: &str) -> Option<String> {
    if key.ends_with("num_batches_tracked") || key.starts_with("fc.") {
        return None;
    }
    let (module, leaf) = key.rsplit_once('.')?;
    if let Some((i, part, _)) = stem_part(module) {
        return Some(format!("backbone.stem.{i}.{part}.{leaf}"));
    }
    let rest = module.strip_prefix("layer")?;
    let (stage, rest) = rest.split_once('.')?;
    let (block, part) = rest.split_once('.')?;
    let part = match part {
        "downsample.0" => "downsample.conv".to_string(),
        "downsample.1" => "downsample.bn".to_string(),
        p if p.starts_with("conv") || p.starts_with("bn") => p.to_string(),
        _ => return None,
    };
    Some(format!("backbone.layer{stage}.{block}.{part}.{leaf}"))
}

/// Whether `state` looks like an ImageNet ResNet (a stem and `layer1`, no
/// segmentation head).
pub fn is_imagenet_resnet(state: &StateDict) -> bool {
    let has = |k: &str| state.get(k).is_some();
    (has("conv1.weight") || has("stem.0.weight")) && has("layer1.0.conv1.weight")
}

/// The network `head` describes (its depth read off `state`) with the
/// ImageNet backbone `state` in place of its own; `path` names the file in
/// errors. Returns the parameters and the spec; every parameter outside
/// `backbone.*` is to be initialised fresh.
pub fn with_imagenet_backbone(
    mut state: StateDict,
    head: &Scratch,
    path: &std::path::Path,
) -> Result<(Params, ModelSpec), TrainError> {
    let error = |e: pspnet_weights::WeightsError| TrainError::Model(Box::new(e.into()));
    let keys: Vec<String> = state.keys().map(str::to_string).collect();
    let blocks = [1, 2, 3, 4].map(|s| {
        let prefix = format!("layer{s}.");
        keys.iter()
            .filter_map(|k| k.strip_prefix(&prefix)?.split('.').next()?.parse::<usize>().ok())
            .max()
            .map_or(0, |b| b + 1)
    });
    let bottleneck = keys.iter().any(|k| k.starts_with("layer1.0.conv3."));
    let depth = match (bottleneck, blocks) {
        (false, [2, 2, 2, 2]) => 18,
        (false, [3, 4, 6, 3]) => 34,
        (true, [3, 4, 6, 3]) => 50,
        (true, [3, 4, 23, 3]) => 101,
        (true, [3, 8, 36, 3]) => 152,
        _ => {
            return Err(TrainError::Config(format!(
                "{}: a ResNet of blocks {blocks:?} ({}) is none of depths 18, 34, 50, 101, 152",
                path.display(),
                if bottleneck { "bottleneck" } else { "basic" }
            )));
        }
    };
    let deep = keys.iter().filter_map(|k| stem_part(k.rsplit_once('.')?.0)).any(|(_, _, deep)| deep);
    let width = state.get("layer1.0.conv1.weight").and_then(|t| t.shape.first().copied()).unwrap_or(64);
    let (mut params, mut spec) = scratch(&Scratch { depth, width, ..head.clone() })?;
    for name in params.names().filter(|n| n.starts_with("backbone.")).map(str::to_string).collect::<Vec<_>>() {
        params.remove(&name);
    }
    for key in keys {
        let Some(name) = canonical(&key) else { continue };
        let (shape, values) = state.take_f32(&key).map_err(|e| error(e.in_file(path)))?;
        params.insert(name, shape, values).map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))?;
    }
    spec.backbone.stem = if deep { StemKind::Deep } else { StemKind::Classic };
    debug_assert_eq!(spec.backbone.block == BlockKind::Bottleneck, bottleneck);
    Ok((params, spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_the_three_forms_map_to_canonical_names() {
        let cases = [
            ("conv1.weight", Some("backbone.stem.0.conv.weight")),
            ("bn3.running_var", Some("backbone.stem.2.bn.running_var")),
            ("stem.4.bias", Some("backbone.stem.1.bn.bias")),
            ("layer3.5.conv2.weight", Some("backbone.layer3.5.conv2.weight")),
            ("layer2.0.downsample.1.running_mean", Some("backbone.layer2.0.downsample.bn.running_mean")),
            ("layer1.0.bn1.num_batches_tracked", None),
            ("fc.weight", None),
            ("layer1.0.se.weight", None),
        ];
        for (key, want) in cases {
            assert_eq!(canonical(key).as_deref(), want, "{key}");
        }
    }
}
