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

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8], allowed: Allowlist) -> Result<Pickle, WeightsError> {
        unpickle(Path::new("test.pkl"), bytes, 0, allowed)
    }

    #[test]
    fn a_call_is_recorded_not_made() {
        let pickle = read(b"\x80\x02cmy.mod\nfn\nK\x05\x85R.", |_, _| true).unwrap();
        let Obj::Ref(id) = pickle.root else { panic!("{:?}", pickle.root) };
        let Origin::Call { callable: Obj::Global(g), args: Obj::Tuple(args), .. } = &pickle.arena[id].origin else {
            panic!("{:?}", pickle.arena[id]);
        };
        assert_eq!(g.qualname(), "my.mod.fn");
        assert!(matches!(args.items.as_slice(), [Obj::Int(5)]));
    }

    #[test]
    fn the_allowlist_sees_python_3_names_and_errors_keep_the_pickled_one() {
        let bytes = b"\x80\x02c__builtin__\nset\n)R.";
        assert!(read(bytes, |module, name| (module, name) == ("builtins", "set")).is_ok());
        let err = read(bytes, |_, _| false).unwrap_err();
        assert!(matches!(err, WeightsError::ForbiddenGlobal { ref module, offset: 2, .. } if module == "__builtin__"));
    }
}
