//! What a checkpoint says about its network beyond the weights' shapes:
//! the [`ModelSpec`], the [`Layout`] it came in, and the JSON form a
//! native file records it in.

use std::path::PathBuf;

use pspnet_ppm::{Pooling, PyramidPoolingConfig};
use pspnet_resnet::{BlockKind, DilationRule, ResNetConfig, StemKind, StridePlacement};
use serde_json::{Value as Json, json};

/// Which reference implementation's key names a checkpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// hszhao/semseg, the official PyTorch PSPNet.
    Semseg,
    /// open-mmlab mmsegmentation's `pspnet_r*-d8` models.
    Mmseg,
    /// This project's safetensors layout (canonical names + metadata).
    Native,
    /// The authors' Caffe release (`.caffemodel`, hszhao/PSPNet).
    Caffe,
}

impl Layout {
    /// The layout's name.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Semseg => "semseg",
            Layout::Mmseg => "mmseg",
            Layout::Native => "pspnet-rs",
            Layout::Caffe => "caffe",
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
    /// A deploy prototxt describing a `.caffemodel`'s layers (the released
    /// files may lack their parameters).
    pub prototxt: Option<PathBuf>,
}

pub(crate) fn spec_to_json(spec: &ModelSpec) -> Json {
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
            "stride_placement": match b.stride_placement { StridePlacement::Reduce => "reduce", StridePlacement::Middle => "middle" },
            "stem_pool": if b.pool_ceil { "ceil" } else { "floor" },
        },
        "ppm": {
            "bins": spec.ppm.bins,
            "pooling": match spec.ppm.pooling { Pooling::Average => "avg", Pooling::Max => "max" },
            "align_corners": spec.ppm.align_corners,
            "reduction": spec.ppm.reduction,
        },
        "classes": spec.classes,
        "normalization": { "mean": spec.mean, "std": spec.std },
        "class_names": spec.class_names,
        "palette": spec.palette,
    })
}

pub(crate) fn spec_from_json(text: &str) -> Result<ModelSpec, String> {
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
            // Files written before the option existed strode on the 3x3.
            stride_placement: match field(&["backbone", "stride_placement"]) {
                Ok(_) => [StridePlacement::Reduce, StridePlacement::Middle]
                    [pick(&["backbone", "stride_placement"], &["reduce", "middle"])?],
                Err(_) => StridePlacement::Middle,
            },
            pool_ceil: match field(&["backbone", "stem_pool"]) {
                Ok(_) => pick(&["backbone", "stem_pool"], &["floor", "ceil"])? == 1,
                Err(_) => false,
            },
        },
        ppm: PyramidPoolingConfig {
            bins,
            pooling: [Pooling::Average, Pooling::Max][pick(&["ppm", "pooling"], &["avg", "max"])?],
            align_corners: field(&["ppm", "align_corners"])?.as_bool().ok_or("ppm.align_corners is not a bool")?,
            // Files written before the option existed reduced every level.
            reduction: match field(&["ppm", "reduction"]) {
                Ok(v) => v.as_bool().ok_or("ppm.reduction is not a bool")?,
                Err(_) => true,
            },
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
                stride_placement: StridePlacement::Reduce,
                pool_ceil: true,
            },
            ppm: PyramidPoolingConfig {
                bins: vec![1, 2, 3, 6],
                pooling: Pooling::Max,
                align_corners: false,
                reduction: false,
            },
            classes: 2,
            mean: [1.0, 2.0, 3.0],
            std: [4.0, 5.0, 6.5],
            class_names: Some(vec!["road".into(), "sky".into()]),
            palette: Some(vec![[1, 2, 3], [4, 5, 6]]),
        };
        assert_eq!(spec_from_json(&spec_to_json(&spec).to_string()).unwrap(), spec);
        assert!(spec_from_json("{}").unwrap_err().contains("no field"));
        let mut old = spec_to_json(&spec);
        old["backbone"].as_object_mut().unwrap().remove("stride_placement");
        old["backbone"].as_object_mut().unwrap().remove("stem_pool");
        let old = spec_from_json(&old.to_string()).unwrap().backbone;
        assert_eq!((old.stride_placement, old.pool_ceil), (StridePlacement::Middle, false));
    }
}
