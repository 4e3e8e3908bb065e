//! Input images, decoded the way the reference pipelines see them: 8-bit RGB.

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Seek};
use std::path::{Path, PathBuf};

use image::{ImageReader, RgbImage};

use crate::{DataError, tiff_header};

/// File extensions taken from a folder (lowercase).
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp"];

/// Decodes an image (PNG, JPEG, BMP, TIFF, WebP, told by its first bytes)
/// as 8-bit RGB: grayscale is replicated, alpha dropped, 16-bit samples
/// become round(v / 257), palette images use their colours. An image whose
/// header declares more than `max_pixels` pixels is refused before
/// decoding; `path` names it in errors.
pub fn decode_rgb(path: &Path, bytes: &[u8], max_pixels: u64) -> Result<RgbImage, DataError> {
    decode(path, || Ok(Cursor::new(bytes)), max_pixels)
}

/// [`decode_rgb`] of a file, streamed from it.
pub fn read_rgb(path: &Path, max_pixels: u64) -> Result<RgbImage, DataError> {
    let open = || {
        let file = File::open(path).map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            what: "cannot open",
            source,
        })?;
        Ok(BufReader::new(file))
    };
    decode(path, open, max_pixels)
}

/// The most a decoder may allocate per declared pixel, and once per image.
const DECODER_BYTES_PER_PIXEL: u64 = 16;
/// See [`DECODER_BYTES_PER_PIXEL`].
const DECODER_FIXED_BYTES: u64 = 8 << 20;

/// Reads the header of what `open` gives, checks the pixel limit, then
/// decodes from a second `open`.
fn decode<R: BufRead + Seek>(
    path: &Path,
    open: impl Fn() -> Result<R, DataError>,
    max_pixels: u64,
) -> Result<RgbImage, DataError> {
    let decode_error = |reason: &str, e: &dyn std::fmt::Display| DataError::Decode {
        path: path.to_path_buf(),
        reason: format!("{reason}: {e}"),
    };
    match tiff_header::check(&mut open()?) {
        Ok(Ok(())) => {}
        Ok(Err(fault)) => return Err(decode_error("corrupt TIFF header", &fault)),
        Err(e) => return Err(decode_error("cannot read", &e)),
    }
    let reader = || ImageReader::new(open()?).with_guessed_format().map_err(|e| decode_error("cannot read", &e));
    let (width, height) = reader()?.into_dimensions().map_err(|e| decode_error("not a readable image", &e))?;
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(DataError::TooManyPixels { path: path.to_path_buf(), width, height, limit: max_pixels });
    }
    let mut reader = reader()?;
    // The pixel limit above bounds the image; the decoder's memory is
    // bounded by what that image needs (16 bytes a pixel covers RGBA16
    // and the RGB copy) plus its fixed tables, so that a hostile header
    // cannot make it allocate beyond the pixels it declares.
    let mut limits = image::Limits::no_limits();
    limits.max_alloc = Some(DECODER_BYTES_PER_PIXEL * u64::from(width) * u64::from(height) + DECODER_FIXED_BYTES);
    reader.limits(limits);
    let image = reader.decode().map_err(|e| decode_error("corrupt or truncated image", &e))?;
    Ok(image.to_rgb8())
}

/// Expands the inputs: files as given, folders to their image files (not
/// recursive), sorted by name. An empty folder is an error.
pub fn collect_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, DataError> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .map_err(|source| DataError::Io { path: input.clone(), what: "cannot list folder", source })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && has_image_extension(p))
                .collect();
            if found.is_empty() {
                let reason = format!("folder holds no image files ({})", IMAGE_EXTENSIONS.join(", "));
                return Err(DataError::Layout { path: input.clone(), reason });
            }
            found.sort();
            files.extend(found);
        } else if input.exists() {
            files.push(input.clone());
        } else {
            return Err(DataError::Layout { path: input.clone(), reason: "no such file or folder".into() });
        }
    }
    Ok(files)
}

/// Whether the file's extension is one of [`IMAGE_EXTENSIONS`] (any case).
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        let image = RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 7]));
        image.write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
        bytes
    }

    #[test]
    fn decodes_from_bytes_within_the_pixel_limit() {
        let path = Path::new("mem.png");
        let image = decode_rgb(path, &png(3, 2), 6).unwrap();
        assert_eq!((image.dimensions(), image.get_pixel(2, 1).0), ((3, 2), [2, 1, 7]));
        let err = decode_rgb(path, &png(3, 2), 5).unwrap_err().to_string();
        assert!(err.contains("mem.png: 3x2 = 6 pixels is over the limit of 5"), "{err}");
        let mut truncated = png(3, 2);
        truncated.truncate(truncated.len() - 20);
        let err = decode_rgb(path, &truncated, 6).unwrap_err().to_string();
        assert!(err.contains("mem.png: corrupt or truncated image"), "{err}");
        assert!(decode_rgb(path, b"not an image", 6).unwrap_err().to_string().contains("mem.png"));
    }

    #[test]
    fn the_fuzzers_findings_are_refused_by_name() {
        // 725 bytes that made the tiff crate allocate 38 MB for one tag.
        let tiff = include_bytes!("../../../fuzz/findings/tiff-38mb-from-725-bytes.tif");
        let err = decode_rgb(Path::new("f.tif"), tiff, 4_000_000).unwrap_err().to_string();
        assert!(err.starts_with("f.tif: corrupt TIFF header: tag "), "{err}");
        // A VP8 partition longer than the file: one bounded buffer, then an error.
        let webp = include_bytes!("../../../fuzz/findings/image-webp-10mb-from-462-bytes.webp");
        let err = decode_rgb(Path::new("f.webp"), webp, 4_000_000).unwrap_err().to_string();
        assert!(err.starts_with("f.webp: corrupt or truncated image"), "{err}");
    }
}
