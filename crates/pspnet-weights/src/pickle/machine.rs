//! The stack machine: Python's unpickler loop, with its stack, marks and
//! memo, building the generic tree instead of calling anything.
//!
//! Opcodes are handled by family. Each family method returns whether the
//! opcode was one of its own, so the loop tries them in turn and an opcode
//! no family claims is unknown.

use std::collections::HashMap;
use std::rc::Rc;

use super::input::Input;
use super::opcodes as op;
use super::tree::{Global, Node, Obj, Origin, PersistentId, Pickle, Tuple, kind};
use super::{Allowlist, MAX_DEPTH};
use crate::WeightsError;

/// The unpickler's state while it runs.
pub(super) struct Machine<'a> {
    /// The bytes being read.
    input: Input<'a>,
    /// Which globals may be named at all.
    allowed: Allowlist,
    /// The stack.
    stack: Vec<Obj>,
    /// Stack heights at each open `MARK`.
    marks: Vec<usize>,
    /// The memo, by index.
    memo: HashMap<u32, Obj>,
    /// The mutable objects, which [`Obj::Ref`] points into.
    arena: Vec<Node>,
    /// The persistent ids read so far.
    persistent_ids: Vec<PersistentId>,
}

impl<'a> Machine<'a> {
    /// A machine about to read `input`, refusing globals `allowed` rejects.
    pub(super) fn new(input: Input<'a>, allowed: Allowlist) -> Machine<'a> {
        Machine {
            input,
            allowed,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            arena: Vec::new(),
            persistent_ids: Vec::new(),
        }
    }

    /// Executes opcodes up to `STOP` and returns the tree.
    pub(super) fn run(mut self) -> Result<Pickle, WeightsError> {
        loop {
            let code = self.input.opcode()?;
            if code == op::STOP {
                return self.stop();
            }
            let known = self.framing(code)?
                || self.stack_op(code)?
                || self.scalar(code)?
                || self.text(code)?
                || self.tuple_op(code)?
                || self.container(code)?
                || self.memo_op(code)?
                || self.global(code)?
                || self.construction(code)?;
            if !known {
                return Err(WeightsError::UnknownOpcode {
                    path: self.input.path().to_path_buf(),
                    opcode: code,
                    offset: self.input.offset(),
                });
            }
        }
    }

    /// `STOP`: the top of the stack is the result.
    fn stop(mut self) -> Result<Pickle, WeightsError> {
        let root = self.pop()?;
        Ok(Pickle { root, arena: self.arena, persistent_ids: self.persistent_ids, end: self.input.pos() })
    }

    /// `PROTO` and `FRAME`, which only describe the stream.
    fn framing(&mut self, code: u8) -> Result<bool, WeightsError> {
        match code {
            op::PROTO => {
                let version = self.input.u8()?;
                if version > 5 {
                    return Err(self.input.malformed(format!("unsupported pickle protocol {version}")));
                }
            }
            op::FRAME => {
                let n = self.input.len_u64()?;
                if n > self.input.remaining() {
                    return Err(self.input.truncated(format!("a pickle frame of {n} bytes")));
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `MARK`, `POP`, `POP_MARK` and `DUP`.
    fn stack_op(&mut self, code: u8) -> Result<bool, WeightsError> {
        match code {
            op::MARK => {
                if self.marks.len() >= MAX_DEPTH {
                    return Err(self.input.limit("MARK nesting depth", MAX_DEPTH as u64));
                }
                self.marks.push(self.stack.len());
            }
            op::POP => drop(self.pop()?),
            op::POP_MARK => drop(self.pop_mark()?),
            op::DUP => {
                let top = self.top()?.clone();
                self.stack.push(top);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `None`, booleans, integers and floats.
    fn scalar(&mut self, code: u8) -> Result<bool, WeightsError> {
        let value = match code {
            op::NONE => Obj::None,
            op::NEWTRUE => Obj::Bool(true),
            op::NEWFALSE => Obj::Bool(false),
            op::BININT => Obj::Int(i32::from_le_bytes(self.input.array("BININT")?).into()),
            op::BININT1 => Obj::Int(self.input.u8()?.into()),
            op::BININT2 => Obj::Int(u16::from_le_bytes(self.input.array("BININT2")?).into()),
            op::LONG1 | op::LONG4 => {
                let n = if code == op::LONG1 { self.input.len_u8()? } else { self.input.len_i32("LONG4")? };
                long(self.input.take(n, "a long integer")?)
            }
            op::BINFLOAT => Obj::Float(f64::from_be_bytes(self.input.array("BINFLOAT")?)),
            _ => return Ok(false),
        };
        self.stack.push(value);
        Ok(true)
    }

    /// Strings and byte strings: a length of 1, 4 or 8 bytes, then the data.
    fn text(&mut self, code: u8) -> Result<bool, WeightsError> {
        let n = match code {
            op::SHORT_BINUNICODE | op::SHORT_BINSTRING | op::SHORT_BINBYTES => self.input.len_u8()?,
            op::BINUNICODE | op::BINBYTES => self.input.len_u32()?,
            op::BINUNICODE8 | op::BINBYTES8 | op::BYTEARRAY8 => self.input.len_u64()?,
            op::BINSTRING => self.input.len_i32("BINSTRING")?,
            _ => return Ok(false),
        };
        let value = match code {
            op::SHORT_BINBYTES | op::BINBYTES | op::BINBYTES8 | op::BYTEARRAY8 => Obj::Bytes(self.input.bytes(n)?),
            _ => Obj::Str(self.input.string(n)?),
        };
        self.stack.push(value);
        Ok(true)
    }

    /// The tuple opcodes.
    fn tuple_op(&mut self, code: u8) -> Result<bool, WeightsError> {
        let items = match code {
            op::EMPTY_TUPLE => Vec::new(),
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => self.pop_n(usize::from(code - op::TUPLE1) + 1)?,
            op::TUPLE => self.pop_mark()?,
            _ => return Ok(false),
        };
        let depth = 1 + items.iter().map(|item| if let Obj::Tuple(t) = item { t.depth } else { 0 }).max().unwrap_or(0);
        if depth > MAX_DEPTH {
            return Err(self.input.limit("tuple nesting depth", MAX_DEPTH as u64));
        }
        self.stack.push(Obj::Tuple(Rc::new(Tuple { depth, items })));
        Ok(true)
    }

    /// Lists, sets and dicts: making them and adding to them.
    fn container(&mut self, code: u8) -> Result<bool, WeightsError> {
        match code {
            op::EMPTY_LIST | op::EMPTY_SET => self.push_node(Origin::List),
            op::EMPTY_DICT => self.push_node(Origin::Dict),
            op::LIST | op::FROZENSET => {
                let items = self.pop_mark()?;
                self.push_node(Origin::List);
                self.append(items)?;
            }
            op::DICT => {
                let items = self.pop_mark()?;
                self.push_node(Origin::Dict);
                self.set_items(items)?;
            }
            op::APPEND => {
                let item = self.pop()?;
                self.append(vec![item])?;
            }
            op::APPENDS | op::ADDITEMS => {
                let items = self.pop_mark()?;
                self.append(items)?;
            }
            op::SETITEM => {
                let pair = self.pop_n(2)?;
                self.set_items(pair)?;
            }
            op::SETITEMS => {
                let items = self.pop_mark()?;
                self.set_items(items)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Storing to and fetching from the memo.
    fn memo_op(&mut self, code: u8) -> Result<bool, WeightsError> {
        match code {
            op::BINPUT => {
                let index = self.input.u8()?;
                self.memo_put(index.into())?;
            }
            op::LONG_BINPUT => {
                let index = self.input.u32()?;
                self.memo_put(index)?;
            }
            op::MEMOIZE => {
                let index = u32::try_from(self.memo.len()).map_err(|_| self.input.malformed("memo is full"))?;
                self.memo_put(index)?;
            }
            op::BINGET | op::LONG_BINGET => {
                let index = if code == op::BINGET { self.input.u8()?.into() } else { self.input.u32()? };
                let value = self.memo.get(&index).cloned();
                let value =
                    value.ok_or_else(|| self.input.malformed(format!("memo index {index} was never stored")))?;
                self.stack.push(value);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `GLOBAL` and `STACK_GLOBAL`: a global, refused at once, naming it,
    /// unless the allowlist admits it.
    fn global(&mut self, code: u8) -> Result<bool, WeightsError> {
        let (module, name) = match code {
            op::GLOBAL => (self.input.line()?, self.input.line()?),
            op::STACK_GLOBAL => match self.pop_n(2)?.as_slice() {
                [Obj::Str(module), Obj::Str(name)] => (module.to_string(), name.to_string()),
                _ => return Err(self.input.malformed("STACK_GLOBAL needs two strings")),
            },
            _ => return Ok(false),
        };
        // Python 3 reads Python 2's module of builtins under its new name.
        let canonical = if module == "__builtin__" { "builtins" } else { module.as_str() };
        if !(self.allowed)(canonical, &name) {
            return Err(WeightsError::ForbiddenGlobal {
                path: self.input.path().to_path_buf(),
                module,
                name,
                offset: self.input.offset(),
            });
        }
        self.stack.push(Obj::Global(Rc::new(Global { module: canonical.to_owned(), name })));
        Ok(true)
    }

    /// Constructing objects and persistent ids: recorded, never run.
    fn construction(&mut self, code: u8) -> Result<bool, WeightsError> {
        let offset = self.input.offset();
        match code {
            op::REDUCE => {
                let args = self.pop()?;
                let callable = self.pop()?;
                self.push_node(Origin::Call { callable, args, offset });
            }
            op::NEWOBJ | op::NEWOBJ_EX => {
                // The arguments (and NEWOBJ_EX's keyword arguments) go.
                self.pop_n(if code == op::NEWOBJ { 1 } else { 2 })?;
                let class = self.pop()?;
                self.push_node(Origin::New { class, offset });
            }
            op::BUILD => {
                // The state would go to `__setstate__`, which is never run;
                // the object it is for must exist all the same.
                self.pop()?;
                self.top()?;
            }
            op::BINPERSID => {
                let id = self.pop()?;
                self.persistent_ids.push(PersistentId { id, offset });
                self.stack.push(Obj::Persistent(self.persistent_ids.len() - 1));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Height of the stack at the innermost open mark: what lies below it
    /// is out of reach until `POP_MARK` or a collecting opcode closes it.
    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    /// Pops the top item.
    fn pop(&mut self) -> Result<Obj, WeightsError> {
        let floor = self.floor();
        match self.stack.pop() {
            Some(top) if self.stack.len() >= floor => Ok(top),
            _ => Err(self.input.malformed("stack underflow")),
        }
    }

    /// Pops the top `n` items, deepest first.
    fn pop_n(&mut self, n: usize) -> Result<Vec<Obj>, WeightsError> {
        if self.stack.len() < self.floor() + n {
            return Err(self.input.malformed("stack underflow"));
        }
        Ok(self.stack.split_off(self.stack.len() - n))
    }

    /// The top item.
    fn top(&self) -> Result<&Obj, WeightsError> {
        match self.stack.last() {
            Some(top) if self.stack.len() > self.floor() => Ok(top),
            _ => Err(self.input.malformed("stack underflow")),
        }
    }

    /// Pops the items above the innermost mark, and the mark.
    fn pop_mark(&mut self) -> Result<Vec<Obj>, WeightsError> {
        let mark = self.marks.pop().ok_or_else(|| self.input.malformed("no MARK on the stack"))?;
        Ok(self.stack.split_off(mark))
    }

    /// Pushes a new mutable object made by `origin`.
    fn push_node(&mut self, origin: Origin) {
        self.arena.push(Node::new(origin));
        self.stack.push(Obj::Ref(self.arena.len() - 1));
    }

    /// The mutable object on top of the stack, which `action` (naming the
    /// opcode's effect, for the error) needs.
    fn top_node(&self, action: &str) -> Result<usize, WeightsError> {
        match self.top()? {
            Obj::Ref(id) => Ok(*id),
            other => Err(self.input.malformed(format!("{action} a {}", kind(&self.arena, other)))),
        }
    }

    /// `APPEND(S)` / `ADDITEMS`: adds `items` to the object on top of the
    /// stack; a dict has no `append`.
    fn append(&mut self, items: Vec<Obj>) -> Result<(), WeightsError> {
        let id = self.top_node("APPEND to")?;
        let node = &mut self.arena[id];
        if let Origin::Dict = node.origin {
            return Err(self.input.malformed("APPEND to a dict"));
        }
        node.items.extend(items);
        Ok(())
    }

    /// `SETITEM(S)`: adds key/value pairs to the object on top of the
    /// stack; a list has no `__setitem__` for new keys.
    fn set_items(&mut self, items: Vec<Obj>) -> Result<(), WeightsError> {
        if !items.chunks_exact(2).remainder().is_empty() {
            return Err(self.input.malformed("SETITEMS with an odd number of items"));
        }
        let id = self.top_node("SETITEM on")?;
        let node = &mut self.arena[id];
        if let Origin::List = node.origin {
            return Err(self.input.malformed("SETITEM on a list"));
        }
        let mut items = items.into_iter();
        while let (Some(key), Some(value)) = (items.next(), items.next()) {
            node.entries.push((key, value));
        }
        Ok(())
    }

    /// Stores the top item in the memo. The memo can hold no more entries
    /// than the pickle has bytes, so a hostile one cannot grow it further.
    fn memo_put(&mut self, index: u32) -> Result<(), WeightsError> {
        if self.memo.len() > self.input.len() {
            return Err(self.input.limit("memo size", self.input.len() as u64));
        }
        let top = self.top()?.clone();
        self.memo.insert(index, top);
        Ok(())
    }
}

/// Decodes a `LONG1` / `LONG4` integer (two's complement, little-endian):
/// an [`Obj::Int`] when it fits in `i64`, else an [`Obj::BigInt`].
fn long(bytes: &[u8]) -> Obj {
    let Some(&last) = bytes.last() else {
        return Obj::Int(0);
    };
    let fill = if last & 0x80 != 0 { 0xff } else { 0 };
    let (low, high) = bytes.split_at(bytes.len().min(8));
    let mut buf = [fill; 8];
    buf[..low.len()].copy_from_slice(low);
    let value = i64::from_le_bytes(buf);
    let sign = if value < 0 { 0xff } else { 0 };
    if high.iter().all(|&b| b == sign) { Obj::Int(value) } else { Obj::BigInt(Rc::from(bytes)) }
}
