//! Checkpoint file formats for pspnet-rs: PyTorch `.pth` files (the zip
//! container of torch >= 1.6 and the legacy container of older versions)
//! and safetensors files.
//!
//! `.pth` files are pickles. This crate reads them with a restricted
//! unpickler that never executes anything: globals resolve against an
//! allowlist of the torch functions `torch.save` emits (tensor and
//! parameter rebuilding, storage types, `OrderedDict`) and a few data-only
//! classes (numpy arrays and dtypes, mmengine's `HistoryBuffer`, ...) that
//! become [`Value::Opaque`] placeholders. A pickle naming any other global
//! (`os.system`, `builtins.eval`, ...) is refused whole with
//! [`WeightsError::ForbiddenGlobal`]. Nesting depth, memo size and the
//! amount of data produced are bounded, and every length is checked against
//! the input before anything is allocated, so malformed or hostile files
//! give errors, not panics or exhausted memory.
//!
//! The result is a [`Checkpoint`]: the [`StateDict`] (tensors by name, as
//! raw little-endian bytes with dtype and shape) plus the rest of the file
//! as an inert [`Value`] tree (e.g. mmsegmentation's `meta` with class
//! names and palette). The crate reads files only: what the tensors mean
//! (layouts, key names, architectures) is the model crate's business.

pub mod caffe;
mod dtype;
mod error;
mod pickle;
mod safetensors_io;
mod state_dict;
mod torch;
mod torch_pickle;
mod torch_save;
mod value;

use std::path::Path;

pub use dtype::DType;
pub use error::WeightsError;
pub use safetensors_io::{load_safetensors, save_safetensors};
pub use state_dict::{StateDict, TensorData};
pub use torch::{load_pth, read_pickle};
pub use torch_save::save_pth;
pub use value::Value;

/// The container a checkpoint was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `torch.save` zip archive (torch >= 1.6).
    TorchZip,
    /// `torch.save` legacy pickle sequence (torch < 1.6, or
    /// `_use_new_zipfile_serialization=False`).
    TorchLegacy,
    /// safetensors.
    Safetensors,
}

/// Everything a checkpoint file held.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The tensors, by name.
    pub state_dict: StateDict,
    /// The rest of the file as inert data: for `.pth` files, the top-level
    /// dict without its state-dict entry (e.g. mmsegmentation's `meta`); for
    /// safetensors, the `__metadata__` map as a dict of strings.
    pub extra: Value,
    /// The container the file used.
    pub format: Format,
}

/// Whether `data` starts like a safetensors file: an 8-byte little-endian
/// header length that fits the file, then a JSON object.
fn looks_like_safetensors(data: &[u8]) -> bool {
    let Some(len) = data.get(..8) else {
        return false;
    };
    let mut buf = [0u8; 8];
    buf.copy_from_slice(len);
    let len = u64::from_le_bytes(buf);
    data.get(8) == Some(&b'{') && len <= (data.len() - 8) as u64
}

/// Reads any supported checkpoint, detecting the format from its first
/// bytes: zip magic `PK\x03\x04` (torch zip), a pickle `PROTO` opcode (torch
/// legacy), or an 8-byte little-endian header length followed by `{`
/// (safetensors).
pub fn load(path: &Path) -> Result<Checkpoint, WeightsError> {
    let io = |source| WeightsError::Io { path: path.to_path_buf(), source };
    let mut head = Vec::with_capacity(4);
    std::io::Read::read_to_end(&mut std::io::Read::take(std::fs::File::open(path).map_err(io)?, 4), &mut head)
        .map_err(io)?;
    if head.starts_with(b"PK\x03\x04") {
        return load_pth(path);
    }
    load_bytes(path, std::fs::read(path).map_err(io)?)
}

/// [`load`] for a checkpoint already in memory (e.g. embedded in a binary);
/// `path` only names it in errors.
pub fn load_bytes(path: &Path, data: Vec<u8>) -> Result<Checkpoint, WeightsError> {
    if looks_like_safetensors(&data) {
        let (state_dict, metadata) = safetensors_io::load_safetensors_bytes(path, &data)?;
        let extra = Value::Dict(metadata.into_iter().map(|(k, v)| (Value::Str(k), Value::Str(v))).collect());
        return Ok(Checkpoint { state_dict, extra, format: Format::Safetensors });
    }
    torch::load_pth_bytes(path, data)
}
