//! A restricted unpickler: a stack machine over Python's pickle opcodes that
//! builds inert data and never calls anything.
//!
//! `GLOBAL` / `STACK_GLOBAL` resolve against an allowlist: the torch
//! functions and classes that `torch.save` emits (understood and turned into
//! tensors, storages and dicts), and a few data-only classes (numpy arrays
//! and dtypes, mmengine's `HistoryBuffer`, ...) that become opaque
//! placeholders. Any other global refuses the whole file.
//!
//! Mutable containers (lists, dicts, sets) live in an arena and are referred
//! to by index, so sharing through the memo behaves as in Python and dropping
//! never recurses; tuples nest directly but their depth is bounded. The
//! conversion to [`Value`] bounds depth (which also stops cycles), node count
//! and materialised bytes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::{DType, TensorData, Value, WeightsError};

/// Deepest nesting of marks, tuples or converted containers.
pub(crate) const MAX_DEPTH: usize = 1000;

/// A storage as a persistent id declares it: dtype and element count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StorageDecl {
    /// Element type.
    pub(crate) dtype: DType,
    /// Element count of the whole (root) storage.
    pub(crate) numel: usize,
}

/// A window of a storage that a tensor views.
#[derive(Debug)]
struct StorageRef {
    key: String,
    dtype: DType,
    /// First element of the window in the root storage.
    start: usize,
    /// Elements in the window.
    len: usize,
}

/// A tensor before its storage is read: validated against the declared
/// storage size, materialised during conversion.
#[derive(Debug)]
struct TensorSpec {
    storage: Rc<StorageRef>,
    offset: usize,
    shape: Vec<usize>,
    /// Strides in elements; 0 for dimensions of size 1.
    stride: Vec<usize>,
    numel: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GlobalKind {
    RebuildTensor,
    RebuildParameter,
    DType(DType),
    OrderedDict,
    DefaultDict,
    Set,
    Size,
    CodecsEncode,
    Placeholder,
}

#[derive(Debug)]
struct Global {
    qualname: String,
    kind: GlobalKind,
}

#[derive(Debug)]
struct Tuple {
    /// 1 + the deepest tuple nested directly inside.
    depth: usize,
    items: Vec<Obj>,
}

#[derive(Debug, Clone)]
enum Obj {
    None,
    Bool(bool),
    Int(i64),
    /// An integer too wide for `i64`: two's complement, little-endian.
    BigInt(Rc<[u8]>),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Rc<Tuple>),
    /// A list, set or dict in the arena.
    Ref(usize),
    Global(Rc<Global>),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorSpec>),
    Opaque(Rc<str>),
}

impl Obj {
    fn tuple_depth(&self) -> usize {
        match self {
            Obj::Tuple(t) => t.depth,
            _ => 0,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Obj::None => "None",
            Obj::Bool(_) => "bool",
            Obj::Int(_) | Obj::BigInt(_) => "int",
            Obj::Float(_) => "float",
            Obj::Str(_) => "str",
            Obj::Bytes(_) => "bytes",
            Obj::Tuple(_) => "tuple",
            Obj::Ref(_) => "container",
            Obj::Global(_) => "global",
            Obj::Storage(_) => "storage",
            Obj::Tensor(_) => "tensor",
            Obj::Opaque(_) => "object",
        }
    }
}

#[derive(Debug)]
enum Container {
    List(Vec<Obj>),
    Dict(Vec<(Obj, Obj)>),
}

/// The result of reading one pickle.
#[derive(Debug)]
pub(crate) struct Unpickled {
    path: PathBuf,
    base: u64,
    root: Obj,
    arena: Vec<Container>,
    storages: BTreeMap<String, StorageDecl>,
    /// Offset just past the STOP opcode, relative to the slice given.
    pub(crate) end: usize,
}

/// Reads one pickle from the start of `data` (which sits at file offset
/// `base` of `path`, for error messages).
pub(crate) fn unpickle(path: &Path, data: &[u8], base: u64) -> Result<Unpickled, WeightsError> {
    let machine = Machine {
        path,
        data,
        base,
        pos: 0,
        op_pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        arena: Vec::new(),
        storages: BTreeMap::new(),
    };
    machine.run()
}

struct Machine<'a> {
    path: &'a Path,
    data: &'a [u8],
    base: u64,
    pos: usize,
    op_pos: usize,
    stack: Vec<Obj>,
    marks: Vec<usize>,
    memo: HashMap<u32, Obj>,
    arena: Vec<Container>,
    storages: BTreeMap<String, StorageDecl>,
}

fn resolve(module: &str, name: &str) -> Option<GlobalKind> {
    let module = if module == "__builtin__" { "builtins" } else { module };
    let storage = |name: &str| match name {
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
    };
    let kind = match (module, name) {
        ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => GlobalKind::RebuildTensor,
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => GlobalKind::RebuildParameter,
        ("torch" | "torch.cuda", _) if storage(name).is_some() => GlobalKind::DType(storage(name)?),
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

const MARK: u8 = b'(';
const STOP: u8 = b'.';
const POP: u8 = b'0';
const POP_MARK: u8 = b'1';
const DUP: u8 = b'2';
const BINFLOAT: u8 = b'G';
const BININT: u8 = b'J';
const BININT1: u8 = b'K';
const BININT2: u8 = b'M';
const NONE: u8 = b'N';
const BINPERSID: u8 = b'Q';
const REDUCE: u8 = b'R';
const BINSTRING: u8 = b'T';
const SHORT_BINSTRING: u8 = b'U';
const BINUNICODE: u8 = b'X';
const APPEND: u8 = b'a';
const BUILD: u8 = b'b';
const GLOBAL: u8 = b'c';
const DICT: u8 = b'd';
const EMPTY_DICT: u8 = b'}';
const APPENDS: u8 = b'e';
const BINGET: u8 = b'h';
const LONG_BINGET: u8 = b'j';
const LIST: u8 = b'l';
const EMPTY_LIST: u8 = b']';
const BINPUT: u8 = b'q';
const LONG_BINPUT: u8 = b'r';
const SETITEM: u8 = b's';
const TUPLE: u8 = b't';
const EMPTY_TUPLE: u8 = b')';
const SETITEMS: u8 = b'u';
const BINBYTES: u8 = b'B';
const SHORT_BINBYTES: u8 = b'C';
const PROTO: u8 = 0x80;
const NEWOBJ: u8 = 0x81;
const TUPLE1: u8 = 0x85;
const TUPLE2: u8 = 0x86;
const TUPLE3: u8 = 0x87;
const NEWTRUE: u8 = 0x88;
const NEWFALSE: u8 = 0x89;
const LONG1: u8 = 0x8a;
const LONG4: u8 = 0x8b;
const SHORT_BINUNICODE: u8 = 0x8c;
const BINUNICODE8: u8 = 0x8d;
const BINBYTES8: u8 = 0x8e;
const EMPTY_SET: u8 = 0x8f;
const ADDITEMS: u8 = 0x90;
const FROZENSET: u8 = 0x91;
const NEWOBJ_EX: u8 = 0x92;
const STACK_GLOBAL: u8 = 0x93;
const MEMOIZE: u8 = 0x94;
const FRAME: u8 = 0x95;
const BYTEARRAY8: u8 = 0x96;

impl Machine<'_> {
    fn offset(&self) -> u64 {
        self.base.saturating_add(self.op_pos as u64)
    }

    fn malformed(&self, reason: impl Into<String>) -> WeightsError {
        WeightsError::Malformed { path: self.path.to_path_buf(), offset: self.offset(), reason: reason.into() }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], WeightsError> {
        let remaining = self.data.len() - self.pos;
        if n > remaining {
            return Err(WeightsError::Truncated {
                path: self.path.to_path_buf(),
                offset: self.base.saturating_add(self.data.len() as u64),
                what: format!("{what} ({n} bytes) in a pickle"),
            });
        }
        let bytes = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], WeightsError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, WeightsError> {
        Ok(self.array::<1>("an opcode argument")?[0])
    }

    fn u32(&mut self) -> Result<u32, WeightsError> {
        Ok(u32::from_le_bytes(self.array("a 4-byte argument")?))
    }

    fn len_u64(&mut self) -> Result<usize, WeightsError> {
        let n = u64::from_le_bytes(self.array("an 8-byte length")?);
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn line(&mut self) -> Result<String, WeightsError> {
        let rest = &self.data[self.pos..];
        let Some(n) = rest.iter().position(|&b| b == b'\n') else {
            return Err(WeightsError::Truncated {
                path: self.path.to_path_buf(),
                offset: self.base.saturating_add(self.data.len() as u64),
                what: "a GLOBAL name line".to_owned(),
            });
        };
        let line = std::str::from_utf8(&rest[..n]).map_err(|_| self.malformed("GLOBAL name is not UTF-8"))?.to_owned();
        self.pos += n + 1;
        Ok(line)
    }

    fn string(&mut self, n: usize) -> Result<Obj, WeightsError> {
        let bytes = self.take(n, "a string")?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(Obj::Str(Rc::from(s))),
            Err(_) => Err(self.malformed("string is not valid UTF-8")),
        }
    }

    fn bytes(&mut self, n: usize) -> Result<Obj, WeightsError> {
        Ok(Obj::Bytes(Rc::from(self.take(n, "a byte string")?)))
    }

    fn long(&mut self, n: usize) -> Result<Obj, WeightsError> {
        let bytes = self.take(n, "a long integer")?;
        if bytes.is_empty() {
            return Ok(Obj::Int(0));
        }
        let fill = if bytes[bytes.len() - 1] & 0x80 != 0 { 0xff } else { 0 };
        let (low, high) = bytes.split_at(bytes.len().min(8));
        let mut buf = [fill; 8];
        buf[..low.len()].copy_from_slice(low);
        let value = i64::from_le_bytes(buf);
        let sign = if value < 0 { 0xff } else { 0 };
        if high.iter().all(|&b| b == sign) {
            return Ok(Obj::Int(value));
        }
        Ok(Obj::BigInt(Rc::from(bytes)))
    }

    fn push(&mut self, obj: Obj) {
        self.stack.push(obj);
    }

    fn pop(&mut self) -> Result<Obj, WeightsError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.malformed("stack underflow"));
        }
        self.stack.pop().ok_or_else(|| self.malformed("stack underflow"))
    }

    fn top(&self) -> Result<&Obj, WeightsError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.malformed("stack underflow"));
        }
        self.stack.last().ok_or_else(|| self.malformed("stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Obj>, WeightsError> {
        let mark = self.marks.pop().ok_or_else(|| self.malformed("no MARK on the stack"))?;
        Ok(self.stack.split_off(mark))
    }

    fn tuple(&self, items: Vec<Obj>) -> Result<Obj, WeightsError> {
        let depth = 1 + items.iter().map(Obj::tuple_depth).max().unwrap_or(0);
        if depth > MAX_DEPTH {
            return Err(WeightsError::LimitExceeded {
                path: self.path.to_path_buf(),
                offset: self.offset(),
                what: "tuple nesting depth",
                limit: MAX_DEPTH as u64,
            });
        }
        Ok(Obj::Tuple(Rc::new(Tuple { depth, items })))
    }

    fn new_container(&mut self, c: Container) -> Obj {
        self.arena.push(c);
        Obj::Ref(self.arena.len() - 1)
    }

    fn memo_put(&mut self, index: u32) -> Result<(), WeightsError> {
        if self.memo.len() > self.data.len() {
            return Err(WeightsError::LimitExceeded {
                path: self.path.to_path_buf(),
                offset: self.offset(),
                what: "memo size",
                limit: self.data.len() as u64,
            });
        }
        let top = self.top()?.clone();
        self.memo.insert(index, top);
        Ok(())
    }

    fn memo_get(&mut self, index: u32) -> Result<(), WeightsError> {
        let obj = self
            .memo
            .get(&index)
            .cloned()
            .ok_or_else(|| self.malformed(format!("memo index {index} was never stored")))?;
        self.push(obj);
        Ok(())
    }

    fn global(&mut self, module: &str, name: &str) -> Result<(), WeightsError> {
        let Some(kind) = resolve(module, name) else {
            return Err(WeightsError::ForbiddenGlobal {
                path: self.path.to_path_buf(),
                module: module.to_owned(),
                name: name.to_owned(),
                offset: self.offset(),
            });
        };
        let module = if module == "__builtin__" { "builtins" } else { module };
        self.push(Obj::Global(Rc::new(Global { qualname: format!("{module}.{name}"), kind })));
        Ok(())
    }

    /// Items of a list, set or tuple argument.
    fn items_of(&self, obj: &Obj) -> Option<Vec<Obj>> {
        match obj {
            Obj::Tuple(t) => Some(t.items.clone()),
            Obj::Ref(id) => match &self.arena[*id] {
                Container::List(items) => Some(items.clone()),
                Container::Dict(_) => None,
            },
            _ => None,
        }
    }

    fn usize_arg(&self, obj: &Obj, what: &str) -> Result<usize, WeightsError> {
        match obj {
            Obj::Int(i) => usize::try_from(*i).map_err(|_| self.malformed(format!("{what} is negative ({i})"))),
            Obj::Bool(b) => Ok(usize::from(*b)),
            other => Err(self.malformed(format!("{what} is a {}, not an int", other.kind()))),
        }
    }

    fn usize_list(&self, obj: &Obj, what: &str) -> Result<Vec<usize>, WeightsError> {
        let items =
            self.items_of(obj).ok_or_else(|| self.malformed(format!("{what} is a {}, not a tuple", obj.kind())))?;
        items.iter().map(|o| self.usize_arg(o, what)).collect()
    }

    fn storage_error(&self, key: &str, reason: String) -> WeightsError {
        WeightsError::Storage { path: self.path.to_path_buf(), storage: key.to_owned(), reason }
    }

    fn rebuild_tensor(&self, args: &[Obj]) -> Result<Obj, WeightsError> {
        let [storage, offset, size, stride, ..] = args else {
            return Err(self.malformed("_rebuild_tensor needs (storage, offset, size, stride)"));
        };
        let Obj::Storage(storage) = storage else {
            return Err(
                self.malformed(format!("_rebuild_tensor's first argument is a {}, not a storage", storage.kind()))
            );
        };
        let offset = self.usize_arg(offset, "storage offset")?;
        let shape = self.usize_list(size, "tensor size")?;
        let mut stride = self.usize_list(stride, "tensor stride")?;
        if shape.len() != stride.len() {
            return Err(self.malformed(format!("tensor size {shape:?} and stride {stride:?} differ in rank")));
        }
        let key = &storage.key;
        let numel = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .filter(|n| n.checked_mul(storage.dtype.size()).is_some())
            .ok_or_else(|| self.storage_error(key, format!("tensor shape {shape:?} has too many elements")))?;
        for (s, &d) in stride.iter_mut().zip(&shape) {
            if d == 1 {
                *s = 0;
            }
        }
        if numel > 0 {
            let last = shape
                .iter()
                .zip(&stride)
                .try_fold(offset, |acc, (&d, &s)| (d - 1).checked_mul(s).and_then(|x| acc.checked_add(x)));
            if last.is_none_or(|last| last >= storage.len) {
                return Err(self.storage_error(
                    key,
                    format!(
                        "a tensor of shape {shape:?}, stride {stride:?} at offset {offset} \
                         reaches past the storage's {} elements",
                        storage.len
                    ),
                ));
            }
        }
        Ok(Obj::Tensor(Rc::new(TensorSpec { storage: Rc::clone(storage), offset, shape, stride, numel })))
    }

    fn persistent_load(&mut self, pid: Obj) -> Result<Obj, WeightsError> {
        let Obj::Tuple(pid) = pid else {
            return Err(self.malformed(format!("persistent id is a {}, not a tuple", pid.kind())));
        };
        let items = &pid.items;
        let is_storage = matches!(items.first(), Some(Obj::Str(s)) if &**s == "storage");
        if !is_storage || !(5..=6).contains(&items.len()) {
            return Err(self.malformed("persistent id is not ('storage', type, key, location, numel[, view])"));
        }
        let dtype = match &items[1] {
            Obj::Global(g) => match g.kind {
                GlobalKind::DType(d) => d,
                _ => {
                    return Err(self.malformed(format!("`{}` is not a storage type", g.qualname)));
                }
            },
            other => {
                return Err(self.malformed(format!("storage type is a {}, not a global", other.kind())));
            }
        };
        let key = match &items[2] {
            Obj::Str(s) => s.to_string(),
            Obj::Int(i) => i.to_string(),
            other => {
                return Err(self.malformed(format!("storage key is a {}", other.kind())));
            }
        };
        let numel = self.usize_arg(&items[4], "storage size")?;
        if numel.checked_mul(dtype.size()).is_none() {
            return Err(self.storage_error(&key, format!("{numel} elements is too many")));
        }
        let decl = StorageDecl { dtype, numel };
        match self.storages.get(&key) {
            Some(old) if *old != decl => {
                return Err(self.storage_error(
                    &key,
                    format!("declared as {} x {} and as {} x {}", old.numel, old.dtype, numel, dtype),
                ));
            }
            Some(_) => {}
            None => {
                self.storages.insert(key.clone(), decl);
            }
        }
        let (start, len) = match items.get(5) {
            None | Some(Obj::None) => (0, numel),
            Some(view) => {
                let view = self.usize_view(view)?;
                if view.0.checked_add(view.1).is_none_or(|end| end > numel) {
                    return Err(self.storage_error(
                        &key,
                        format!("view of {} elements at {} is outside its {numel} elements", view.1, view.0),
                    ));
                }
                view
            }
        };
        Ok(Obj::Storage(Rc::new(StorageRef { key, dtype, start, len })))
    }

    /// `(view_key, offset, size)` of a legacy storage view.
    fn usize_view(&self, view: &Obj) -> Result<(usize, usize), WeightsError> {
        match view {
            Obj::Tuple(t) if t.items.len() == 3 => Ok((
                self.usize_arg(&t.items[1], "storage view offset")?,
                self.usize_arg(&t.items[2], "storage view size")?,
            )),
            _ => Err(self.malformed("storage view metadata is not (key, offset, size)")),
        }
    }

    fn call(&mut self, callable: &Obj, args: &Obj) -> Result<Obj, WeightsError> {
        let global = match callable {
            Obj::Global(g) => g,
            Obj::Opaque(name) => return Ok(Obj::Opaque(Rc::clone(name))),
            other => {
                return Err(self.malformed(format!("cannot call a {}", other.kind())));
            }
        };
        let args = self.items_of(args).ok_or_else(|| {
            self.malformed(format!("arguments of `{}` are a {}, not a tuple", global.qualname, args.kind()))
        })?;
        match global.kind {
            GlobalKind::RebuildTensor => self.rebuild_tensor(&args),
            GlobalKind::RebuildParameter => match args.first() {
                Some(t @ Obj::Tensor(_)) => Ok(t.clone()),
                _ => Err(self.malformed("_rebuild_parameter's first argument is not a tensor")),
            },
            GlobalKind::OrderedDict | GlobalKind::DefaultDict => {
                let mut entries = Vec::new();
                let pairs = match global.kind {
                    GlobalKind::OrderedDict => args.first().and_then(|a| self.items_of(a)),
                    _ => None,
                };
                if let Some(pairs) = pairs {
                    for pair in pairs {
                        match self.items_of(&pair).as_deref() {
                            Some([k, v]) => entries.push((k.clone(), v.clone())),
                            _ => return Err(self.malformed("OrderedDict item is not a pair")),
                        }
                    }
                }
                Ok(self.new_container(Container::Dict(entries)))
            }
            GlobalKind::Set => {
                let items = args.first().and_then(|a| self.items_of(a)).unwrap_or_default();
                Ok(self.new_container(Container::List(items)))
            }
            GlobalKind::Size => match args.first() {
                Some(t @ Obj::Tuple(_)) => Ok(t.clone()),
                _ => Err(self.malformed("torch.Size's argument is not a tuple")),
            },
            GlobalKind::CodecsEncode => match args.as_slice() {
                [Obj::Str(s), Obj::Str(enc)] if matches!(&**enc, "latin1" | "latin-1") => {
                    let bytes: Option<Vec<u8>> = s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect();
                    let bytes = bytes.ok_or_else(|| self.malformed("latin1 text above U+00FF"))?;
                    Ok(Obj::Bytes(Rc::from(bytes)))
                }
                [Obj::Str(s), ..] => Ok(Obj::Bytes(Rc::from(s.as_bytes()))),
                _ => Ok(Obj::Opaque(Rc::from(global.qualname.as_str()))),
            },
            GlobalKind::DType(_) | GlobalKind::Placeholder => Ok(Obj::Opaque(Rc::from(global.qualname.as_str()))),
        }
    }

    fn new_object(&mut self, cls: &Obj) -> Result<Obj, WeightsError> {
        match cls {
            Obj::Global(g) => Ok(match g.kind {
                GlobalKind::OrderedDict | GlobalKind::DefaultDict => self.new_container(Container::Dict(Vec::new())),
                GlobalKind::Set => self.new_container(Container::List(Vec::new())),
                _ => Obj::Opaque(Rc::from(g.qualname.as_str())),
            }),
            Obj::Opaque(name) => Ok(Obj::Opaque(Rc::clone(name))),
            other => Err(self.malformed(format!("NEWOBJ on a {}", other.kind()))),
        }
    }

    /// APPEND(S) / ADDITEMS: adds `items` to the list or set on the stack top.
    fn extend_list(&mut self, items: Vec<Obj>) -> Result<(), WeightsError> {
        match self.top()? {
            Obj::Ref(id) => {
                let id = *id;
                match &mut self.arena[id] {
                    Container::List(list) => {
                        list.extend(items);
                        Ok(())
                    }
                    Container::Dict(_) => Err(self.malformed("APPEND to a dict")),
                }
            }
            Obj::Opaque(_) => Ok(()),
            other => Err(self.malformed(format!("APPEND to a {}", other.kind()))),
        }
    }

    /// SETITEM(S): adds key/value pairs to the dict on the stack top.
    fn extend_dict(&mut self, items: Vec<Obj>) -> Result<(), WeightsError> {
        if !items.chunks_exact(2).remainder().is_empty() {
            return Err(self.malformed("SETITEMS with an odd number of items"));
        }
        match self.top()? {
            Obj::Ref(id) => {
                let id = *id;
                match &mut self.arena[id] {
                    Container::Dict(dict) => {
                        let mut it = items.into_iter();
                        while let (Some(k), Some(v)) = (it.next(), it.next()) {
                            dict.push((k, v));
                        }
                        Ok(())
                    }
                    Container::List(_) => Err(self.malformed("SETITEM on a list")),
                }
            }
            Obj::Opaque(_) => Ok(()),
            other => Err(self.malformed(format!("SETITEM on a {}", other.kind()))),
        }
    }

    fn run(mut self) -> Result<Unpickled, WeightsError> {
        loop {
            self.op_pos = self.pos;
            let op = self.take(1, "an opcode")?[0];
            match op {
                PROTO => {
                    let v = self.u8()?;
                    if v > 5 {
                        return Err(self.malformed(format!("unsupported pickle protocol {v}")));
                    }
                }
                FRAME => {
                    let n = self.len_u64()?;
                    if n > self.data.len() - self.pos {
                        return Err(WeightsError::Truncated {
                            path: self.path.to_path_buf(),
                            offset: self.base.saturating_add(self.data.len() as u64),
                            what: format!("a pickle frame of {n} bytes"),
                        });
                    }
                }
                STOP => {
                    let root = self.pop()?;
                    return Ok(Unpickled {
                        path: self.path.to_path_buf(),
                        base: self.base,
                        root,
                        arena: self.arena,
                        storages: self.storages,
                        end: self.pos,
                    });
                }
                MARK => {
                    if self.marks.len() >= MAX_DEPTH {
                        return Err(WeightsError::LimitExceeded {
                            path: self.path.to_path_buf(),
                            offset: self.offset(),
                            what: "MARK nesting depth",
                            limit: MAX_DEPTH as u64,
                        });
                    }
                    self.marks.push(self.stack.len());
                }
                POP => {
                    self.pop()?;
                }
                POP_MARK => {
                    self.pop_mark()?;
                }
                DUP => {
                    let top = self.top()?.clone();
                    self.push(top);
                }
                NONE => self.push(Obj::None),
                NEWTRUE => self.push(Obj::Bool(true)),
                NEWFALSE => self.push(Obj::Bool(false)),
                BININT => {
                    let v = i32::from_le_bytes(self.array("BININT")?);
                    self.push(Obj::Int(i64::from(v)));
                }
                BININT1 => {
                    let v = self.u8()?;
                    self.push(Obj::Int(i64::from(v)));
                }
                BININT2 => {
                    let v = u16::from_le_bytes(self.array("BININT2")?);
                    self.push(Obj::Int(i64::from(v)));
                }
                LONG1 => {
                    let n = usize::from(self.u8()?);
                    let v = self.long(n)?;
                    self.push(v);
                }
                LONG4 => {
                    let n = i32::from_le_bytes(self.array("LONG4")?);
                    let n = usize::try_from(n).map_err(|_| self.malformed("negative LONG4"))?;
                    let v = self.long(n)?;
                    self.push(v);
                }
                BINFLOAT => {
                    let v = f64::from_be_bytes(self.array("BINFLOAT")?);
                    self.push(Obj::Float(v));
                }
                BINUNICODE => {
                    let n = self.u32()? as usize;
                    let v = self.string(n)?;
                    self.push(v);
                }
                SHORT_BINUNICODE => {
                    let n = usize::from(self.u8()?);
                    let v = self.string(n)?;
                    self.push(v);
                }
                BINUNICODE8 => {
                    let n = self.len_u64()?;
                    let v = self.string(n)?;
                    self.push(v);
                }
                BINSTRING => {
                    let n = i32::from_le_bytes(self.array("BINSTRING")?);
                    let n = usize::try_from(n).map_err(|_| self.malformed("negative BINSTRING"))?;
                    let v = self.string(n)?;
                    self.push(v);
                }
                SHORT_BINSTRING => {
                    let n = usize::from(self.u8()?);
                    let v = self.string(n)?;
                    self.push(v);
                }
                BINBYTES => {
                    let n = self.u32()? as usize;
                    let v = self.bytes(n)?;
                    self.push(v);
                }
                SHORT_BINBYTES => {
                    let n = usize::from(self.u8()?);
                    let v = self.bytes(n)?;
                    self.push(v);
                }
                BINBYTES8 | BYTEARRAY8 => {
                    let n = self.len_u64()?;
                    let v = self.bytes(n)?;
                    self.push(v);
                }
                EMPTY_TUPLE => self.push(Obj::Tuple(Rc::new(Tuple { depth: 1, items: Vec::new() }))),
                TUPLE1 | TUPLE2 | TUPLE3 => {
                    let n = usize::from(op - TUPLE1 + 1);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    let t = self.tuple(items)?;
                    self.push(t);
                }
                TUPLE => {
                    let items = self.pop_mark()?;
                    let t = self.tuple(items)?;
                    self.push(t);
                }
                EMPTY_LIST | EMPTY_SET => {
                    let c = self.new_container(Container::List(Vec::new()));
                    self.push(c);
                }
                EMPTY_DICT => {
                    let c = self.new_container(Container::Dict(Vec::new()));
                    self.push(c);
                }
                LIST | FROZENSET => {
                    let items = self.pop_mark()?;
                    let c = self.new_container(Container::List(items));
                    self.push(c);
                }
                DICT => {
                    let items = self.pop_mark()?;
                    let c = self.new_container(Container::Dict(Vec::new()));
                    self.push(c);
                    self.extend_dict(items)?;
                }
                APPEND => {
                    let v = self.pop()?;
                    self.extend_list(vec![v])?;
                }
                APPENDS | ADDITEMS => {
                    let items = self.pop_mark()?;
                    self.extend_list(items)?;
                }
                SETITEM => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.extend_dict(vec![k, v])?;
                }
                SETITEMS => {
                    let items = self.pop_mark()?;
                    self.extend_dict(items)?;
                }
                BINPUT => {
                    let i = self.u8()?;
                    self.memo_put(u32::from(i))?;
                }
                LONG_BINPUT => {
                    let i = self.u32()?;
                    self.memo_put(i)?;
                }
                MEMOIZE => {
                    let i = u32::try_from(self.memo.len()).map_err(|_| self.malformed("memo is full"))?;
                    self.memo_put(i)?;
                }
                BINGET => {
                    let i = self.u8()?;
                    self.memo_get(u32::from(i))?;
                }
                LONG_BINGET => {
                    let i = self.u32()?;
                    self.memo_get(i)?;
                }
                GLOBAL => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global(&module, &name)?;
                }
                STACK_GLOBAL => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Obj::Str(module), Obj::Str(name)) => self.global(&module, &name)?,
                        _ => return Err(self.malformed("STACK_GLOBAL needs two strings")),
                    }
                }
                REDUCE => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.call(&callable, &args)?;
                    self.push(v);
                }
                NEWOBJ => {
                    let _args = self.pop()?;
                    let cls = self.pop()?;
                    let v = self.new_object(&cls)?;
                    self.push(v);
                }
                NEWOBJ_EX => {
                    let _kwargs = self.pop()?;
                    let _args = self.pop()?;
                    let cls = self.pop()?;
                    let v = self.new_object(&cls)?;
                    self.push(v);
                }
                BUILD => {
                    let _state = self.pop()?;
                    self.top()?;
                }
                BINPERSID => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(pid)?;
                    self.push(v);
                }
                other => {
                    return Err(WeightsError::UnknownOpcode {
                        path: self.path.to_path_buf(),
                        opcode: other,
                        offset: self.offset(),
                    });
                }
            }
        }
    }
}

/// The raw bytes of the storages that tensors read, by key.
pub(crate) enum Storages<'a> {
    /// Slices of a file held whole in memory: every tensor copies its elements.
    Borrowed(HashMap<String, &'a [u8]>),
    /// Storages read one by one from an archive. The last tensor to read a
    /// storage takes its bytes without a copy when it spans all of them, and
    /// each storage is freed after its last tensor: loading peaks near one
    /// copy of the weights, not two.
    Owned(HashMap<String, Vec<u8>>),
}

/// Where [`Unpickled::materialize`] finds tensor bytes.
enum Source<'a, 'r> {
    /// A dry run that only counts the tensors reading each storage.
    Count(&'r mut HashMap<String, usize>),
    Borrowed(HashMap<String, &'a [u8]>),
    /// Owned storages and how many tensors are still to read each.
    Owned {
        bytes: HashMap<String, Vec<u8>>,
        readers: HashMap<String, usize>,
    },
}

impl Source<'_, '_> {
    fn bytes(&self, key: &str) -> Option<&[u8]> {
        match self {
            Source::Count(_) => None,
            Source::Borrowed(map) => map.get(key).copied(),
            Source::Owned { bytes, .. } => bytes.get(key).map(Vec::as_slice),
        }
    }

    /// Whether the tensor being built is the last to read storage `key`.
    fn is_last_reader(&self, key: &str) -> bool {
        matches!(self, Source::Owned { readers, .. } if readers.get(key) == Some(&1))
    }

    /// Marks one read of storage `key` done; after the last one, hands the
    /// owned bytes back so they are reused or freed.
    fn release(&mut self, key: &str) -> Option<Vec<u8>> {
        let Source::Owned { bytes, readers } = self else { return None };
        let left = readers.get_mut(key)?;
        *left -= 1;
        if *left == 0 { bytes.remove(key) } else { None }
    }
}

/// What conversion to [`Value`] may still produce.
struct Budget {
    nodes: u64,
    bytes: u64,
    max_nodes: u64,
    max_bytes: u64,
}

impl Unpickled {
    /// The storages that persistent ids declared, by key.
    pub(crate) fn storages(&self) -> &BTreeMap<String, StorageDecl> {
        &self.storages
    }

    /// Whether the pickled object is the integer whose little-endian two's
    /// complement bytes are `le`.
    pub(crate) fn is_long(&self, le: &[u8]) -> bool {
        match &self.root {
            Obj::BigInt(b) => **b == *le,
            _ => false,
        }
    }

    /// Converts the pickled object to a [`Value`], reading tensor data from
    /// `storages`. At most `max_bytes` of strings and tensor data are
    /// produced.
    pub(crate) fn to_value(&self, storages: Storages<'_>, max_bytes: u64) -> Result<Value, WeightsError> {
        let max_nodes = 16 * self.end as u64 + 1024;
        let budget = || Budget { nodes: max_nodes, bytes: max_bytes, max_nodes, max_bytes };
        let mut source = match storages {
            Storages::Borrowed(map) => Source::Borrowed(map),
            Storages::Owned(bytes) => {
                let mut readers = HashMap::new();
                self.convert(&self.root, 0, &mut Source::Count(&mut readers), &mut budget())?;
                Source::Owned { bytes, readers }
            }
        };
        self.convert(&self.root, 0, &mut source, &mut budget())
    }

    fn limit(&self, what: &'static str, limit: u64) -> WeightsError {
        WeightsError::LimitExceeded { path: self.path.clone(), offset: self.base, what, limit }
    }

    fn spend_bytes(&self, budget: &mut Budget, n: usize) -> Result<(), WeightsError> {
        budget.bytes =
            budget.bytes.checked_sub(n as u64).ok_or_else(|| self.limit("materialised bytes", budget.max_bytes))?;
        Ok(())
    }

    fn convert(
        &self,
        obj: &Obj,
        depth: usize,
        storages: &mut Source<'_, '_>,
        budget: &mut Budget,
    ) -> Result<Value, WeightsError> {
        if depth > MAX_DEPTH {
            return Err(self.limit("container nesting depth", MAX_DEPTH as u64));
        }
        budget.nodes = budget.nodes.checked_sub(1).ok_or_else(|| self.limit("number of values", budget.max_nodes))?;
        let list = |items: &[Obj], storages: &mut Source<'_, '_>, budget: &mut Budget| {
            items.iter().map(|o| self.convert(o, depth + 1, storages, budget)).collect::<Result<Vec<_>, _>>()
        };
        Ok(match obj {
            Obj::None => Value::None,
            Obj::Bool(b) => Value::Bool(*b),
            Obj::Int(i) => Value::Int(*i),
            Obj::BigInt(_) => Value::Opaque("builtins.int".to_owned()),
            Obj::Float(f) => Value::Float(*f),
            Obj::Str(s) => {
                self.spend_bytes(budget, s.len())?;
                Value::Str(s.to_string())
            }
            Obj::Bytes(b) => {
                self.spend_bytes(budget, b.len())?;
                Value::Bytes(b.to_vec())
            }
            Obj::Tuple(t) => Value::Tuple(list(&t.items, storages, budget)?),
            Obj::Ref(id) => match &self.arena[*id] {
                Container::List(items) => Value::List(list(items, storages, budget)?),
                Container::Dict(entries) => {
                    let mut out = Vec::with_capacity(entries.len());
                    for (k, v) in entries {
                        out.push((
                            self.convert(k, depth + 1, storages, budget)?,
                            self.convert(v, depth + 1, storages, budget)?,
                        ));
                    }
                    Value::Dict(out)
                }
            },
            Obj::Global(g) => Value::Opaque(g.qualname.clone()),
            Obj::Storage(s) => Value::Opaque(format!("storage {}", s.key)),
            Obj::Tensor(spec) => Value::Tensor(self.materialize(spec, storages, budget)?),
            Obj::Opaque(name) => Value::Opaque(name.to_string()),
        })
    }

    fn materialize(
        &self,
        spec: &TensorSpec,
        storages: &mut Source<'_, '_>,
        budget: &mut Budget,
    ) -> Result<TensorData, WeightsError> {
        let st = &spec.storage;
        if let Source::Count(readers) = storages {
            *readers.entry(st.key.clone()).or_default() += 1;
            return Ok(TensorData { dtype: st.dtype, shape: spec.shape.clone(), bytes: Vec::new() });
        }
        let es = st.dtype.size();
        let storage_error =
            |reason: String| WeightsError::Storage { path: self.path.clone(), storage: st.key.clone(), reason };
        let raw =
            storages.bytes(&st.key).ok_or_else(|| storage_error("its data is missing from the file".to_owned()))?;
        let window_end = st.start.checked_add(st.len).and_then(|e| e.checked_mul(es));
        let window = match window_end {
            Some(end) if end <= raw.len() => &raw[st.start * es..end],
            _ => {
                return Err(storage_error(format!(
                    "holds {} bytes, fewer than the {} elements of {} its tensors need",
                    raw.len(),
                    st.start.saturating_add(st.len),
                    st.dtype
                )));
            }
        };
        let nbytes = spec.numel * es;
        self.spend_bytes(budget, nbytes)?;
        let contiguous = {
            let mut expect = 1usize;
            let mut ok = true;
            for (&d, &s) in spec.shape.iter().zip(&spec.stride).rev() {
                if d != 1 && s != expect {
                    ok = false;
                }
                expect *= d;
            }
            ok
        };
        let spans_storage = contiguous && st.start == 0 && spec.offset == 0 && nbytes == raw.len();
        let take = spans_storage && storages.is_last_reader(&st.key);
        let mut bytes = Vec::new();
        if !take && spec.numel > 0 {
            bytes.reserve_exact(nbytes);
            if contiguous {
                bytes.extend_from_slice(&window[spec.offset * es..(spec.offset + spec.numel) * es]);
            } else {
                gather(window, es, spec, &mut bytes);
            }
        }
        if let Some(storage) = storages.release(&st.key)
            && take
        {
            bytes = storage;
        }
        Ok(TensorData { dtype: st.dtype, shape: spec.shape.clone(), bytes })
    }
}

/// Copies a strided view element by element, C order. The spec was checked
/// to stay inside `window`.
fn gather(window: &[u8], es: usize, spec: &TensorSpec, out: &mut Vec<u8>) {
    let rank = spec.shape.len();
    let mut index = vec![0usize; rank];
    let mut pos = spec.offset;
    for _ in 0..spec.numel {
        out.extend_from_slice(&window[pos * es..(pos + 1) * es]);
        for d in (0..rank).rev() {
            index[d] += 1;
            if index[d] < spec.shape[d] {
                pos += spec.stride[d];
                break;
            }
            pos -= spec.stride[d] * (spec.shape[d] - 1);
            index[d] = 0;
        }
    }
}
