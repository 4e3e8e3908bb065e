//! Torch's reading of a pickle: the pass that gives the unpickler's generic
//! tree the meaning `torch.save` wrote it with.
//!
//! Globals resolve against an allowlist (see `globals`): the torch functions
//! and classes `torch.save` emits (turned into tensors, storages and dicts)
//! and a few data-only classes (numpy arrays and dtypes, mmengine's
//! `HistoryBuffer`, ...) that become [`Value::Opaque`](crate::Value::Opaque)
//! placeholders. The
//! unpickler consults the same allowlist as each global is named, so any
//! other global refuses the whole file. Persistent ids declare the storages
//! that tensors view; conversion to [`Value`](crate::Value) then reads each tensor's bytes
//! from them.

mod convert;
mod globals;
mod interpret;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub(crate) use convert::Storages;
use interpret::Interpretation;

use crate::pickle::{Obj, Pickle, unpickle};
use crate::{DType, WeightsError};

/// A storage as a persistent id declares it: dtype and element count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StorageDecl {
    /// Element type.
    pub(crate) dtype: DType,
    /// Element count of the whole storage.
    pub(crate) numel: usize,
}

/// One pickle of a torch checkpoint, read and interpreted, its tensors not
/// yet materialised.
#[derive(Debug)]
pub(crate) struct TorchPickle {
    /// The file, for errors.
    path: PathBuf,
    /// Offset of the pickle in the file.
    base: u64,
    /// The generic tree.
    pickle: Pickle,
    /// What torch makes of it.
    meaning: Interpretation,
}

/// Reads one pickle from the start of `data` (which sits at file offset
/// `base` of `path`, for error messages) and interprets it.
pub(crate) fn read(path: &Path, data: &[u8], base: u64) -> Result<TorchPickle, WeightsError> {
    let pickle = unpickle(path, data, base, globals::is_allowed)?;
    let meaning = interpret::interpret(path, &pickle)?;
    Ok(TorchPickle { path: path.to_path_buf(), base, pickle, meaning })
}

impl TorchPickle {
    /// Offset just past the pickle's `STOP` opcode, relative to the data
    /// read.
    pub(crate) fn end(&self) -> usize {
        self.pickle.end
    }

    /// The storages that persistent ids declared, by key.
    pub(crate) fn storages(&self) -> &BTreeMap<String, StorageDecl> {
        &self.meaning.storages
    }

    /// Whether the pickled object is the integer whose little-endian two's
    /// complement bytes are `le`.
    pub(crate) fn is_long(&self, le: &[u8]) -> bool {
        matches!(&self.pickle.root, Obj::BigInt(b) if **b == *le)
    }
}
