//! Torch's meaning of a generic pickle tree: persistent ids become storage
//! windows, and each constructed object becomes a tensor, a dict, a list, a
//! tuple, bytes or a placeholder.
//!
//! Objects are interpreted once each, in the order the pickle made them
//! (the order Python would have called them), so an argument is always
//! interpreted before the call that takes it. A call sees its arguments as
//! they are at the end of the pickle: a list appended to after a call took
//! it would differ from Python's; `torch.save` never writes one. Tensors are
//! validated here against their storage's declared size; their bytes are
//! read later.

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use super::StorageDecl;
use super::globals::{GlobalKind, resolve};
use crate::pickle::{Global, Node, Obj, Origin, Pickle, kind};
use crate::{DType, WeightsError};

/// A window of a storage that a tensor views.
#[derive(Debug)]
pub(super) struct StorageRef {
    /// The storage's key (its entry name in the file).
    pub(super) key: String,
    /// Element type.
    pub(super) dtype: DType,
    /// First element of the window in the whole storage.
    pub(super) start: usize,
    /// Elements in the window.
    pub(super) len: usize,
}

/// A tensor before its storage is read, checked to stay inside it.
#[derive(Debug)]
pub(super) struct TensorSpec {
    /// The storage window it views.
    pub(super) storage: Rc<StorageRef>,
    /// First element, within the window.
    pub(super) offset: usize,
    /// Size of each dimension.
    pub(super) shape: Vec<usize>,
    /// Strides in elements; 0 for dimensions of size 1.
    pub(super) stride: Vec<usize>,
    /// Number of elements.
    pub(super) numel: usize,
}

/// What torch makes of a mutable object of the tree.
#[derive(Debug)]
pub(super) enum Made {
    /// A tensor.
    Tensor(Rc<TensorSpec>),
    /// A dict: the entries its constructor's arguments gave, followed by
    /// the node's own entries.
    Dict(Vec<(Obj, Obj)>),
    /// A list (or set): the items its constructor's arguments gave,
    /// followed by the node's own items.
    List(Vec<Obj>),
    /// A tuple (`torch.Size`).
    Tuple(Obj),
    /// A byte string (`_codecs.encode`).
    Bytes(Rc<[u8]>),
    /// A placeholder naming the class or function that made it.
    Opaque(Rc<str>),
}

/// Torch's reading of one pickle.
#[derive(Debug)]
pub(super) struct Interpretation {
    /// What each node of the arena is, by index.
    pub(super) made: Vec<Made>,
    /// The storage window each persistent id names, by index.
    pub(super) windows: Vec<Rc<StorageRef>>,
    /// The storages the persistent ids declare, by key.
    pub(super) storages: BTreeMap<String, StorageDecl>,
}

/// Interprets `pickle`, read from `path`.
pub(super) fn interpret(path: &Path, pickle: &Pickle) -> Result<Interpretation, WeightsError> {
    let mut interpreter =
        Interpreter { path, pickle, storages: BTreeMap::new(), windows: Vec::new(), made: Vec::new() };
    for pid in &pickle.persistent_ids {
        let window = interpreter.storage(&pid.id, pid.offset)?;
        interpreter.windows.push(Rc::new(window));
    }
    for node in &pickle.arena {
        let made = interpreter.make(&node.origin)?;
        interpreter.check_additions(node, &made)?;
        interpreter.made.push(made);
    }
    let Interpreter { made, windows, storages, .. } = interpreter;
    Ok(Interpretation { made, windows, storages })
}

/// The interpretation in progress.
struct Interpreter<'a> {
    /// The file, for errors.
    path: &'a Path,
    /// The tree.
    pickle: &'a Pickle,
    /// Storages declared so far.
    storages: BTreeMap<String, StorageDecl>,
    /// Windows of the persistent ids interpreted so far.
    windows: Vec<Rc<StorageRef>>,
    /// Meaning of the nodes interpreted so far.
    made: Vec<Made>,
}

impl Interpreter<'_> {
    /// A [`WeightsError::Malformed`] at `offset`.
    fn malformed(&self, offset: u64, reason: impl Into<String>) -> WeightsError {
        WeightsError::Malformed { path: self.path.to_path_buf(), offset, reason: reason.into() }
    }

    /// A [`WeightsError::Storage`] for the storage `key`.
    fn storage_error(&self, key: &str, reason: String) -> WeightsError {
        WeightsError::Storage { path: self.path.to_path_buf(), storage: key.to_owned(), reason }
    }

    /// Python's name for the type of `obj`, for errors.
    fn kind(&self, obj: &Obj) -> &'static str {
        kind(&self.pickle.arena, obj)
    }

    /// What `global` is. The unpickler already refused globals outside the
    /// allowlist; this pass does not rely on it.
    fn resolve(&self, global: &Global, offset: u64) -> Result<GlobalKind, WeightsError> {
        resolve(&global.module, &global.name).ok_or_else(|| WeightsError::ForbiddenGlobal {
            path: self.path.to_path_buf(),
            module: global.module.clone(),
            name: global.name.clone(),
            offset,
        })
    }

    /// Items of a tuple or list argument.
    fn items_of<'o>(&'o self, obj: &'o Obj) -> Option<&'o [Obj]> {
        match obj {
            Obj::Tuple(t) => Some(&t.items),
            Obj::Ref(id) => {
                let node = &self.pickle.arena[*id];
                matches!(node.origin, Origin::List).then_some(node.items.as_slice())
            }
            _ => None,
        }
    }

    /// An integer argument that must not be negative.
    fn usize_arg(&self, obj: &Obj, what: &str, offset: u64) -> Result<usize, WeightsError> {
        match obj {
            Obj::Int(i) => usize::try_from(*i).map_err(|_| self.malformed(offset, format!("{what} is negative ({i})"))),
            Obj::Bool(b) => Ok(usize::from(*b)),
            other => Err(self.malformed(offset, format!("{what} is a {}, not an int", self.kind(other)))),
        }
    }

    /// A tuple of integer arguments that must not be negative.
    fn usize_list(&self, obj: &Obj, what: &str, offset: u64) -> Result<Vec<usize>, WeightsError> {
        let items = self
            .items_of(obj)
            .ok_or_else(|| self.malformed(offset, format!("{what} is a {}, not a tuple", self.kind(obj))))?;
        items.iter().map(|o| self.usize_arg(o, what, offset)).collect()
    }

    /// What torch made of `obj`, if it is a mutable object interpreted
    /// before the current one.
    fn made_of(&self, obj: &Obj) -> Option<&Made> {
        match obj {
            Obj::Ref(id) => self.made.get(*id),
            _ => None,
        }
    }

    /// The tensor `obj` is, if it is one.
    fn tensor_of(&self, obj: &Obj) -> Option<Rc<TensorSpec>> {
        match self.made_of(obj)? {
            Made::Tensor(spec) => Some(Rc::clone(spec)),
            _ => None,
        }
    }

    /// The storage window a persistent id names: torch's
    /// `('storage', type, key, location, numel[, view])`. The storage is
    /// declared, and must be declared alike wherever it appears again.
    fn storage(&mut self, pid: &Obj, offset: u64) -> Result<StorageRef, WeightsError> {
        let items = match pid {
            Obj::Tuple(t) => &t.items,
            other => {
                return Err(self.malformed(offset, format!("persistent id is a {}, not a tuple", self.kind(other))));
            }
        };
        let is_storage = matches!(items.first(), Some(Obj::Str(s)) if &**s == "storage");
        if !is_storage || !(5..=6).contains(&items.len()) {
            return Err(self.malformed(offset, "persistent id is not ('storage', type, key, location, numel[, view])"));
        }
        let dtype = match &items[1] {
            Obj::Global(g) => match self.resolve(g, offset)? {
                GlobalKind::DType(d) => d,
                _ => return Err(self.malformed(offset, format!("`{}` is not a storage type", g.qualname()))),
            },
            other => {
                return Err(self.malformed(offset, format!("storage type is a {}, not a global", self.kind(other))));
            }
        };
        let key = match &items[2] {
            Obj::Str(s) => s.to_string(),
            Obj::Int(i) => i.to_string(),
            other => return Err(self.malformed(offset, format!("storage key is a {}", self.kind(other)))),
        };
        let numel = self.usize_arg(&items[4], "storage size", offset)?;
        if numel.checked_mul(dtype.size()).is_none() {
            return Err(self.storage_error(&key, format!("{numel} elements is too many")));
        }
        self.declare(&key, StorageDecl { dtype, numel })?;
        let (start, len) = match items.get(5) {
            None | Some(Obj::None) => (0, numel),
            Some(view) => self.view(view, &key, numel, offset)?,
        };
        Ok(StorageRef { key, dtype, start, len })
    }

    /// Records that storage `key` is `decl`, refusing a second, different
    /// declaration.
    fn declare(&mut self, key: &str, decl: StorageDecl) -> Result<(), WeightsError> {
        match self.storages.get(key) {
            Some(old) if *old != decl => Err(self.storage_error(
                key,
                format!("declared as {} x {} and as {} x {}", old.numel, old.dtype, decl.numel, decl.dtype),
            )),
            Some(_) => Ok(()),
            None => {
                self.storages.insert(key.to_owned(), decl);
                Ok(())
            }
        }
    }

    /// `(start, len)` of a legacy storage view `(view_key, offset, size)`
    /// into storage `key` of `numel` elements.
    fn view(&self, view: &Obj, key: &str, numel: usize, offset: u64) -> Result<(usize, usize), WeightsError> {
        let Obj::Tuple(t) = view else {
            return Err(self.malformed(offset, "storage view metadata is not (key, offset, size)"));
        };
        let [_, start, len] = t.items.as_slice() else {
            return Err(self.malformed(offset, "storage view metadata is not (key, offset, size)"));
        };
        let start = self.usize_arg(start, "storage view offset", offset)?;
        let len = self.usize_arg(len, "storage view size", offset)?;
        if start.checked_add(len).is_none_or(|end| end > numel) {
            return Err(
                self.storage_error(key, format!("view of {len} elements at {start} is outside its {numel} elements"))
            );
        }
        Ok((start, len))
    }

    /// What the node made by `origin` is. Only a global can be called or
    /// instantiated, or else a placeholder, which makes another placeholder
    /// of the same name.
    fn make(&self, origin: &Origin) -> Result<Made, WeightsError> {
        match origin {
            Origin::List => Ok(Made::List(Vec::new())),
            Origin::Dict => Ok(Made::Dict(Vec::new())),
            Origin::Call { callable: Obj::Global(global), args, offset } => self.call(global, args, *offset),
            Origin::New { class: Obj::Global(global), offset } => self.instantiate(global, *offset),
            Origin::Call { callable, offset, .. } => self
                .placeholder(callable)
                .ok_or_else(|| self.malformed(*offset, format!("cannot call a {}", self.kind(callable)))),
            Origin::New { class, offset } => self
                .placeholder(class)
                .ok_or_else(|| self.malformed(*offset, format!("NEWOBJ on a {}", self.kind(class)))),
        }
    }

    /// Another placeholder of the same name, if `obj` is a placeholder.
    fn placeholder(&self, obj: &Obj) -> Option<Made> {
        match self.made_of(obj)? {
            Made::Opaque(name) => Some(Made::Opaque(Rc::clone(name))),
            _ => None,
        }
    }

    /// `global.__new__(global)`: an empty dict or list for those classes,
    /// else a placeholder.
    fn instantiate(&self, global: &Global, offset: u64) -> Result<Made, WeightsError> {
        Ok(match self.resolve(global, offset)? {
            GlobalKind::OrderedDict | GlobalKind::DefaultDict => Made::Dict(Vec::new()),
            GlobalKind::Set => Made::List(Vec::new()),
            _ => Made::Opaque(Rc::from(global.qualname())),
        })
    }

    /// `global(*args)`.
    fn call(&self, global: &Global, args: &Obj, offset: u64) -> Result<Made, WeightsError> {
        let kind = self.resolve(global, offset)?;
        let args = self.items_of(args).ok_or_else(|| {
            self.malformed(
                offset,
                format!("arguments of `{}` are a {}, not a tuple", global.qualname(), self.kind(args)),
            )
        })?;
        match kind {
            GlobalKind::RebuildTensor => self.rebuild_tensor(args, offset).map(|spec| Made::Tensor(Rc::new(spec))),
            GlobalKind::RebuildParameter => match args.first().and_then(|a| self.tensor_of(a)) {
                Some(spec) => Ok(Made::Tensor(spec)),
                None => Err(self.malformed(offset, "_rebuild_parameter's first argument is not a tensor")),
            },
            GlobalKind::OrderedDict => self.ordered_dict(args.first(), offset),
            GlobalKind::DefaultDict => Ok(Made::Dict(Vec::new())),
            GlobalKind::Set => {
                Ok(Made::List(args.first().and_then(|a| self.items_of(a)).map(<[Obj]>::to_vec).unwrap_or_default()))
            }
            GlobalKind::Size => match args.first() {
                Some(t @ Obj::Tuple(_)) => Ok(Made::Tuple(t.clone())),
                _ => Err(self.malformed(offset, "torch.Size's argument is not a tuple")),
            },
            GlobalKind::CodecsEncode => self.encode(global, args, offset),
            GlobalKind::DType(_) | GlobalKind::Placeholder => Ok(Made::Opaque(Rc::from(global.qualname()))),
        }
    }

    /// `OrderedDict(pairs)`: the pairs, each a 2-item tuple or list.
    fn ordered_dict(&self, pairs: Option<&Obj>, offset: u64) -> Result<Made, WeightsError> {
        let pairs = pairs.and_then(|p| self.items_of(p)).unwrap_or_default();
        let entries = pairs.iter().map(|pair| match self.items_of(pair) {
            Some([key, value]) => Ok((key.clone(), value.clone())),
            _ => Err(self.malformed(offset, "OrderedDict item is not a pair")),
        });
        entries.collect::<Result<_, _>>().map(Made::Dict)
    }

    /// `_codecs.encode(text, encoding)`, with which protocol 2 pickles bytes:
    /// latin-1 maps each character to one byte, anything else is taken as
    /// UTF-8.
    fn encode(&self, global: &Global, args: &[Obj], offset: u64) -> Result<Made, WeightsError> {
        match args {
            [Obj::Str(s), Obj::Str(encoding)] if matches!(&**encoding, "latin1" | "latin-1") => {
                let bytes: Option<Vec<u8>> = s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect();
                let bytes = bytes.ok_or_else(|| self.malformed(offset, "latin1 text above U+00FF"))?;
                Ok(Made::Bytes(Rc::from(bytes)))
            }
            [Obj::Str(s), ..] => Ok(Made::Bytes(Rc::from(s.as_bytes()))),
            _ => Ok(Made::Opaque(Rc::from(global.qualname()))),
        }
    }

    /// `_rebuild_tensor(storage, offset, size, stride, ...)`: a view of the
    /// storage, checked to stay inside it.
    fn rebuild_tensor(&self, args: &[Obj], at: u64) -> Result<TensorSpec, WeightsError> {
        let [storage, offset, size, stride, ..] = args else {
            return Err(self.malformed(at, "_rebuild_tensor needs (storage, offset, size, stride)"));
        };
        let Obj::Persistent(id) = storage else {
            let found = self.kind(storage);
            return Err(self.malformed(at, format!("_rebuild_tensor's first argument is a {found}, not a storage")));
        };
        let storage = Rc::clone(&self.windows[*id]);
        let offset = self.usize_arg(offset, "storage offset", at)?;
        let shape = self.usize_list(size, "tensor size", at)?;
        let mut stride = self.usize_list(stride, "tensor stride", at)?;
        if shape.len() != stride.len() {
            return Err(self.malformed(at, format!("tensor size {shape:?} and stride {stride:?} differ in rank")));
        }
        let numel = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .filter(|n| n.checked_mul(storage.dtype.size()).is_some())
            .ok_or_else(|| self.storage_error(&storage.key, format!("tensor shape {shape:?} has too many elements")))?;
        // A dimension of size 1 is never stepped along, whatever its stride.
        for (s, &d) in stride.iter_mut().zip(&shape) {
            if d == 1 {
                *s = 0;
            }
        }
        let spec = TensorSpec { storage, offset, shape, stride, numel };
        self.check_inside(&spec)?;
        Ok(spec)
    }

    /// Refuses a tensor whose last element lies past its storage window.
    fn check_inside(&self, spec: &TensorSpec) -> Result<(), WeightsError> {
        if spec.numel == 0 {
            return Ok(());
        }
        let last = spec
            .shape
            .iter()
            .zip(&spec.stride)
            .try_fold(spec.offset, |acc, (&d, &s)| (d - 1).checked_mul(s).and_then(|x| acc.checked_add(x)));
        if last.is_none_or(|last| last >= spec.storage.len) {
            let TensorSpec { shape, stride, offset, .. } = spec;
            return Err(self.storage_error(
                &spec.storage.key,
                format!(
                    "a tensor of shape {shape:?}, stride {stride:?} at offset {offset} \
                     reaches past the storage's {} elements",
                    spec.storage.len
                ),
            ));
        }
        Ok(())
    }

    /// Refuses items or entries that `APPEND` / `SETITEM` added to an
    /// object that cannot hold them: only lists take items, only dicts take
    /// entries, and placeholders take (and drop) both.
    fn check_additions(&self, node: &Node, made: &Made) -> Result<(), WeightsError> {
        let offset = match node.origin {
            Origin::Call { offset, .. } | Origin::New { offset, .. } => offset,
            // The unpickler already refused a dict's items and a list's entries.
            Origin::List | Origin::Dict => return Ok(()),
        };
        let (what, takes_items, takes_entries) = match made {
            Made::List(_) => ("list", true, false),
            Made::Dict(_) => ("dict", false, true),
            Made::Opaque(_) => ("object", true, true),
            Made::Tensor(_) => ("tensor", false, false),
            Made::Tuple(_) => ("tuple", false, false),
            Made::Bytes(_) => ("bytes", false, false),
        };
        if !node.items.is_empty() && !takes_items {
            return Err(self.malformed(offset, format!("APPEND to a {what}")));
        }
        if !node.entries.is_empty() && !takes_entries {
            return Err(self.malformed(offset, format!("SETITEM on a {what}")));
        }
        Ok(())
    }
}
