//! The bytes of one pickle, read front to back: every length is checked
//! against what is left before anything is copied or allocated.

use std::path::Path;
use std::rc::Rc;

use crate::WeightsError;

/// A cursor over the pickle's bytes that knows where they sit in the file,
/// so every error names the file and the offending opcode's offset.
pub(super) struct Input<'a> {
    /// The file, for errors.
    path: &'a Path,
    /// The pickle's bytes (and possibly what follows them).
    data: &'a [u8],
    /// Offset of `data` in the file.
    base: u64,
    /// Next byte to read.
    pos: usize,
    /// Start of the opcode being executed.
    op_start: usize,
}

impl<'a> Input<'a> {
    /// Reads `data`, which sits at offset `base` of the file `path`.
    pub(super) fn new(path: &'a Path, data: &'a [u8], base: u64) -> Input<'a> {
        Input { path, data, base, pos: 0, op_start: 0 }
    }

    /// The file, for errors.
    pub(super) fn path(&self) -> &'a Path {
        self.path
    }

    /// Total length of the data, which bounds the memo.
    pub(super) fn len(&self) -> usize {
        self.data.len()
    }

    /// Bytes read so far.
    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read.
    pub(super) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// File offset of the opcode being executed.
    pub(super) fn offset(&self) -> u64 {
        self.base.saturating_add(self.op_start as u64)
    }

    /// A [`WeightsError::Malformed`] at the current opcode.
    pub(super) fn malformed(&self, reason: impl Into<String>) -> WeightsError {
        WeightsError::Malformed { path: self.path.to_path_buf(), offset: self.offset(), reason: reason.into() }
    }

    /// A [`WeightsError::LimitExceeded`] at the current opcode.
    pub(super) fn limit(&self, what: &'static str, limit: u64) -> WeightsError {
        WeightsError::LimitExceeded { path: self.path.to_path_buf(), offset: self.offset(), what, limit }
    }

    /// A [`WeightsError::Truncated`] at the end of the data: `what` needed
    /// more bytes than there are.
    pub(super) fn truncated(&self, what: String) -> WeightsError {
        WeightsError::Truncated {
            path: self.path.to_path_buf(),
            offset: self.base.saturating_add(self.data.len() as u64),
            what,
        }
    }

    /// Reads the next opcode, which becomes the one errors point at.
    pub(super) fn opcode(&mut self) -> Result<u8, WeightsError> {
        self.op_start = self.pos;
        Ok(self.array::<1>("an opcode")?[0])
    }

    /// The next `n` bytes, which hold `what`.
    pub(super) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], WeightsError> {
        if n > self.remaining() {
            return Err(self.truncated(format!("{what} ({n} bytes) in a pickle")));
        }
        let bytes = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    /// The next `N` bytes, which hold `what`.
    pub(super) fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], WeightsError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    /// A 1-byte argument.
    pub(super) fn u8(&mut self) -> Result<u8, WeightsError> {
        Ok(self.array::<1>("an opcode argument")?[0])
    }

    /// A 4-byte little-endian argument.
    pub(super) fn u32(&mut self) -> Result<u32, WeightsError> {
        Ok(u32::from_le_bytes(self.array("a 4-byte argument")?))
    }

    /// A 1-byte length.
    pub(super) fn len_u8(&mut self) -> Result<usize, WeightsError> {
        self.u8().map(usize::from)
    }

    /// A 4-byte unsigned length.
    pub(super) fn len_u32(&mut self) -> Result<usize, WeightsError> {
        self.u32().map(|n| usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// A 4-byte signed length, the argument of opcode `what`.
    pub(super) fn len_i32(&mut self, what: &str) -> Result<usize, WeightsError> {
        let n = i32::from_le_bytes(self.array(what)?);
        usize::try_from(n).map_err(|_| self.malformed(format!("negative {what}")))
    }

    /// An 8-byte length; one beyond `usize` saturates, and so fails the
    /// check against the remaining bytes.
    pub(super) fn len_u64(&mut self) -> Result<usize, WeightsError> {
        let n = u64::from_le_bytes(self.array("an 8-byte length")?);
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// A newline-terminated UTF-8 line (a `GLOBAL` argument).
    pub(super) fn line(&mut self) -> Result<String, WeightsError> {
        let rest = &self.data[self.pos..];
        let Some(n) = rest.iter().position(|&b| b == b'\n') else {
            return Err(self.truncated("a GLOBAL name line".to_owned()));
        };
        let line = std::str::from_utf8(&rest[..n]).map_err(|_| self.malformed("GLOBAL name is not UTF-8"))?.to_owned();
        self.pos += n + 1;
        Ok(line)
    }

    /// A UTF-8 string of `n` bytes.
    pub(super) fn string(&mut self, n: usize) -> Result<Rc<str>, WeightsError> {
        let bytes = self.take(n, "a string")?;
        std::str::from_utf8(bytes).map(Rc::from).map_err(|_| self.malformed("string is not valid UTF-8"))
    }

    /// A byte string of `n` bytes.
    pub(super) fn bytes(&mut self, n: usize) -> Result<Rc<[u8]>, WeightsError> {
        self.take(n, "a byte string").map(Rc::from)
    }
}
