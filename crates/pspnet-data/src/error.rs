use std::path::PathBuf;

/// Why data could not be read; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file or folder could not be read.
    #[error("{}: {what}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The image declares more pixels than the limit allows.
    #[error("{}: {width}x{height} = {} pixels is over the limit of {limit} (--max-pixels)", path.display(), u64::from(*width) * u64::from(*height))]
    TooManyPixels {
        /// The file.
        path: PathBuf,
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// The limit.
        limit: u64,
    },
    /// The bytes are not an image this crate decodes, or are corrupt.
    #[error("{}: {reason}", path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A class file that does not list classes or colours.
    #[error("{}: {reason}", path.display())]
    ClassFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A label value the dataset's convention does not define.
    #[error("{}: label value {value} is not defined for {dataset}", path.display())]
    LabelValue {
        /// The label file.
        path: PathBuf,
        /// The value.
        value: u16,
        /// The dataset's name.
        dataset: &'static str,
    },
    /// A label that is neither a class of the model nor the ignore label.
    #[error("{}: label value {value} is not a class (0..{classes}) or the ignore label", path.display())]
    LabelClass {
        /// The label file.
        path: PathBuf,
        /// The raw value.
        value: u16,
        /// How many classes there are.
        classes: usize,
    },
    /// A dataset folder does not hold what its layout needs.
    #[error("{}: {reason}", path.display())]
    Layout {
        /// The file or folder.
        path: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
}
