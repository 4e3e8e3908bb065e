//! Scene-parsing data for pspnet-rs, knowing nothing of networks: the
//! official folder layouts and label conventions of CamVid, ADE20K, PASCAL
//! VOC 2012 and Cityscapes ([`Dataset`]), and the decoding of input images
//! ([`decode_rgb`]) and label maps ([`decode_label_png`]) from bytes, with
//! the pixel limit checked from the header before anything is decoded.
//!
//! Evaluation, training, the Python package and the fuzz targets all read
//! their data through this crate.

mod class_file;
mod dataset;
mod error;
mod image_io;
mod label;
mod submission;
mod tiff_header;

pub use class_file::{parse_class_names, parse_palette};
pub use dataset::{DataSource, Dataset, IGNORE, LabelRule, Sample, custom_samples};
pub use error::DataError;
pub use image_io::{IMAGE_EXTENSIONS, collect_inputs, decode_rgb, has_image_extension, read_rgb};
pub use label::{LabelMap, decode_label_png, read_label_png};
pub use submission::{Submission, voc_palette};
