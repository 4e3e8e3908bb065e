//! The pickle opcodes this reader implements (protocols 2 to 5, binary
//! forms only), named as in CPython's `pickletools`. Any other byte is an
//! unknown opcode.

/// Protocol version (one byte); must be 5 or lower.
pub(super) const PROTO: u8 = 0x80;
/// Start of a frame (8-byte length): a buffering hint, checked to fit.
pub(super) const FRAME: u8 = 0x95;
/// End of the pickle: the top of the stack is the result.
pub(super) const STOP: u8 = b'.';

/// Push a mark: the start of a variable-length group of stack items.
pub(super) const MARK: u8 = b'(';
/// Discard the top of the stack.
pub(super) const POP: u8 = b'0';
/// Discard everything down to and including the topmost mark.
pub(super) const POP_MARK: u8 = b'1';
/// Push the top of the stack again.
pub(super) const DUP: u8 = b'2';

/// `None`.
pub(super) const NONE: u8 = b'N';
/// `True`.
pub(super) const NEWTRUE: u8 = 0x88;
/// `False`.
pub(super) const NEWFALSE: u8 = 0x89;
/// A 4-byte signed integer.
pub(super) const BININT: u8 = b'J';
/// A 1-byte unsigned integer.
pub(super) const BININT1: u8 = b'K';
/// A 2-byte unsigned integer.
pub(super) const BININT2: u8 = b'M';
/// An integer of up to 255 bytes, two's complement, little-endian.
pub(super) const LONG1: u8 = 0x8a;
/// An integer with a 4-byte length, two's complement, little-endian.
pub(super) const LONG4: u8 = 0x8b;
/// A big-endian IEEE 754 double.
pub(super) const BINFLOAT: u8 = b'G';

/// A UTF-8 string with a 1-byte length.
pub(super) const SHORT_BINUNICODE: u8 = 0x8c;
/// A UTF-8 string with a 4-byte length.
pub(super) const BINUNICODE: u8 = b'X';
/// A UTF-8 string with an 8-byte length.
pub(super) const BINUNICODE8: u8 = 0x8d;
/// A Python 2 string with a 1-byte length (read as UTF-8).
pub(super) const SHORT_BINSTRING: u8 = b'U';
/// A Python 2 string with a signed 4-byte length (read as UTF-8).
pub(super) const BINSTRING: u8 = b'T';
/// Bytes with a 1-byte length.
pub(super) const SHORT_BINBYTES: u8 = b'C';
/// Bytes with a 4-byte length.
pub(super) const BINBYTES: u8 = b'B';
/// Bytes with an 8-byte length.
pub(super) const BINBYTES8: u8 = 0x8e;
/// A bytearray with an 8-byte length (read as bytes).
pub(super) const BYTEARRAY8: u8 = 0x96;

/// The empty tuple.
pub(super) const EMPTY_TUPLE: u8 = b')';
/// A tuple of the top stack item.
pub(super) const TUPLE1: u8 = 0x85;
/// A tuple of the top two stack items.
pub(super) const TUPLE2: u8 = 0x86;
/// A tuple of the top three stack items.
pub(super) const TUPLE3: u8 = 0x87;
/// A tuple of the items above the topmost mark.
pub(super) const TUPLE: u8 = b't';

/// An empty list.
pub(super) const EMPTY_LIST: u8 = b']';
/// A list of the items above the topmost mark.
pub(super) const LIST: u8 = b'l';
/// Append the top item to the list below it.
pub(super) const APPEND: u8 = b'a';
/// Append the items above the topmost mark to the list below the mark.
pub(super) const APPENDS: u8 = b'e';
/// An empty dict.
pub(super) const EMPTY_DICT: u8 = b'}';
/// A dict of the key/value pairs above the topmost mark.
pub(super) const DICT: u8 = b'd';
/// Set one key/value pair (the top two items) in the dict below them.
pub(super) const SETITEM: u8 = b's';
/// Set the key/value pairs above the topmost mark in the dict below it.
pub(super) const SETITEMS: u8 = b'u';
/// An empty set.
pub(super) const EMPTY_SET: u8 = 0x8f;
/// Add the items above the topmost mark to the set below it.
pub(super) const ADDITEMS: u8 = 0x90;
/// A frozenset of the items above the topmost mark.
pub(super) const FROZENSET: u8 = 0x91;

/// Store the top item in the memo, at a 1-byte index.
pub(super) const BINPUT: u8 = b'q';
/// Store the top item in the memo, at a 4-byte index.
pub(super) const LONG_BINPUT: u8 = b'r';
/// Store the top item in the memo, at the next free index.
pub(super) const MEMOIZE: u8 = 0x94;
/// Push a memo entry, by 1-byte index.
pub(super) const BINGET: u8 = b'h';
/// Push a memo entry, by 4-byte index.
pub(super) const LONG_BINGET: u8 = b'j';

/// A global named by two text lines, module and name.
pub(super) const GLOBAL: u8 = b'c';
/// A global named by the top two stack items, module and name.
pub(super) const STACK_GLOBAL: u8 = 0x93;
/// `callable(*args)`, from the top two stack items.
pub(super) const REDUCE: u8 = b'R';
/// `cls.__new__(cls, *args)`, from the top two stack items.
pub(super) const NEWOBJ: u8 = 0x81;
/// `cls.__new__(cls, *args, **kwargs)`, from the top three stack items.
pub(super) const NEWOBJ_EX: u8 = 0x92;
/// Set the state of the object below the top item (`__setstate__`).
pub(super) const BUILD: u8 = b'b';
/// The object a persistent id (the top item) stands for.
pub(super) const BINPERSID: u8 = b'Q';
