//! The project's own checkpoint layout: safetensors with canonical names and
//! metadata recording everything the forward needs, so a converted file
//! loads with no guessing and no flags.

use std::collections::BTreeMap;
use std::path::Path;

use half::{bf16, f16};
use pspnet_tensor::Params;
use pspnet_weights::{DType, StateDict, TensorData, save_safetensors};

use crate::spec::{spec_from_json, spec_to_json};
use crate::{ModelError, ModelSpec};

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
pub fn save_native(path: &Path, params: &Params, spec: &ModelSpec, dtype: StorageDtype) -> Result<(), ModelError> {
    save_native_with(path, params, spec, dtype, &Params::new(), &BTreeMap::new())
}

/// Prefix of the tensors a training checkpoint adds (the optimiser's
/// momentum buffers), which every loader skips.
pub const OPTIMIZER_PREFIX: &str = "optimizer.";

/// [`save_native`] with `extra` tensors (stored f32, under their own names:
/// [`OPTIMIZER_PREFIX`] for what loaders skip) and `metadata` entries
/// beside the format and the spec: a training checkpoint that every command
/// loads as a model.
pub fn save_native_with(
    path: &Path,
    params: &Params,
    spec: &ModelSpec,
    dtype: StorageDtype,
    extra: &Params,
    metadata: &BTreeMap<String, String>,
) -> Result<(), ModelError> {
    let encode = |dtype: StorageDtype, p: &pspnet_tensor::Param| {
        let data = p.data();
        let (dtype, bytes): (DType, Vec<u8>) = match dtype {
            StorageDtype::F32 => (DType::F32, data.iter().flat_map(|v| v.to_le_bytes()).collect()),
            StorageDtype::F16 => (DType::F16, data.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect()),
            StorageDtype::Bf16 => (DType::BF16, data.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes()).collect()),
        };
        TensorData { dtype, shape: p.shape().to_vec(), bytes }
    };
    let tensors = params
        .iter()
        .map(|(name, p)| (name.to_string(), encode(dtype, p)))
        .chain(extra.iter().map(|(name, p)| (name.to_string(), encode(StorageDtype::F32, p))))
        .collect();
    let mut metadata = metadata.clone();
    metadata.insert(FORMAT_KEY.to_string(), FORMAT.to_string());
    metadata.insert(SPEC_KEY.to_string(), spec_to_json(spec).to_string());
    Ok(save_safetensors(path, &StateDict { tensors }, &metadata)?)
}

/// The spec recorded in a native file's metadata, if it is one.
pub(crate) fn native_spec(metadata: &BTreeMap<String, String>, path: &Path) -> Result<Option<ModelSpec>, ModelError> {
    match (metadata.get(FORMAT_KEY), metadata.get(SPEC_KEY)) {
        (Some(format), Some(spec)) if format == FORMAT => spec_from_json(spec)
            .map(Some)
            .map_err(|reason| ModelError::BadMetadata { path: path.to_path_buf(), key: SPEC_KEY.to_string(), reason }),
        (Some(format), _) => Err(ModelError::BadMetadata {
            path: path.to_path_buf(),
            key: FORMAT_KEY.to_string(),
            reason: format!("format {format:?} is not {FORMAT:?}"),
        }),
        _ => Ok(None),
    }
}
