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
        rgb_tensor(rgb, height, width, |c, v| (v - self.mean[c]) / self.std[c])
    }

    /// `(image - mean) / std` of a `1 x 3 x h x w` image in 0..255, placed at
    /// `offset` in a canvas of `size` whose rest is the mean (0 once normalised).
    pub(crate) fn apply(&self, image: &Tensor, offset: [usize; 2], size: [usize; 2]) -> Result<Tensor, ModelError> {
        let (h, w) = (image.shape().h(), image.shape().w());
        let src = image.as_slice();
        let shape = image.shape().with_hw(size[0], size[1])?;
        Ok(Tensor::from_fn(shape, |_, c, y, x| match (y.checked_sub(offset[0]), x.checked_sub(offset[1])) {
            (Some(y), Some(x)) if y < h && x < w => (src[(c * h + y) * w + x] - self.mean[c]) / self.std[c],
            _ => 0.0,
        }))
    }
}

/// An interleaved RGB image (`height * width * 3` bytes, row by row) as a
/// planar `1 x 3 x H x W` tensor of `map(channel, value)`, values in 0..255.
pub(crate) fn rgb_tensor(
    rgb: &[u8],
    height: usize,
    width: usize,
    map: impl Fn(usize, f32) -> f32,
) -> Result<Tensor, ModelError> {
    let shape = Shape::new(1, 3, height, width)?;
    if rgb.len() != shape.len() {
        return Err(ModelError::Input(format!(
            "an RGB image of {height}x{width} needs {} bytes, got {}",
            shape.len(),
            rgb.len()
        )));
    }
    Ok(Tensor::from_fn(shape, |_, c, y, x| map(c, f32::from(rgb[(y * width + x) * 3 + c]))))
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
