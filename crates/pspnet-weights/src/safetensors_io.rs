//! Reading and writing safetensors files.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, View};

use crate::{DType, StateDict, TensorData, WeightsError};

fn to_st(dtype: DType) -> Dtype {
    match dtype {
        DType::F64 => Dtype::F64,
        DType::F32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::I64 => Dtype::I64,
        DType::I32 => Dtype::I32,
        DType::I16 => Dtype::I16,
        DType::I8 => Dtype::I8,
        DType::U8 => Dtype::U8,
        DType::Bool => Dtype::BOOL,
    }
}

fn from_st(dtype: Dtype) -> Option<DType> {
    DType::ALL.into_iter().find(|&d| to_st(d) == dtype)
}

fn st_error(path: &Path, e: impl std::fmt::Display) -> WeightsError {
    WeightsError::Safetensors { path: path.to_path_buf(), message: e.to_string() }
}

/// Reads a safetensors file: its tensors (keys as written) and its
/// `__metadata__` string map (empty when absent).
pub fn load_safetensors(path: &Path) -> Result<(StateDict, BTreeMap<String, String>), WeightsError> {
    let data = std::fs::read(path).map_err(|source| WeightsError::Io { path: path.to_path_buf(), source })?;
    load_safetensors_bytes(path, &data)
}

/// [`load_safetensors`] on bytes already read from `path`.
pub(crate) fn load_safetensors_bytes(
    path: &Path,
    data: &[u8],
) -> Result<(StateDict, BTreeMap<String, String>), WeightsError> {
    let (_, header) = SafeTensors::read_metadata(data).map_err(|e| st_error(path, e))?;
    let metadata = header.metadata().iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
    let file = SafeTensors::deserialize(data).map_err(|e| st_error(path, e))?;
    let mut state_dict = StateDict::default();
    for (key, view) in file.iter() {
        let dtype = from_st(view.dtype()).ok_or_else(|| WeightsError::UnsupportedDType {
            path: path.to_path_buf(),
            key: key.to_owned(),
            dtype: view.dtype().to_string(),
        })?;
        state_dict
            .tensors
            .insert(key.to_owned(), TensorData { dtype, shape: view.shape().to_vec(), bytes: view.data().to_vec() });
    }
    Ok((state_dict, metadata))
}

/// A [`TensorData`] as the safetensors serializer sees it.
struct Viewed<'a>(&'a TensorData);

impl View for Viewed<'_> {
    fn dtype(&self) -> Dtype {
        to_st(self.0.dtype)
    }

    fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.0.bytes)
    }

    fn data_len(&self) -> usize {
        self.0.bytes.len()
    }
}

/// Writes `tensors` and `metadata` (as `__metadata__`, omitted when empty)
/// to a safetensors file.
///
/// The file is written to a temporary file in the same directory, synced
/// and renamed over `path`, so `path` never holds a half-written file.
/// Tensors whose byte length does not match their dtype and shape are
/// refused with [`WeightsError::BadTensor`].
pub fn save_safetensors(
    path: &Path,
    tensors: &StateDict,
    metadata: &BTreeMap<String, String>,
) -> Result<(), WeightsError> {
    for (key, t) in &tensors.tensors {
        let expected = t.shape.iter().try_fold(t.dtype.size(), |acc, &d| acc.checked_mul(d));
        if expected != Some(t.bytes.len()) {
            return Err(WeightsError::BadTensor {
                key: Some(key.clone()),
                dtype: t.dtype,
                shape: t.shape.clone(),
                bytes: t.bytes.len(),
            });
        }
    }
    let info: Option<HashMap<String, String>> =
        if metadata.is_empty() { None } else { Some(metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect()) };
    let bytes = safetensors::tensor::serialize(tensors.tensors.iter().map(|(k, t)| (k.as_str(), Viewed(t))), info)
        .map_err(|e| st_error(path, e))?;
    let io_error = |source: std::io::Error| WeightsError::Io { path: path.to_path_buf(), source };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut tmp =
        tempfile::Builder::new().prefix(".pspnet-weights-").suffix(".tmp").tempfile_in(dir).map_err(io_error)?;
    tmp.write_all(&bytes).map_err(io_error)?;
    // Temporary files are private (0600); the result is an ordinary file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(io_error)?;
    }
    tmp.as_file().sync_all().map_err(io_error)?;
    tmp.persist(path).map_err(|e| io_error(e.error))?;
    Ok(())
}
