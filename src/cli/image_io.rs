//! Reading input images the way the reference pipelines see them: 8-bit RGB.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use image::{ImageReader, RgbImage};

/// File extensions taken from a folder (lowercase).
pub(crate) const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp"];

/// Reads an image as 8-bit RGB: grayscale is replicated, alpha dropped,
/// 16-bit samples become round(v / 257), palette images use their colours.
/// Refuses images over `max_pixels` from the header, before decoding.
pub(crate) fn read_rgb(path: &Path, max_pixels: u64) -> Result<RgbImage> {
    let reader = ImageReader::open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let (w, h) = reader.into_dimensions().with_context(|| format!("{}: not a readable image", path.display()))?;
    if u64::from(w) * u64::from(h) > max_pixels {
        bail!(
            "{}: {w}x{h} = {} pixels is over the limit of {max_pixels} (--max-pixels)",
            path.display(),
            u64::from(w) * u64::from(h)
        );
    }
    let mut reader = ImageReader::open(path)?.with_guessed_format()?;
    reader.no_limits();
    let image = reader.decode().with_context(|| format!("{}: corrupt or truncated image", path.display()))?;
    Ok(image.to_rgb8())
}

/// Expands the inputs: files as given, folders to their image files (not
/// recursive), sorted by name. An empty folder is an error.
pub(crate) fn collect_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .with_context(|| format!("{}: cannot list folder", input.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && has_image_extension(p))
                .collect();
            if found.is_empty() {
                bail!("{}: folder holds no image files ({})", input.display(), IMAGE_EXTENSIONS.join(", "));
            }
            found.sort();
            files.extend(found);
        } else if input.exists() {
            files.push(input.clone());
        } else {
            bail!("{}: no such file or folder", input.display());
        }
    }
    Ok(files)
}

pub(crate) fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}
