//! The protobuf wire format, read by field number with every length checked
//! against the bytes that hold it: a varint longer than 10 bytes or past 64
//! bits, a length past the end of its message, and the group wire types
//! (3, 4) or the undefined ones (6, 7) are errors at their offset.

/// What went wrong, and where (offset from the start of the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct WireError {
    /// Byte offset in the file.
    pub(super) offset: usize,
    /// What is wrong there.
    pub(super) reason: String,
}

/// One field's value, as its wire type holds it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2: a string, bytes, a message or a packed array, with the
    /// offset of its first byte in the file.
    Bytes(&'a [u8], usize),
    /// Wire type 5.
    Fixed32(u32),
}

/// The fields of one message, in order.
pub(super) struct Fields<'a> {
    data: &'a [u8],
    pos: usize,
    /// Offset of `data[0]` in the file.
    base: usize,
}

impl<'a> Fields<'a> {
    /// The fields of the message `data`, which starts at `base` in the file.
    pub(super) fn new(data: &'a [u8], base: usize) -> Self {
        Fields { data, pos: 0, base }
    }

    fn error(&self, at: usize, reason: impl Into<String>) -> WireError {
        WireError { offset: self.base + at, reason: reason.into() }
    }

    /// A varint at the current position.
    fn varint(&mut self) -> Result<u64, WireError> {
        let start = self.pos;
        let (data, pos) = (self.data, &mut self.pos);
        let next = || -> Result<Option<u8>, String> {
            let byte = data.get(*pos).copied();
            *pos += 1;
            Ok(byte)
        };
        decode_varint(next).map_err(|reason| self.error(start, reason))
    }

    /// `n` bytes at the current position.
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], WireError> {
        let start = self.pos;
        let end = start.checked_add(n).filter(|&end| end <= self.data.len());
        let end = end.ok_or_else(|| self.error(start, format!("{what} of {n} bytes runs past the end")))?;
        self.pos = end;
        Ok(&self.data[start..end])
    }

    /// The next field number and value, or `None` at the message's end.
    pub(super) fn next_field(&mut self) -> Option<Result<(u32, Value<'a>), WireError>> {
        (self.pos < self.data.len()).then(|| self.field())
    }

    fn field(&mut self) -> Result<(u32, Value<'a>), WireError> {
        let start = self.pos;
        let key = self.varint()?;
        let number = field_number(key).map_err(|reason| self.error(start, reason))?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => Value::Fixed64(u64::from_le_bytes(self.take(8, "fixed64")?.try_into().expect("8 bytes"))),
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| self.error(start, format!("length {len} too large")))?;
                let at = self.base + self.pos;
                Value::Bytes(self.take(len, "length-delimited field")?, at)
            }
            5 => Value::Fixed32(u32::from_le_bytes(self.take(4, "fixed32")?.try_into().expect("4 bytes"))),
            other => return Err(self.error(start, unread_wire_type(number, other))),
        };
        Ok((number, value))
    }
}

/// Decodes a varint from `next` (each call the next byte, `None` past the
/// end): at most 10 bytes, the tenth carrying only the 64th bit.
fn decode_varint<E: From<String>>(mut next: impl FnMut() -> Result<Option<u8>, E>) -> Result<u64, E> {
    let mut value = 0u64;
    for i in 0..10 {
        let byte = next()?.ok_or_else(|| E::from("truncated varint".into()))?;
        if i == 9 && byte > 1 {
            return Err(E::from("varint overflows 64 bits".into()));
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(E::from("varint longer than 10 bytes".into()))
}

/// The field number of a key, which must be positive and fit 32 bits.
fn field_number(key: u64) -> Result<u32, String> {
    u32::try_from(key >> 3)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("field number {} is not a valid protobuf field", key >> 3))
}

fn unread_wire_type(number: u32, wire_type: u64) -> String {
    format!("field {number} has wire type {wire_type}, which is not read")
}

/// A length-delimited field: its number, its bytes, their offset in the file.
pub(super) type BytesField<'a> = (u32, &'a [u8], usize);

/// A message read from a stream one top-level field at a time: each
/// length-delimited field's bytes are read into one reused buffer (never
/// longer than what is left of the stream), other fields are skipped, so
/// the message is never held whole.
pub(super) struct Stream<R> {
    reader: R,
    pos: usize,
    len: usize,
    buffer: Vec<u8>,
}

impl<R: std::io::Read> Stream<R> {
    /// The message `reader` holds, `len` bytes long.
    pub(super) fn new(reader: R, len: usize) -> Self {
        Stream { reader, pos: 0, len, buffer: Vec::new() }
    }

    fn error(&self, at: usize, reason: impl Into<String>) -> WireError {
        WireError { offset: at, reason: reason.into() }
    }

    /// Reads `n` bytes into the buffer.
    fn read(&mut self, n: usize, what: &str) -> Result<(), WireError> {
        let start = self.pos;
        if n > self.len - start {
            return Err(self.error(start, format!("{what} of {n} bytes runs past the end")));
        }
        self.buffer.resize(n, 0);
        self.reader
            .read_exact(&mut self.buffer)
            .map_err(|e| WireError { offset: start, reason: format!("reading {what}: {e}") })?;
        self.pos += n;
        Ok(())
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        let start = self.pos;
        let next = || -> Result<Option<u8>, String> {
            if self.pos == self.len {
                return Ok(None);
            }
            let mut byte = [0];
            self.reader.read_exact(&mut byte).map_err(|e| format!("reading a varint: {e}"))?;
            self.pos += 1;
            Ok(Some(byte[0]))
        };
        decode_varint(next).map_err(|reason| WireError { offset: start, reason })
    }

    /// The next length-delimited field: its number, bytes, and their offset;
    /// `None` at the end.
    pub(super) fn next_bytes(&mut self) -> Result<Option<BytesField<'_>>, WireError> {
        while self.pos < self.len {
            let start = self.pos;
            let key = self.varint()?;
            let number = field_number(key).map_err(|reason| self.error(start, reason))?;
            match key & 7 {
                0 => drop(self.varint()?),
                1 => self.read(8, "fixed64")?,
                5 => self.read(4, "fixed32")?,
                2 => {
                    let len = self.varint()?;
                    let len = usize::try_from(len).map_err(|_| self.error(start, format!("length {len} too large")))?;
                    let at = self.pos;
                    self.read(len, "length-delimited field")?;
                    return Ok(Some((number, &self.buffer, at)));
                }
                other => return Err(self.error(start, unread_wire_type(number, other))),
            }
        }
        Ok(None)
    }
}

/// A packed (or single) array of little-endian `f32`s, decoded as they are
/// consumed (a weight of 75 MB is not copied twice).
pub(super) fn floats(bytes: &[u8], at: usize) -> Result<impl ExactSizeIterator<Item = f32> + '_, WireError> {
    if !bytes.len().is_multiple_of(4) {
        let reason = format!("packed floats of {} bytes, not a multiple of 4", bytes.len());
        return Err(WireError { offset: at, reason });
    }
    Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))))
}

/// A packed array of varints.
pub(super) fn varints(bytes: &[u8], at: usize) -> Result<Vec<u64>, WireError> {
    let mut fields = Fields::new(bytes, at);
    let mut values = Vec::new();
    while fields.pos < bytes.len() {
        values.push(fields.varint()?);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(data: &[u8]) -> Result<(u32, Value<'_>), WireError> {
        Fields::new(data, 100).next_field().expect("a field")
    }

    #[test]
    fn reads_each_wire_type() {
        assert_eq!(first(&[0x08, 0x96, 0x01]).unwrap(), (1, Value::Varint(150)));
        assert_eq!(first(&[0x15, 0, 0, 0x80, 0x3f]).unwrap(), (2, Value::Fixed32(1.0f32.to_bits())));
        assert_eq!(first(&[0x19, 1, 0, 0, 0, 0, 0, 0, 0]).unwrap(), (3, Value::Fixed64(1)));
        assert_eq!(first(&[0x22, 2, b'h', b'i']).unwrap(), (4, Value::Bytes(b"hi", 102)));
        // Field 100, wire type 2: key 802 as a varint.
        assert_eq!(first(&[0xa2, 0x06, 0]).unwrap(), (100, Value::Bytes(b"", 103)));
        assert_eq!(varints(&[1, 0x96, 0x01], 0).unwrap(), [1, 150]);
        assert_eq!(floats(&2.5f32.to_le_bytes(), 0).unwrap().collect::<Vec<_>>(), [2.5]);
    }

    #[test]
    fn refuses_malformed_input_at_its_offset() {
        let cases: [(&[u8], &str, usize); 7] = [
            (&[0x08, 0x96], "truncated varint", 101),
            (&[0x22, 5, b'a'], "runs past the end", 102),
            (&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02], "overflows 64 bits", 101),
            (&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x81, 0], "overflows 64 bits", 101),
            (&[0x0e], "wire type 6", 100),
            (&[0x0f], "wire type 7", 100),
            (&[0x00], "not a valid protobuf field", 100),
        ];
        for (data, needle, offset) in cases {
            let err = first(data).unwrap_err();
            assert!(err.reason.contains(needle) && err.offset == offset, "{data:?}: {err:?}");
        }
        assert!(floats(&[0; 6], 9).err().unwrap().reason.contains("not a multiple of 4"));
        assert!(first(&[0x22, 0xff, 0xff, 0xff, 0xff, 0x0f]).unwrap_err().reason.contains("past the end"));
    }
}
