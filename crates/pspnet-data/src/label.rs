//! Label maps: PNGs whose pixel values are class ids (a palette PNG's
//! indices, never its colours).

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Seek};
use std::path::Path;

use crate::DataError;

/// A label map's raw values, row by row, with its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMap {
    /// One value per pixel, row by row.
    pub values: Vec<u16>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// Decodes a grayscale or palette PNG of 1 to 16 bits as raw values. A map
/// whose header declares more than `max_pixels` pixels is refused before
/// anything is allocated; `path` names it in errors.
pub fn decode_label_png(path: &Path, bytes: &[u8], max_pixels: u64) -> Result<LabelMap, DataError> {
    decode(path, Cursor::new(bytes), max_pixels)
}

/// [`decode_label_png`] of a file, streamed from it.
pub fn read_label_png(path: &Path, max_pixels: u64) -> Result<LabelMap, DataError> {
    let file =
        File::open(path).map_err(|source| DataError::Io { path: path.to_path_buf(), what: "cannot open", source })?;
    decode(path, BufReader::new(file), max_pixels)
}

/// [`decode_label_png`] from any reader.
fn decode<R: BufRead + Seek>(path: &Path, input: R, max_pixels: u64) -> Result<LabelMap, DataError> {
    let error = |reason: String| DataError::Decode { path: path.to_path_buf(), reason };
    let mut decoder = png::Decoder::new(input);
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder.read_info().map_err(|e| error(format!("not a PNG: {e}")))?;
    let (width, height) = (reader.info().width, reader.info().height);
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(DataError::TooManyPixels { path: path.to_path_buf(), width, height, limit: max_pixels });
    }
    let (color, depth) = reader.output_color_type();
    if !matches!(color, png::ColorType::Grayscale | png::ColorType::Indexed) {
        return Err(error(format!("a label map must be a grayscale or palette PNG, this one is {color:?}")));
    }
    let size = reader.output_buffer_size().ok_or_else(|| error("label PNG too large".into()))?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).map_err(|e| error(format!("corrupt or truncated PNG: {e}")))?;
    let bits = depth as usize;
    let values = buf[..info.buffer_size()]
        .chunks_exact(info.line_size)
        .flat_map(|row| {
            (0..info.width as usize).map(move |x| match bits {
                16 => u16::from_be_bytes([row[2 * x], row[2 * x + 1]]),
                8 => row[x] as u16,
                _ => {
                    let per_byte = 8 / bits;
                    let shift = 8 - bits * (x % per_byte + 1);
                    ((row[x / per_byte] >> shift) & ((1 << bits) - 1) as u8) as u16
                }
            })
        })
        .collect();
    Ok(LabelMap { values, width: info.width, height: info.height })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A grayscale PNG of `depth` bits holding `values` (one row).
    fn png(depth: png::BitDepth, width: u32, data: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut bytes, width, 1);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(depth);
        encoder.write_header().unwrap().write_image_data(data).unwrap();
        bytes
    }

    #[test]
    fn reads_raw_values_of_every_depth() {
        let path = Path::new("l.png");
        let map = decode_label_png(path, &png(png::BitDepth::Sixteen, 2, &[1, 2, 0, 255]), 2).unwrap();
        assert_eq!(map, LabelMap { values: vec![258, 255], width: 2, height: 1 });
        // 4 bits: 0b0011_1010 -> 3, 10; 0b1111_0000 -> 15 (the fourth nibble is padding).
        let map = decode_label_png(path, &png(png::BitDepth::Four, 3, &[0x3a, 0xf0]), 3).unwrap();
        assert_eq!(map.values, [3, 10, 15]);
        let err = decode_label_png(path, &png(png::BitDepth::Eight, 3, &[1, 2, 3]), 2).unwrap_err().to_string();
        assert!(err.contains("l.png: 3x1 = 3 pixels is over the limit of 2"), "{err}");
        assert!(decode_label_png(path, b"\x89PNG", 9).unwrap_err().to_string().contains("l.png: not a PNG"));
    }
}
