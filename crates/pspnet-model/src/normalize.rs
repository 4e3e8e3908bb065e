use pspnet_tensor::{Shape, Tensor};

use crate::ModelError;

/// Per-channel input normalisation `x = (v - mean) / std` on RGB values in
/// 0..255, as both reference implementations apply it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalization {
    /// Mean of R, G, B.
    pub mean: [f32; 3],
    /// Standard deviation of R, G, B.
    pub std: [f32; 3],
}

impl Default for Normalization {
    /// ImageNet statistics in 0..255, used by semseg and mmsegmentation.
    fn default() -> Self {
        Normalization { mean: [123.675, 116.28, 103.53], std: [58.395, 57.12, 57.375] }
    }
}

impl Normalization {
    /// Turns an interleaved RGB image (`height * width * 3` bytes, row by
    /// row) into a normalised `1 x 3 x H x W` tensor.
    pub fn image(&self, rgb: &[u8], height: usize, width: usize) -> Result<Tensor, ModelError> {
        let shape = Shape::new(1, 3, height, width)?;
        if rgb.len() != height * width * 3 {
            return Err(ModelError::Input(format!(
                "an RGB image of {height}x{width} needs {} bytes, got {}",
                height * width * 3,
                rgb.len()
            )));
        }
        Ok(Tensor::from_fn(shape, |_, c, y, x| (rgb[(y * width + x) * 3 + c] as f32 - self.mean[c]) / self.std[c]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_channels_planar() {
        let n = Normalization { mean: [1.0, 2.0, 3.0], std: [1.0, 2.0, 4.0] };
        // Two pixels: (1, 4, 7) and (3, 6, 11).
        let t = n.image(&[1, 4, 7, 3, 6, 11], 1, 2).unwrap();
        assert_eq!(t.as_slice(), &[0.0, 2.0, 1.0, 2.0, 1.0, 2.0]);
        assert!(n.image(&[0; 5], 1, 2).is_err());
    }
}
