//! The model that ships inside the tool, so that it runs with no download.

use std::path::Path;

use pspnet_model::{ConvOptions, Overrides, Segmenter};

use crate::Error;

/// The CamVid checkpoint of ../shared/models converted with `pspnet convert
/// pspnet_r18-d8_camvid.pth models/pspnet_r18-d8_camvid.f16.safetensors --dtype f16`:
/// PSPNet ResNet-18, 11 street-scene classes, f16.
const EMBEDDED_MODEL: &[u8] = include_bytes!("../models/pspnet_r18-d8_camvid.f16.safetensors");

/// How errors name the embedded model.
pub const EMBEDDED_MODEL_NAME: &str = "<embedded pspnet_r18-d8_camvid.f16.safetensors>";

/// Loads the embedded model, its convolutions running as `options` say.
pub fn embedded_model(overrides: &Overrides, options: ConvOptions) -> Result<Segmenter, Error> {
    Ok(Segmenter::load_bytes(Path::new(EMBEDDED_MODEL_NAME), EMBEDDED_MODEL.to_vec(), overrides, options)?)
}
