use std::path::PathBuf;

use pspnet_data::DataError;
use pspnet_model::ModelError;

/// Why a pipeline step failed; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An image, a label map or a dataset folder could not be read.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The model could not be loaded or run.
    #[error(transparent)]
    Model(Box<ModelError>),
    /// A label map whose size is not its image's (or its saved prediction's).
    #[error("{}: label map is {}x{}, but {} is {}x{}", label.display(), label_size[0], label_size[1], other.display(), other_size[0], other_size[1])]
    SizeMismatch {
        /// The label map.
        label: PathBuf,
        /// Its width and height.
        label_size: [u32; 2],
        /// The image or the prediction.
        other: PathBuf,
        /// Its width and height.
        other_size: [u32; 2],
    },
    /// A saved prediction holding a value that is no class.
    #[error("{}: prediction {value} is not a class (0..{classes})", path.display())]
    Prediction {
        /// The prediction's label PNG.
        path: PathBuf,
        /// The value.
        value: u16,
        /// How many classes there are.
        classes: usize,
    },
    /// The network failed on an image.
    #[error("{}: inference failed: {source}", image.display())]
    Inference {
        /// The image.
        image: PathBuf,
        /// Why.
        source: Box<ModelError>,
    },
}

impl From<ModelError> for Error {
    fn from(e: ModelError) -> Self {
        Error::Model(Box::new(e))
    }
}
