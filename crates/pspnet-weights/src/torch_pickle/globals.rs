//! The allowlist: every global a checkpoint may name, and what each one is
//! to this reader. Anything not listed here refuses the file.

use crate::DType;

/// What an allowlisted global is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GlobalKind {
    /// `torch._utils._rebuild_tensor(_v2)`: a tensor over a storage.
    RebuildTensor,
    /// `torch._utils._rebuild_parameter(_with_state)`: a parameter, read as
    /// the tensor it wraps.
    RebuildParameter,
    /// A storage type or dtype (`torch.FloatStorage`, `torch.float32`).
    DType(DType),
    /// `collections.OrderedDict`.
    OrderedDict,
    /// `collections.defaultdict`, read as a dict without its factory.
    DefaultDict,
    /// `set` or `frozenset`, read as a list.
    Set,
    /// `torch.Size`, read as the tuple it wraps.
    Size,
    /// `_codecs.encode`, which Python 3 pickles bytes of protocol 2 through.
    CodecsEncode,
    /// A data-only class or function (numpy arrays, mmengine's
    /// `HistoryBuffer`, ...) whose objects become placeholders.
    Placeholder,
}

/// What the global `module.name` is; `None` for a global outside the
/// allowlist.
pub(super) fn resolve(module: &str, name: &str) -> Option<GlobalKind> {
    if matches!(module, "torch" | "torch.cuda")
        && let Some(dtype) = storage_dtype(name)
    {
        return Some(GlobalKind::DType(dtype));
    }
    let kind = match (module, name) {
        ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => GlobalKind::RebuildTensor,
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => GlobalKind::RebuildParameter,
        ("torch" | "torch.storage", "UntypedStorage") => GlobalKind::DType(DType::U8),
        ("torch", "float64" | "double") => GlobalKind::DType(DType::F64),
        ("torch", "float32" | "float") => GlobalKind::DType(DType::F32),
        ("torch", "float16" | "half") => GlobalKind::DType(DType::F16),
        ("torch", "bfloat16") => GlobalKind::DType(DType::BF16),
        ("torch", "int64" | "long") => GlobalKind::DType(DType::I64),
        ("torch", "int32" | "int") => GlobalKind::DType(DType::I32),
        ("torch", "int16" | "short") => GlobalKind::DType(DType::I16),
        ("torch", "int8") => GlobalKind::DType(DType::I8),
        ("torch", "uint8") => GlobalKind::DType(DType::U8),
        ("torch", "bool") => GlobalKind::DType(DType::Bool),
        ("torch", "Size") => GlobalKind::Size,
        ("collections", "OrderedDict") => GlobalKind::OrderedDict,
        ("collections", "defaultdict") => GlobalKind::DefaultDict,
        ("builtins", "set" | "frozenset") => GlobalKind::Set,
        ("_codecs", "encode") => GlobalKind::CodecsEncode,
        ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct" | "scalar")
        | ("numpy", "ndarray" | "dtype")
        | ("mmengine.logging.history_buffer", "HistoryBuffer")
        | ("argparse", "Namespace")
        | ("torch", "device")
        | (
            "builtins",
            "int" | "float" | "complex" | "str" | "bytes" | "bytearray" | "list" | "dict" | "tuple" | "bool",
        ) => GlobalKind::Placeholder,
        _ => return None,
    };
    Some(kind)
}

/// Whether the global `module.name` is on the allowlist: the check the
/// unpickler makes as each global is named.
pub(super) fn is_allowed(module: &str, name: &str) -> bool {
    resolve(module, name).is_some()
}

/// The element type of a legacy typed storage class (`torch.FloatStorage`).
fn storage_dtype(name: &str) -> Option<DType> {
    match name {
        "DoubleStorage" => Some(DType::F64),
        "FloatStorage" => Some(DType::F32),
        "HalfStorage" => Some(DType::F16),
        "BFloat16Storage" => Some(DType::BF16),
        "LongStorage" => Some(DType::I64),
        "IntStorage" => Some(DType::I32),
        "ShortStorage" => Some(DType::I16),
        "CharStorage" => Some(DType::I8),
        "ByteStorage" => Some(DType::U8),
        "BoolStorage" => Some(DType::Bool),
        _ => None,
    }
}
