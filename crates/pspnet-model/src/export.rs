//! A model written back as the PyTorch checkpoint of a published layout:
//! mmsegmentation's `{'meta': {'CLASSES', 'PALETTE'}, 'state_dict'}` or
//! semseg's `{'epoch', 'state_dict'}` with `module.` keys (as its
//! `train.py` saves a DataParallel model), float32 tensors, each
//! batch-norm's `num_batches_tracked` as int64, the auxiliary head when the
//! model has one. Only architectures the layout's standard models express
//! are written; the rest are refused, naming what differs.

use std::path::Path;

use pspnet_ppm::Pooling;
use pspnet_resnet::{BlockKind, DilationRule, StemKind, StridePlacement};
use pspnet_tensor::Params;
use pspnet_weights::{DType, TensorData, Value, save_pth};

use crate::layout::source_name;
use crate::{Layout, ModelError, ModelSpec};

/// Writes `params` (canonical names) of the network `spec` describes as a
/// `layout` (semseg or mmseg) `.pth` at `path`, with `steps` as the
/// batch-norms' `num_batches_tracked` (and semseg's `epoch`).
pub fn export_pth(
    path: &Path,
    params: &Params,
    spec: &ModelSpec,
    layout: Layout,
    steps: u64,
) -> Result<(), ModelError> {
    let refuse = |what: String| ModelError::Spec {
        path: path.to_path_buf(),
        reason: format!("the {} layout cannot express {what}", layout.name()),
    };
    let semseg = match layout {
        Layout::Semseg => true,
        Layout::Mmseg => false,
        other => return Err(ModelError::Input(format!("--layout {}: write semseg or mmseg", other.name()))),
    };
    let b = &spec.backbone;
    let differences = [
        (b.pool_ceil, "a stem max pool that rounds up (Caffe's)".to_string()),
        (b.stride_placement == StridePlacement::Reduce, "the stride on the 1x1 reduce convolution".into()),
        (b.avg_down, "average-pooled shortcuts (ResNetV1d)".into()),
        (b.stem == StemKind::Classic, "the classic 7x7 stem".into()),
        (spec.ppm.pooling == Pooling::Max, "a max-pool pyramid".into()),
        (!spec.ppm.reduction, "a pyramid without dimension reduction".into()),
        (spec.ppm.align_corners != semseg, format!("align_corners {}", spec.ppm.align_corners)),
        (
            b.dilation_rule != if semseg { DilationRule::EveryBlock } else { DilationRule::Contract },
            "this dilation rule".into(),
        ),
        (semseg && b.block == BlockKind::Basic, "basic blocks (ResNet-18/34)".into()),
        (b.output_stride != 8, format!("output stride {}", b.output_stride)),
        (spec.ppm.bins != [1, 2, 3, 6], format!("bins {:?}", spec.ppm.bins)),
    ];
    if let Some((_, what)) = differences.into_iter().find(|(differs, _)| *differs) {
        return Err(refuse(what));
    }
    let mut state = Vec::new();
    for (name, p) in params.iter() {
        let key = source_name(layout, name);
        let key = if semseg { format!("module.{key}") } else { key };
        let bytes = p.data().iter().flat_map(|v| v.to_le_bytes()).collect();
        state.push((
            Value::Str(key.clone()),
            Value::Tensor(TensorData { dtype: DType::F32, shape: p.shape().to_vec(), bytes }),
        ));
        if let Some(bn) = key.strip_suffix(".running_var") {
            let counter = TensorData { dtype: DType::I64, shape: vec![], bytes: (steps as i64).to_le_bytes().to_vec() };
            state.push((Value::Str(format!("{bn}.num_batches_tracked")), Value::Tensor(counter)));
        }
    }
    let key = |k: &str| Value::Str(k.to_string());
    let root = if semseg {
        Value::Dict(vec![(key("epoch"), Value::Int(steps as i64)), (key("state_dict"), Value::Dict(state))])
    } else {
        let names =
            spec.class_names.clone().unwrap_or_else(|| (0..spec.classes).map(|c| format!("class{c}")).collect());
        let palette = spec.palette.clone().unwrap_or_default();
        let meta = Value::Dict(vec![
            (key("CLASSES"), Value::Tuple(names.into_iter().map(Value::Str).collect())),
            (
                key("PALETTE"),
                Value::List(
                    palette.iter().map(|c| Value::List(c.iter().map(|&v| Value::Int(v.into())).collect())).collect(),
                ),
            ),
        ]);
        Value::Dict(vec![(key("meta"), meta), (key("state_dict"), Value::Dict(state))])
    };
    Ok(save_pth(path, &root)?)
}
