//! A restricted unpickler: a stack machine over Python's pickle opcodes
//! (protocols 2 to 5) that builds a generic tree of inert values and never
//! calls anything.
//!
//! What the pickle would construct is recorded, not done: a global appears
//! as its module and name, `callable(*args)` as a node holding the callable,
//! the arguments and whatever later opcodes appended or set, a persistent id
//! as an entry in a table. Giving these meaning is the caller's business.
//! The one question the machine asks its caller is, as each global is
//! named, whether it is allowed at all: a forbidden name refuses the whole
//! file wherever it appears, even in data the result would drop.
//!
//! Nesting of marks and tuples is bounded, the memo is bounded by the input
//! size, and every length is checked against the input before anything is
//! allocated, so hostile input gives errors, not panics or exhausted memory.

mod input;
mod machine;
mod opcodes;
mod tree;

use std::path::Path;

pub(crate) use tree::{Global, Node, Obj, Origin, Pickle, kind};

use crate::WeightsError;

/// Deepest nesting of marks, tuples or converted containers.
pub(crate) const MAX_DEPTH: usize = 1000;

/// Whether the global `module.name` may appear in a pickle at all.
pub(crate) type Allowlist = fn(module: &str, name: &str) -> bool;

/// Reads one pickle from the start of `data` (which sits at file offset
/// `base` of `path`, for error messages), refusing with
/// [`WeightsError::ForbiddenGlobal`] any global `allowed` rejects.
pub(crate) fn unpickle(path: &Path, data: &[u8], base: u64, allowed: Allowlist) -> Result<Pickle, WeightsError> {
    machine::Machine::new(input::Input::new(path, data, base), allowed).run()
}
