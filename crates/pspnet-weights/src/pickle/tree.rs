//! The generic tree a pickle builds: Python values as inert data, with what
//! the pickle would have constructed recorded as its recipe.

use std::rc::Rc;

/// A value on the machine's stack, and in the tree it builds.
#[derive(Debug, Clone)]
pub(crate) enum Obj {
    /// `None`.
    None,
    /// `True` or `False`.
    Bool(bool),
    /// An integer that fits in `i64`.
    Int(i64),
    /// An integer too wide for `i64`: two's complement, little-endian.
    BigInt(Rc<[u8]>),
    /// A float.
    Float(f64),
    /// A text string.
    Str(Rc<str>),
    /// A byte string.
    Bytes(Rc<[u8]>),
    /// A tuple. Tuples are immutable, so they nest directly.
    Tuple(Rc<Tuple>),
    /// A mutable object: an index into [`Pickle::arena`].
    Ref(usize),
    /// A global (a class or function), by name.
    Global(Rc<Global>),
    /// What a persistent id stands for: an index into
    /// [`Pickle::persistent_ids`].
    Persistent(usize),
}

/// A tuple and how deeply tuples nest inside it.
#[derive(Debug)]
pub(crate) struct Tuple {
    /// 1 + the deepest tuple nested directly inside; bounded so that
    /// dropping and converting never recurse too deep.
    pub(crate) depth: usize,
    /// The items.
    pub(crate) items: Vec<Obj>,
}

/// A global named by `GLOBAL` or `STACK_GLOBAL`.
#[derive(Debug)]
pub(crate) struct Global {
    /// The module, with Python 2's `__builtin__` read as `builtins`.
    pub(crate) module: String,
    /// The name within the module.
    pub(crate) name: String,
}

impl Global {
    /// `module.name`.
    pub(crate) fn qualname(&self) -> String {
        format!("{}.{}", self.module, self.name)
    }
}

/// A mutable object: a list, set, dict, or an object the pickle
/// constructs. Every one of them records what `APPEND(S)` / `ADDITEMS` and
/// `SETITEM(S)` added to it, as Python would have passed them to `append`
/// and `__setitem__`.
#[derive(Debug)]
pub(crate) struct Node {
    /// What made it.
    pub(crate) origin: Origin,
    /// The items appended (a list's or set's elements).
    pub(crate) items: Vec<Obj>,
    /// The key/value pairs set (a dict's entries).
    pub(crate) entries: Vec<(Obj, Obj)>,
}

impl Node {
    /// A fresh node with nothing added yet.
    pub(crate) fn new(origin: Origin) -> Node {
        Node { origin, items: Vec::new(), entries: Vec::new() }
    }
}

/// How a mutable object came to be.
#[derive(Debug)]
pub(crate) enum Origin {
    /// A list, set or frozenset: a set's elements are kept in pickle order,
    /// as a list.
    List,
    /// A dict.
    Dict,
    /// `callable(*args)` (`REDUCE`).
    Call {
        /// What is called.
        callable: Obj,
        /// The arguments, normally a tuple.
        args: Obj,
        /// Offset of the opcode in the file.
        offset: u64,
    },
    /// `cls.__new__(cls, ...)` (`NEWOBJ`, `NEWOBJ_EX`). `__new__` only
    /// allocates for the classes an inert reader can give meaning to, so
    /// its arguments are not kept.
    New {
        /// The class.
        class: Obj,
        /// Offset of the opcode in the file.
        offset: u64,
    },
}

/// A persistent id: a reference to data outside the pickle, which the
/// pickler's owner defines (torch uses it for tensor storages).
#[derive(Debug)]
pub(crate) struct PersistentId {
    /// The id as pickled.
    pub(crate) id: Obj,
    /// Offset of its `BINPERSID` opcode in the file.
    pub(crate) offset: u64,
}

/// The tree one pickle builds.
#[derive(Debug)]
pub(crate) struct Pickle {
    /// The pickled object.
    pub(crate) root: Obj,
    /// Every mutable object, in the order the pickle made them; referred to
    /// by [`Obj::Ref`], so sharing through the memo behaves as in Python
    /// and dropping never recurses.
    pub(crate) arena: Vec<Node>,
    /// Every persistent id, in the order the pickle read them, whether or
    /// not the result keeps them.
    pub(crate) persistent_ids: Vec<PersistentId>,
    /// Offset just past the `STOP` opcode, relative to the data read.
    pub(crate) end: usize,
}

/// Python's name for the type of `obj`, for error messages; `arena` holds
/// the mutable objects it may refer to.
pub(crate) fn kind(arena: &[Node], obj: &Obj) -> &'static str {
    match obj {
        Obj::None => "None",
        Obj::Bool(_) => "bool",
        Obj::Int(_) | Obj::BigInt(_) => "int",
        Obj::Float(_) => "float",
        Obj::Str(_) => "str",
        Obj::Bytes(_) => "bytes",
        Obj::Tuple(_) => "tuple",
        Obj::Ref(id) => match arena[*id].origin {
            Origin::List => "list",
            Origin::Dict => "dict",
            Origin::Call { .. } | Origin::New { .. } => "object",
        },
        Obj::Global(_) => "global",
        Obj::Persistent(_) => "persistent id",
    }
}
