//! Writing results: PNGs and NumPy arrays, each to a temporary file in the
//! output folder and renamed into place, so no reader ever sees half a file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use image::DynamicImage;
use image::codecs::png::PngEncoder;
use ndarray::Array3;
use ndarray_npy::WriteNpyExt;
use tempfile::NamedTempFile;

/// Files written to temporary names, renamed into place together by
/// [`Staged::commit`]; dropped uncommitted, they vanish.
#[derive(Default)]
pub(crate) struct Staged {
    files: Vec<(NamedTempFile, PathBuf)>,
}

impl Staged {
    /// Writes `path`'s future content through `write`.
    pub(crate) fn add(
        &mut self,
        path: PathBuf,
        write: impl FnOnce(&mut BufWriter<&mut File>) -> Result<()>,
    ) -> Result<()> {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut tmp =
            NamedTempFile::new_in(dir).with_context(|| format!("{}: cannot create a file there", dir.display()))?;
        let mut writer = BufWriter::new(tmp.as_file_mut());
        write(&mut writer).with_context(|| format!("{}: cannot write", path.display()))?;
        writer.flush().with_context(|| format!("{}: cannot write", path.display()))?;
        drop(writer);
        // Temporary files are private (0600); results are ordinary files.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644))?;
        }
        self.files.push((tmp, path));
        Ok(())
    }

    /// Renames every staged file to its final name.
    pub(crate) fn commit(self) -> Result<()> {
        for (tmp, path) in self.files {
            tmp.persist(&path).with_context(|| format!("{}: cannot rename into place", path.display()))?;
        }
        Ok(())
    }
}

/// A PNG from any image the `image` crate can encode.
pub(crate) fn png(image: DynamicImage) -> impl FnOnce(&mut BufWriter<&mut File>) -> Result<()> {
    move |w| Ok(image.write_with_encoder(PngEncoder::new(w))?)
}

/// An `f32` array as a NumPy `.npy` file (C order).
pub(crate) fn npy(array: Array3<f32>) -> impl FnOnce(&mut BufWriter<&mut File>) -> Result<()> {
    move |w| Ok(array.write_npy(w)?)
}
