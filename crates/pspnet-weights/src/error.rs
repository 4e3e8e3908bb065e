use std::path::PathBuf;

use crate::DType;

/// Everything that can go wrong when reading or writing a checkpoint.
///
/// Every variant that comes from a file names that file; pickle errors also
/// give the byte offset in the file, and tensor errors the key or storage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WeightsError {
    /// The file could not be read, written or renamed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The first bytes match none of the supported formats.
    #[error("{}: not a PyTorch checkpoint (zip or legacy) nor a safetensors file", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// The zip container is truncated or corrupt.
    #[error("{}: corrupt or truncated zip archive: {source}", path.display())]
    Zip {
        /// The file.
        path: PathBuf,
        /// What the zip reader reported.
        #[source]
        source: zip::result::ZipError,
    },
    /// An object a checkpoint writer cannot represent.
    #[error("{}: cannot write {what}", path.display())]
    Unwritable {
        /// The file being written.
        path: PathBuf,
        /// What could not be written.
        what: String,
    },
    /// A member the container needs is absent (`data.pkl`, a storage).
    #[error("{}: the archive has no entry `{entry}`", path.display())]
    MissingEntry {
        /// The file.
        path: PathBuf,
        /// The entry looked for.
        entry: String,
    },
    /// The checkpoint was written on a big-endian machine.
    #[error("{}: storages are stored {found}, only little-endian is supported", path.display())]
    ByteOrder {
        /// The file.
        path: PathBuf,
        /// What the file declares.
        found: String,
    },
    /// The data ends before a structure that it announces.
    #[error("{}: truncated at byte {offset} while reading {what}", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Offset in the file where more bytes were needed.
        offset: u64,
        /// What was being read.
        what: String,
    },
    /// A pickle opcode this reader does not implement.
    #[error("{}: unsupported pickle opcode 0x{opcode:02x} at byte {offset}", path.display())]
    UnknownOpcode {
        /// The file.
        path: PathBuf,
        /// The opcode byte.
        opcode: u8,
        /// Offset of the opcode in the file.
        offset: u64,
    },
    /// The pickle references a global outside the allowlist; the whole file
    /// is refused and nothing in it is run.
    #[error("{}: refusing to load: the pickle references the global `{module}.{name}` (at byte {offset}), which is not an allowlisted data type", path.display())]
    ForbiddenGlobal {
        /// The file.
        path: PathBuf,
        /// The global's module.
        module: String,
        /// The global's name.
        name: String,
        /// Offset of the opcode that named it.
        offset: u64,
    },
    /// The pickle is structurally invalid (stack underflow, wrong argument
    /// types, bad memo index, invalid UTF-8, ...).
    #[error("{}: malformed pickle at byte {offset}: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Offset of the offending opcode in the file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A safety limit (nesting depth, memo size, materialised size) was hit.
    #[error("{}: {what} exceeds the limit of {limit} (at byte {offset})", path.display())]
    LimitExceeded {
        /// The file.
        path: PathBuf,
        /// Offset in the file where the limit was hit.
        offset: u64,
        /// Which quantity.
        what: &'static str,
        /// The limit.
        limit: u64,
    },
    /// A tensor does not fit its storage, or a storage is missing or short.
    #[error("{}: storage `{storage}`: {reason}", path.display())]
    Storage {
        /// The file.
        path: PathBuf,
        /// The storage key.
        storage: String,
        /// What is wrong.
        reason: String,
    },
    /// No dictionary of tensors at the top level, under `state_dict` or
    /// under `model`.
    #[error("{}: no state dict (a dict of tensors at the top level, under `state_dict` or under `model`)", path.display())]
    NoStateDict {
        /// The file.
        path: PathBuf,
    },
    /// Two entries of the state dict have the same name (after stripping
    /// `module.`).
    #[error("{}: duplicate state-dict key `{key}`", path.display())]
    DuplicateKey {
        /// The file.
        path: PathBuf,
        /// The repeated key.
        key: String,
    },
    /// The safetensors reader or writer rejected the data.
    #[error("{}: safetensors: {message}", path.display())]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What the safetensors crate reported.
        message: String,
    },
    /// A safetensors tensor has a dtype this crate does not read.
    #[error("{}: tensor `{key}` has unsupported dtype {dtype}", path.display())]
    UnsupportedDType {
        /// The file.
        path: PathBuf,
        /// The tensor's key.
        key: String,
        /// The dtype as the file names it.
        dtype: String,
    },
    /// A tensor's byte length does not match its dtype and shape.
    #[error("tensor `{key}`: {bytes} bytes do not hold shape {shape:?} of {dtype}", key = key.as_deref().unwrap_or("<unnamed>"), dtype = dtype.name())]
    BadTensor {
        /// The tensor's key, when known.
        key: Option<String>,
        /// Its dtype.
        dtype: DType,
        /// Its shape.
        shape: Vec<usize>,
        /// Its byte length.
        bytes: usize,
    },
    /// A tensor was asked for as `f32` but holds integers or booleans.
    #[error("tensor `{key}` has dtype {dtype}, not a floating-point type", key = key.as_deref().unwrap_or("<unnamed>"), dtype = dtype.name())]
    NotFloat {
        /// The tensor's key, when known.
        key: Option<String>,
        /// Its dtype.
        dtype: DType,
    },
    /// A tensor was asked for by a key the state dict lacks.
    #[error("the state dict has no tensor `{key}`")]
    Missing {
        /// The key asked for.
        key: String,
    },
    /// A `.caffemodel` is not a well-formed `NetParameter`.
    #[error("{}: byte {offset}{}: {reason}", path.display(), layer.as_ref().map(|l| format!(" (layer `{l}`)")).unwrap_or_default())]
    Protobuf {
        /// The file.
        path: PathBuf,
        /// Offset in the file of what is wrong.
        offset: u64,
        /// The layer it is in, when known.
        layer: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// A `.prototxt` is not a well-formed network in protobuf's text format.
    #[error("{}: line {line}: {reason}", path.display())]
    Prototxt {
        /// The file.
        path: PathBuf,
        /// The line (1-based) of what is wrong.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A tensor-level error ([`WeightsError::Missing`], [`WeightsError::NotFloat`],
    /// [`WeightsError::BadTensor`]) in a named file.
    #[error("{}: {source}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// The tensor-level error.
        source: Box<WeightsError>,
    },
}

impl WeightsError {
    /// Attaches the file to an error raised where only the tensor was known.
    pub fn in_file(self, path: &std::path::Path) -> WeightsError {
        match self {
            WeightsError::Missing { .. } | WeightsError::NotFloat { .. } | WeightsError::BadTensor { .. } => {
                WeightsError::InFile { path: path.to_path_buf(), source: Box::new(self) }
            }
            other => other,
        }
    }
}
