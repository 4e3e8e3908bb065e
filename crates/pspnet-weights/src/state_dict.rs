use std::collections::BTreeMap;

use half::{bf16, f16};

use crate::{DType, WeightsError};

/// One tensor of a checkpoint: dtype, shape (any rank, including 0-d
/// scalars) and its elements as raw little-endian bytes, contiguous in C
/// order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorData {
    /// Element type.
    pub dtype: DType,
    /// Dimensions, outermost first; empty for a scalar.
    pub shape: Vec<usize>,
    /// `numel() * dtype.size()` bytes, little-endian, C order.
    pub bytes: Vec<u8>,
}

impl TensorData {
    /// Number of elements: the product of the shape (1 for a scalar).
    ///
    /// Saturates at `usize::MAX` for shapes no loader produces.
    pub fn numel(&self) -> usize {
        self.shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).unwrap_or(usize::MAX)
    }

    /// Converts a floating tensor (f64, f32, f16 or bf16) to `f32` values in
    /// C order. `f64` rounds to nearest; the 16-bit types widen exactly.
    ///
    /// Integer and boolean tensors give [`WeightsError::NotFloat`] (without a
    /// key: [`StateDict::f32`] adds it); a byte length that does not match
    /// the shape gives [`WeightsError::BadTensor`].
    pub fn to_f32(&self) -> Result<Vec<f32>, WeightsError> {
        if !self.dtype.is_float() {
            return Err(WeightsError::NotFloat { key: None, dtype: self.dtype });
        }
        let expected = self.numel().checked_mul(self.dtype.size());
        if expected != Some(self.bytes.len()) {
            return Err(WeightsError::BadTensor {
                key: None,
                dtype: self.dtype,
                shape: self.shape.clone(),
                bytes: self.bytes.len(),
            });
        }
        let values = match self.dtype {
            DType::F32 => self.bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            DType::F64 => self
                .bytes
                .chunks_exact(8)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    f64::from_le_bytes(b) as f32
                })
                .collect(),
            DType::F16 => self.bytes.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            _ => self.bytes.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        };
        Ok(values)
    }

    /// Builds an `f32` tensor from values in C order.
    ///
    /// The caller keeps `values.len()` equal to the shape's element count;
    /// [`save_safetensors`](crate::save_safetensors) rejects tensors where it
    /// is not.
    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> TensorData {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        TensorData { dtype: DType::F32, shape, bytes }
    }
}

/// [`TensorData::to_f32`] with the key named in its errors.
fn keyed_f32(tensor: &TensorData, key: &str) -> Result<Vec<f32>, WeightsError> {
    tensor.to_f32().map_err(|e| match e {
        WeightsError::NotFloat { dtype, .. } => WeightsError::NotFloat { key: Some(key.to_owned()), dtype },
        WeightsError::BadTensor { dtype, shape, bytes, .. } => {
            WeightsError::BadTensor { key: Some(key.to_owned()), dtype, shape, bytes }
        }
        other => other,
    })
}

/// A checkpoint's tensors by name, sorted.
///
/// Loaded from a `.pth` file this is the dictionary found at the top level,
/// under `state_dict` or under `model`, with a leading `module.` stripped
/// from every key (as `nn.DataParallel` adds it). Safetensors keys are kept
/// as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateDict {
    /// The tensors by name.
    pub tensors: BTreeMap<String, TensorData>,
}

impl StateDict {
    /// The tensor stored under `key`, if any.
    pub fn get(&self, key: &str) -> Option<&TensorData> {
        self.tensors.get(key)
    }

    /// The tensor under `key` as its shape and `f32` values (C order).
    ///
    /// Errors: [`WeightsError::Missing`] when there is no such key,
    /// [`WeightsError::NotFloat`] when the tensor holds integers or booleans;
    /// both name the key.
    pub fn f32(&self, key: &str) -> Result<(Vec<usize>, Vec<f32>), WeightsError> {
        let tensor = self.get(key).ok_or_else(|| WeightsError::Missing { key: key.to_owned() })?;
        Ok((tensor.shape.clone(), keyed_f32(tensor, key)?))
    }

    /// [`StateDict::f32`] that also removes the tensor, so its raw bytes are
    /// freed as soon as they are converted.
    pub fn take_f32(&mut self, key: &str) -> Result<(Vec<usize>, Vec<f32>), WeightsError> {
        let tensor = self.tensors.remove(key).ok_or_else(|| WeightsError::Missing { key: key.to_owned() })?;
        let values = keyed_f32(&tensor, key)?;
        Ok((tensor.shape, values))
    }

    /// The keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
}
