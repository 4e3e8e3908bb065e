//! The project's own checkpoint layout: safetensors with canonical names and
//! metadata recording everything the forward needs, so a converted file
//! loads with no guessing and no flags.

use std::collections::BTreeMap;
use std::path::Path;

use half::{bf16, f16};
use pspnet_ppm::{Pooling, PyramidPoolingConfig};
use pspnet_resnet::{BlockKind, DilationRule, ResNetConfig, StemKind};
use pspnet_tensor::Params;
use serde_json::{Value as Json, json};

use crate::{DType, Layout, ModelSpec, StateDict, TensorData, WeightsError, save_safetensors};

/// Metadata key holding the format tag.
pub const FORMAT_KEY: &str = "pspnet.format";
/// The format tag this version writes and reads.
pub const FORMAT: &str = "pspnet-rs/1";
/// Metadata key holding the [`ModelSpec`] as JSON.
pub const SPEC_KEY: &str = "pspnet.spec";

/// How converted weights are stored on disk (compute is always `f32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StorageDtype {
    /// 4 bytes per weight, exact.
    F32,
    /// 2 bytes, 10-bit mantissa.
    F16,
    /// 2 bytes, 7-bit mantissa, f32's range.
    Bf16,
}

impl std::str::FromStr for StorageDtype {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f32" => Ok(StorageDtype::F32),
            "f16" => Ok(StorageDtype::F16),
            "bf16" => Ok(StorageDtype::Bf16),
            other => Err(format!("unknown storage dtype {other:?} (f32, f16, bf16)")),
        }
    }
}

/// Writes `params` and `spec` as a native safetensors file (atomically).
pub fn save_native(path: &Path, params: &Params, spec: &ModelSpec, dtype: StorageDtype) -> Result<(), WeightsError> {
    let tensors = params
        .iter()
        .map(|(name, p)| {
            let data = p.data();
            let (dtype, bytes): (DType, Vec<u8>) = match dtype {
                StorageDtype::F32 => (DType::F32, data.iter().flat_map(|v| v.to_le_bytes()).collect()),
                StorageDtype::F16 => (DType::F16, data.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect()),
                StorageDtype::Bf16 => {
                    (DType::BF16, data.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes()).collect())
                }
            };
            (name.to_string(), TensorData { dtype, shape: p.shape().to_vec(), bytes })
        })
        .collect();
    let metadata = BTreeMap::from([
        (FORMAT_KEY.to_string(), FORMAT.to_string()),
        (SPEC_KEY.to_string(), spec_to_json(spec).to_string()),
    ]);
    save_safetensors(path, &StateDict { tensors }, &metadata)
}

/// The spec recorded in a native file's metadata, if it is one.
pub(crate) fn native_spec(metadata: &BTreeMap<String, String>, path: &Path) -> Result<Option<ModelSpec>, WeightsError> {
    match (metadata.get(FORMAT_KEY), metadata.get(SPEC_KEY)) {
        (Some(format), Some(spec)) if format == FORMAT => spec_from_json(spec).map(Some).map_err(|reason| {
            WeightsError::BadMetadata { path: path.to_path_buf(), key: SPEC_KEY.to_string(), reason }
        }),
        (Some(format), _) => Err(WeightsError::BadMetadata {
            path: path.to_path_buf(),
            key: FORMAT_KEY.to_string(),
            reason: format!("format {format:?} is not {FORMAT:?}"),
        }),
        _ => Ok(None),
    }
}

fn spec_to_json(spec: &ModelSpec) -> Json {
    let b = &spec.backbone;
    json!({
        "source_layout": spec.layout.name(),
        "backbone": {
            "block": match b.block { BlockKind::Basic => "basic", BlockKind::Bottleneck => "bottleneck" },
            "layers": b.layers,
            "stem": match b.stem { StemKind::Deep => "deep", StemKind::Classic => "classic" },
            "output_stride": b.output_stride,
            "dilation_rule": match b.dilation_rule { DilationRule::EveryBlock => "every_block", DilationRule::Contract => "contract" },
            "avg_down": b.avg_down,
        },
        "ppm": {
            "bins": spec.ppm.bins,
            "pooling": match spec.ppm.pooling { Pooling::Average => "avg", Pooling::Max => "max" },
            "align_corners": spec.ppm.align_corners,
        },
        "classes": spec.classes,
        "normalization": { "mean": spec.mean, "std": spec.std },
        "class_names": spec.class_names,
        "palette": spec.palette,
    })
}

fn spec_from_json(text: &str) -> Result<ModelSpec, String> {
    let j: Json = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let field =
        |path: &[&str]| path.iter().try_fold(&j, |v, k| v.get(k)).ok_or_else(|| format!("no field {}", path.join(".")));
    let string = |path: &[&str]| {
        field(path)?.as_str().map(str::to_string).ok_or_else(|| format!("{} is not a string", path.join(".")))
    };
    let uint = |v: &Json| v.as_u64().and_then(|v| usize::try_from(v).ok()).ok_or_else(|| format!("{v} is not a count"));
    let floats3 = |path: &[&str]| -> Result<[f32; 3], String> {
        let v: Vec<f32> =
            field(path)?.as_array().into_iter().flatten().filter_map(|x| x.as_f64()).map(|x| x as f32).collect();
        v.try_into().map_err(|_| format!("{} needs 3 numbers", path.join(".")))
    };
    let layers: Vec<usize> =
        field(&["backbone", "layers"])?.as_array().into_iter().flatten().map(uint).collect::<Result<_, _>>()?;
    let bins = field(&["ppm", "bins"])?.as_array().into_iter().flatten().map(uint).collect::<Result<_, _>>()?;
    let pick = |path: &[&str], options: &[&str]| -> Result<usize, String> {
        let s = string(path)?;
        options
            .iter()
            .position(|o| *o == s)
            .ok_or_else(|| format!("{} = {s:?}, expected one of {options:?}", path.join(".")))
    };
    let class_names = field(&["class_names"])?
        .as_array()
        .map(|a| {
            a.iter().map(|v| v.as_str().map(str::to_string).ok_or("class name not a string".to_string())).collect()
        })
        .transpose()?;
    let palette = field(&["palette"])?
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    let rgb: Vec<u8> = c
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|v| v.as_u64())
                        .filter_map(|v| u8::try_from(v).ok())
                        .collect();
                    rgb.try_into().map_err(|_| "palette colours are 3 bytes".to_string())
                })
                .collect()
        })
        .transpose()?;
    Ok(ModelSpec {
        layout: Layout::Native,
        backbone: ResNetConfig {
            block: [BlockKind::Basic, BlockKind::Bottleneck][pick(&["backbone", "block"], &["basic", "bottleneck"])?],
            layers: layers.try_into().map_err(|_| "backbone.layers needs 4 counts".to_string())?,
            stem: [StemKind::Deep, StemKind::Classic][pick(&["backbone", "stem"], &["deep", "classic"])?],
            output_stride: uint(field(&["backbone", "output_stride"])?)?,
            dilation_rule: [DilationRule::EveryBlock, DilationRule::Contract]
                [pick(&["backbone", "dilation_rule"], &["every_block", "contract"])?],
            avg_down: field(&["backbone", "avg_down"])?.as_bool().ok_or("backbone.avg_down is not a bool")?,
        },
        ppm: PyramidPoolingConfig {
            bins,
            pooling: [Pooling::Average, Pooling::Max][pick(&["ppm", "pooling"], &["avg", "max"])?],
            align_corners: field(&["ppm", "align_corners"])?.as_bool().ok_or("ppm.align_corners is not a bool")?,
        },
        classes: uint(field(&["classes"])?)?,
        mean: floats3(&["normalization", "mean"])?,
        std: floats3(&["normalization", "std"])?,
        class_names,
        palette,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trips_through_json() {
        let spec = ModelSpec {
            layout: Layout::Native,
            backbone: ResNetConfig {
                block: BlockKind::Basic,
                layers: [2, 2, 2, 2],
                stem: StemKind::Deep,
                output_stride: 8,
                dilation_rule: DilationRule::Contract,
                avg_down: true,
            },
            ppm: PyramidPoolingConfig { bins: vec![1, 2, 3, 6], pooling: Pooling::Max, align_corners: false },
            classes: 2,
            mean: [1.0, 2.0, 3.0],
            std: [4.0, 5.0, 6.5],
            class_names: Some(vec!["road".into(), "sky".into()]),
            palette: Some(vec![[1, 2, 3], [4, 5, 6]]),
        };
        assert_eq!(spec_from_json(&spec_to_json(&spec).to_string()).unwrap(), spec);
        assert!(spec_from_json("{}").unwrap_err().contains("no field"));
    }
}
