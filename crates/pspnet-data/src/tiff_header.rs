//! A TIFF header check made before the `tiff` crate sees the file.
//!
//! The `tiff` crate reserves room for a tag's values from the count its
//! directory entry declares (about 36 bytes per value, up to a million
//! values) before it reads them, and it reads the first directory before
//! any limit can be handed to it: a 725-byte file made it allocate 38 MB.
//! Values must lie inside the file, so an entry whose values would run past
//! its end is refused here, and the crate then allocates at most in
//! proportion to the file.

use std::io::{self, Read, Seek, SeekFrom};

/// Why a TIFF header was refused.
pub(crate) type HeaderFault = String;

/// Checks the first image file directory of a TIFF (classic or BigTIFF):
/// the directory and every value it points to must lie inside the file.
/// Files that are not TIFF pass unchecked.
pub(crate) fn check<R: Read + Seek>(reader: &mut R) -> io::Result<Result<(), HeaderFault>> {
    let len = reader.seek(SeekFrom::End(0))?;
    reader.seek(SeekFrom::Start(0))?;
    let mut magic = [0u8; 4];
    if len < 8 || reader.read_exact(&mut magic).is_err() {
        return Ok(Ok(()));
    }
    let big_endian = match &magic[..2] {
        b"II" => false,
        b"MM" => true,
        _ => return Ok(Ok(())),
    };
    let mut file = Fields { reader, big_endian };
    let big = match u16_at(&magic[2..], big_endian) {
        42 => false,
        43 => true,
        _ => return Ok(Ok(())),
    };
    let directory = if big {
        // BigTIFF: offset size (8) and a zero word precede the offset.
        file.skip(4)?;
        file.u64()?
    } else {
        u64::from(file.u32()?)
    };
    let (count_bytes, entry_bytes, inline_bytes) = if big { (8, 20, 8) } else { (2, 12, 4) };
    if directory.checked_add(count_bytes).is_none_or(|end| end > len) {
        return Ok(Err(format!(
            "its first directory (offset {directory}) lies past the end of the file ({len} bytes)"
        )));
    }
    file.reader.seek(SeekFrom::Start(directory))?;
    let entries = if big { file.u64()? } else { u64::from(file.u16()?) };
    let table_end = entries.checked_mul(entry_bytes).and_then(|b| b.checked_add(directory + count_bytes));
    if table_end.is_none_or(|end| end > len) {
        return Ok(Err(format!(
            "its first directory declares {entries} entries, more than the file ({len} bytes) holds"
        )));
    }
    for _ in 0..entries {
        let tag = file.u16()?;
        let value_type = file.u16()?;
        let (count, offset) =
            if big { (file.u64()?, file.u64()?) } else { (u64::from(file.u32()?), u64::from(file.u32()?)) };
        // Entries of unknown types are skipped by the decoder.
        let Some(size) = value_size(value_type) else { continue };
        let bytes = count.checked_mul(size);
        if bytes.is_some_and(|b| b <= inline_bytes) {
            continue;
        }
        if bytes.and_then(|b| b.checked_add(offset)).is_none_or(|end| end > len) {
            return Ok(Err(format!(
                "tag {tag} declares {count} values at offset {offset}, past the end of the file ({len} bytes)"
            )));
        }
    }
    Ok(Ok(()))
}

/// Bytes per value of a TIFF field type; `None` for types the decoder skips.
fn value_size(value_type: u16) -> Option<u64> {
    match value_type {
        1 | 2 | 6 | 7 => Some(1),              // BYTE, ASCII, SBYTE, UNDEFINED
        3 | 8 => Some(2),                      // SHORT, SSHORT
        4 | 9 | 11 | 13 => Some(4),            // LONG, SLONG, FLOAT, IFD
        5 | 10 | 12 | 16 | 17 | 18 => Some(8), // RATIONAL, SRATIONAL, DOUBLE, LONG8, SLONG8, IFD8
        _ => None,
    }
}

fn u16_at(bytes: &[u8], big_endian: bool) -> u16 {
    let pair = [bytes[0], bytes[1]];
    if big_endian { u16::from_be_bytes(pair) } else { u16::from_le_bytes(pair) }
}

/// Integers read in the file's byte order.
struct Fields<'a, R> {
    reader: &'a mut R,
    big_endian: bool,
}

impl<R: Read> Fields<'_, R> {
    fn bytes<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let mut buf = [0u8; N];
        self.reader.read_exact(&mut buf)?;
        if self.big_endian {
            buf.reverse();
        }
        Ok(buf)
    }

    fn skip(&mut self, n: u64) -> io::Result<()> {
        io::copy(&mut self.reader.take(n), &mut io::sink()).map(drop)
    }

    fn u16(&mut self) -> io::Result<u16> {
        self.bytes().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> io::Result<u32> {
        self.bytes().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> io::Result<u64> {
        self.bytes().map(u64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    /// A little-endian classic TIFF: header, then one directory at offset 8
    /// with the given (tag, type, count, offset) entries.
    fn tiff(entries: &[(u16, u16, u32, u32)], len: usize) -> Vec<u8> {
        let mut bytes = b"II*\0".to_vec();
        bytes.extend(8u32.to_le_bytes());
        bytes.extend((entries.len() as u16).to_le_bytes());
        for &(tag, value_type, count, offset) in entries {
            bytes.extend(tag.to_le_bytes());
            bytes.extend(value_type.to_le_bytes());
            bytes.extend(count.to_le_bytes());
            bytes.extend(offset.to_le_bytes());
        }
        bytes.resize(len.max(bytes.len()), 0);
        bytes
    }

    fn verdict(bytes: &[u8]) -> Result<(), HeaderFault> {
        check(&mut Cursor::new(bytes)).unwrap()
    }

    #[test]
    fn values_inside_the_file_pass() {
        // Width inline; 64 strip offsets (LONG) at 100..356 of a 400-byte file.
        assert_eq!(verdict(&tiff(&[(256, 3, 1, 640), (273, 4, 64, 100)], 400)), Ok(()));
        // Not TIFF at all: left to the other decoders.
        assert_eq!(verdict(b"\x89PNG\r\n\x1a\n...."), Ok(()));
    }

    #[test]
    fn values_past_the_end_are_refused() {
        // A million BYTE values from a 725-byte file: the finding's shape.
        let err = verdict(&tiff(&[(700, 1, 1_000_000, 30)], 725)).unwrap_err();
        assert_eq!(err, "tag 700 declares 1000000 values at offset 30, past the end of the file (725 bytes)");
        // Exactly to the end is fine; one past is not (64 LONGs = 256 bytes).
        assert_eq!(verdict(&tiff(&[(273, 4, 64, 144)], 400)), Ok(()));
        assert!(verdict(&tiff(&[(273, 4, 64, 145)], 400)).is_err());
    }

    #[test]
    fn directories_past_the_end_are_refused() {
        let mut bytes = tiff(&[], 20);
        bytes[4..8].copy_from_slice(&1000u32.to_le_bytes());
        assert!(verdict(&bytes).unwrap_err().contains("first directory (offset 1000)"));
        let mut bytes = tiff(&[(256, 3, 1, 640)], 26);
        bytes[8..10].copy_from_slice(&60_000u16.to_le_bytes());
        assert!(verdict(&bytes).unwrap_err().contains("declares 60000 entries"));
    }

    #[test]
    fn big_endian_and_bigtiff_are_read() {
        // Big-endian classic: the same million-value entry.
        let mut bytes = b"MM\0*".to_vec();
        bytes.extend(8u32.to_be_bytes());
        bytes.extend(1u16.to_be_bytes());
        bytes.extend(700u16.to_be_bytes());
        bytes.extend(1u16.to_be_bytes());
        bytes.extend(1_000_000u32.to_be_bytes());
        bytes.extend(30u32.to_be_bytes());
        bytes.resize(100, 0);
        assert!(verdict(&bytes).unwrap_err().contains("1000000 values"));
        // BigTIFF, little-endian: 8-byte counts and offsets.
        let mut bytes = b"II+\0".to_vec();
        bytes.extend(8u16.to_le_bytes());
        bytes.extend(0u16.to_le_bytes());
        bytes.extend(16u64.to_le_bytes());
        bytes.extend(1u64.to_le_bytes());
        bytes.extend(273u16.to_le_bytes());
        bytes.extend(16u16.to_le_bytes());
        bytes.extend(u64::MAX.to_le_bytes());
        bytes.extend(0u64.to_le_bytes());
        bytes.resize(100, 0);
        assert!(verdict(&bytes).unwrap_err().contains(&format!("{} values", u64::MAX)));
    }
}
