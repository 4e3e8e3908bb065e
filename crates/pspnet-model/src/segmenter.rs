use std::path::Path;

use ndarray::{Array2, Axis};
use pspnet_kernels::{ConvOptions, argmax_channels};
use pspnet_tensor::Tensor;

use crate::{ModelError, ModelSpec, Normalization, Overrides, Protocol, PspNet, StageTimes, load, predict};

/// A network loaded from a checkpoint, with what the checkpoint says about
/// it, ready to segment RGB images: it owns their normalisation and picks
/// the inference path.
#[derive(Debug, Clone)]
pub struct Segmenter {
    /// The network, ready to run.
    pub net: PspNet,
    /// Architecture, normalisation, class names and palette.
    pub spec: ModelSpec,
}

impl Segmenter {
    /// Loads any supported checkpoint (`.pth` in the semseg or mmsegmentation
    /// layout, zip or legacy container; or this project's safetensors), with
    /// `overrides` for what the weights cannot tell; its convolutions run as
    /// `options` say.
    pub fn load(path: &Path, overrides: &Overrides, options: ConvOptions) -> Result<Self, ModelError> {
        let (net, spec) = load::load(path, overrides, options)?;
        Ok(Segmenter { net, spec })
    }

    /// [`Segmenter::load`] for a checkpoint already in memory (such as the
    /// binary's embedded default model); `name` only labels errors.
    pub fn load_bytes(
        name: &Path,
        data: Vec<u8>,
        overrides: &Overrides,
        options: ConvOptions,
    ) -> Result<Self, ModelError> {
        let (net, spec) = load::load_bytes(name, data, overrides, options)?;
        Ok(Segmenter { net, spec })
    }

    /// The normalisation the checkpoint was trained with.
    pub fn normalization(&self) -> Normalization {
        Normalization { mean: self.spec.mean, std: self.spec.std }
    }

    /// Class scores `1 x classes x H x W` of an interleaved RGB image
    /// (`height * width * 3` bytes) under `protocol`: the logits of one
    /// whole-image pass, or what the protocol averages.
    pub fn scores(&self, rgb: &[u8], height: usize, width: usize, protocol: &Protocol) -> Result<Tensor, ModelError> {
        predict(&self.net, rgb, height, width, &self.normalization(), protocol)
    }

    /// Class labels (`H x W`) of an interleaved RGB image under `protocol`.
    /// A whole-image pass takes the argmax while upsampling, never building
    /// the full-resolution scores.
    pub fn labels(
        &self,
        rgb: &[u8],
        height: usize,
        width: usize,
        protocol: &Protocol,
    ) -> Result<Array2<u32>, ModelError> {
        let labels = if *protocol == Protocol::whole() {
            self.net.labels(&self.normalization().image(rgb, height, width)?)?
        } else {
            argmax_channels(&self.scores(rgb, height, width, protocol)?)
        };
        Ok(labels.index_axis_move(Axis(0), 0))
    }

    /// The logits of one whole-image pass, with the time of each stage.
    pub fn profile(&self, rgb: &[u8], height: usize, width: usize) -> Result<(Tensor, StageTimes), ModelError> {
        self.net.profile(&self.normalization().image(rgb, height, width)?)
    }
}
