use std::path::Path;

use pspnet_weights::{ModelSpec, Overrides};

use crate::{ModelError, Normalization, PspNet, PspNetConfig};

/// A network loaded from a checkpoint, with what the checkpoint says about it.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    /// The network, ready to run.
    pub net: PspNet,
    /// Architecture, normalisation, class names and palette.
    pub spec: ModelSpec,
}

impl LoadedModel {
    /// Loads any supported checkpoint (`.pth` in the semseg or mmsegmentation
    /// layout, zip or legacy container; or this project's safetensors),
    /// with `overrides` for what the weights cannot tell.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Self, ModelError> {
        LoadedModel::build(pspnet_weights::load_model(path, overrides)?)
    }

    /// [`LoadedModel::load`] for a checkpoint already in memory (such as the
    /// binary's embedded default model); `name` only labels errors.
    pub fn load_bytes(name: &Path, data: Vec<u8>, overrides: &Overrides) -> Result<Self, ModelError> {
        LoadedModel::build(pspnet_weights::load_model_bytes(name, data, overrides)?)
    }

    fn build((mut params, spec): (pspnet_tensor::Params, ModelSpec)) -> Result<Self, ModelError> {
        let config = PspNetConfig {
            backbone: spec.backbone.clone(),
            ppm: spec.ppm.clone(),
            normalization: Normalization { mean: spec.mean, std: spec.std },
        };
        Ok(LoadedModel { net: PspNet::from_params(config, &mut params)?, spec })
    }
}
