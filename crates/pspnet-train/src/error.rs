use std::path::PathBuf;

use pspnet_data::DataError;
use pspnet_model::ModelError;

/// Why training could not go on; every variant names the file, flag or
/// iteration.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A setting that cannot work.
    #[error("{0}")]
    Config(String),
    /// A sample could not be read.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The network or a checkpoint.
    #[error(transparent)]
    Model(Box<ModelError>),
    /// An image and its labels, or two images of one batch, differ in size.
    #[error("{}: {what} is {}x{}, but {} is {}x{}", first.display(), sizes[0][0], sizes[0][1], second.display(), sizes[1][0], sizes[1][1])]
    SizeMismatch {
        /// What was compared.
        what: &'static str,
        /// The first file.
        first: PathBuf,
        /// The second file.
        second: PathBuf,
        /// Their sizes `[h, w]`.
        sizes: [[usize; 2]; 2],
    },
    /// The loss stopped being a number.
    #[error("iteration {iteration}: the loss is {loss}; the last good checkpoint is {}", checkpoint.as_ref().map_or("none (nothing was saved yet)".to_string(), |p| p.display().to_string()))]
    NonFinite {
        /// The 1-based iteration.
        iteration: u64,
        /// Its loss.
        loss: f32,
        /// The newest checkpoint written before it.
        checkpoint: Option<PathBuf>,
    },
    /// A file could not be written or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
}

impl From<ModelError> for TrainError {
    fn from(e: ModelError) -> Self {
        TrainError::Model(Box::new(e))
    }
}
