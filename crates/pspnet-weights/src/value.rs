use crate::TensorData;

/// Inert Python data read from a pickle. Nothing in it was ever executed.
///
/// Sets and frozensets become [`Value::List`]; `collections.OrderedDict` and
/// `collections.defaultdict` become [`Value::Dict`] (the default factory is
/// dropped); integers beyond `i64` and objects of allowlisted data-only
/// classes (numpy arrays, dtypes and scalars, mmengine's `HistoryBuffer`,
/// `argparse.Namespace`, ...) become [`Value::Opaque`] holding the class or
/// function's qualified name, their contents dropped.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `True` or `False`.
    Bool(bool),
    /// An integer that fits in `i64`.
    Int(i64),
    /// A float.
    Float(f64),
    /// A text string.
    Str(String),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A list (or set).
    List(Vec<Value>),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A dict, entries in pickle order.
    Dict(Vec<(Value, Value)>),
    /// A tensor.
    Tensor(TensorData),
    /// A placeholder for data this crate does not decode, holding its
    /// qualified name (e.g. `numpy.core.multiarray._reconstruct`).
    Opaque(String),
}

impl Value {
    /// For a dict, the value of the first entry whose key is the string
    /// `key`; `None` for other values or when there is no such entry.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(entries) => entries.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, for [`Value::Str`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The items, for a [`Value::List`] or [`Value::Tuple`].
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(items) | Value::Tuple(items) => Some(items),
            _ => None,
        }
    }

    /// The integer, for [`Value::Int`] (and `True` / `False` as 1 / 0, as in
    /// Python).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// The number, for [`Value::Float`] or [`Value::Int`] (converted).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The tensor, for [`Value::Tensor`].
    pub fn as_tensor(&self) -> Option<&TensorData> {
        match self {
            Value::Tensor(t) => Some(t),
            _ => None,
        }
    }
}
