//! Inference protocols: how an image is resized, windowed, flipped and its
//! passes averaged, exactly as the reference implementations evaluate
//! (hszhao/semseg `tool/test.py`; mmsegmentation `slide_inference`).

use pspnet_kernels::{resize_bilinear, softmax_channels};
use pspnet_tensor::{Shape, Tensor};

use crate::matlab::MatlabWindows;
use crate::normalize::rgb_tensor;
use crate::{ModelError, Normalization, PspNet};

/// What is averaged over windows, flips and scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Average {
    /// The softmax of each pass (semseg `test.py`).
    Probs,
    /// The raw logits of each pass (mmsegmentation `slide_inference`).
    Logits,
}

/// Which part of the (resized) image each forward pass sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The whole image in one pass.
    Whole,
    /// Square `crop x crop` windows, the last of each row and column moved
    /// back to end at the image's edge.
    Slide {
        /// Window side in pixels.
        crop: usize,
        /// Step between windows; `None` is semseg's `ceil(crop * 2 / 3)`.
        stride: Option<usize>,
    },
}

/// A complete test-time protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct Protocol {
    /// Whole image or sliding windows.
    pub window: Window,
    /// Scales of `base_size` (or of the image's long side) to run and average.
    pub scales: Vec<f64>,
    /// Whether every pass also runs on the horizontally flipped input.
    pub flip: bool,
    /// The long side at scale 1; `None` scales the image's own long side.
    pub base_size: Option<usize>,
    /// What is averaged.
    pub average: Average,
    /// With [`Window::Slide`], pad an image smaller than the crop to the crop
    /// with the mean (0 after normalisation), centred, as semseg does;
    /// ignored for [`Window::Whole`].
    pub pad_to_crop: bool,
    /// Follow the authors' MATLAB evaluation of their Caffe models instead
    /// of semseg's `test.py` (see the `matlab` module: long side `base *
    /// scale + 1`, MATLAB's antialiasing resize, bottom/right padding, the
    /// flip fused on logits, scores resized back and renormalised);
    /// `average` and `pad_to_crop` then do not apply.
    pub matlab: bool,
}

impl Protocol {
    /// One pass over the whole image at its own size, no flip: the logits of
    /// [`PspNet::forward`].
    pub fn whole() -> Self {
        Protocol {
            window: Window::Whole,
            scales: vec![1.0],
            flip: false,
            base_size: None,
            average: Average::Logits,
            pad_to_crop: false,
            matlab: false,
        }
    }

    /// The published evaluation of a dataset: `ade20k` and `voc2012` (base
    /// 512, crop 473) and `cityscapes` (base 2048, crop 713) as semseg's
    /// `test.py` runs them (single scale, flip, probabilities, mean padding);
    /// `caffe-ade20k`, `caffe-voc2012`, `caffe-cityscapes` as the authors'
    /// MATLAB code evaluates their Caffe models (same bases and crops, see
    /// [`Protocol::matlab`]); `camvid` is [`Protocol::whole`].
    pub fn preset(name: &str) -> Result<Self, ModelError> {
        let semseg = |base_size: usize, crop: usize| Protocol {
            window: Window::Slide { crop, stride: None },
            scales: vec![1.0],
            flip: true,
            base_size: Some(base_size),
            average: Average::Probs,
            pad_to_crop: true,
            matlab: false,
        };
        let matlab = |base_size: usize, crop: usize| Protocol { matlab: true, ..semseg(base_size, crop) };
        match name {
            "ade20k" | "voc2012" => Ok(semseg(512, 473)),
            "cityscapes" => Ok(semseg(2048, 713)),
            "caffe-ade20k" | "caffe-voc2012" => Ok(matlab(512, 473)),
            "caffe-cityscapes" => Ok(matlab(2048, 713)),
            "camvid" => Ok(Protocol::whole()),
            _ => Err(ModelError::Input(format!(
                "unknown protocol preset {name:?} (expected ade20k, voc2012, cityscapes, caffe-ade20k, \
                 caffe-voc2012, caffe-cityscapes or camvid)"
            ))),
        }
    }

    /// Whether [`predict`] gives probabilities (the softmax of each pass
    /// averaged, or the MATLAB protocol's renormalised scores) rather than
    /// logits.
    pub fn gives_probabilities(&self) -> bool {
        self.matlab || self.average == Average::Probs
    }

    fn validate(&self) -> Result<(), ModelError> {
        let bad = |what: String| Err(ModelError::Input(format!("protocol: {what}")));
        if self.scales.is_empty() {
            return bad("no scales".into());
        }
        if let Some(s) = self.scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return bad(format!("scale {s} is not a positive number"));
        }
        if self.base_size == Some(0) {
            return bad("base size 0".into());
        }
        if let Window::Slide { crop, stride } = self.window
            && (crop == 0 || stride == Some(0))
        {
            return bad(format!("sliding window crop {crop}, stride {stride:?}"));
        }
        Ok(())
    }
}

/// Whole image or sliding windows, as a user names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowMode {
    /// One pass over the whole (rescaled) image.
    Whole,
    /// Crop-sized windows.
    Slide,
}

/// A protocol as the command line and the Python package take it: a
/// preset (or none: one whole-image pass), adjusted by explicit choices.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProtocolChoice {
    /// A [`Protocol::preset`] name.
    pub preset: Option<String>,
    /// Whole image or sliding windows.
    pub mode: Option<WindowMode>,
    /// The window size.
    pub crop: Option<usize>,
    /// The window step.
    pub stride: Option<usize>,
    /// Scales of the long side.
    pub scales: Option<Vec<f64>>,
    /// Whether each pass also runs mirrored.
    pub flip: Option<bool>,
    /// The long side at scale 1.
    pub base_size: Option<usize>,
    /// What is averaged.
    pub average: Option<Average>,
}

impl ProtocolChoice {
    /// The protocol: the preset, else `default_preset`, else one
    /// whole-image pass; then each explicit choice.
    pub fn protocol(&self, default_preset: Option<&str>) -> Result<Protocol, ModelError> {
        let mut p = match self.preset.as_deref().or(default_preset) {
            Some(name) => Protocol::preset(name)?,
            None => Protocol::whole(),
        };
        let preset_crop = match p.window {
            Window::Slide { crop, .. } => Some(crop),
            Window::Whole => None,
        };
        match self.mode {
            Some(WindowMode::Whole) => p.window = Window::Whole,
            Some(WindowMode::Slide) => {
                let crop = self.crop.or(preset_crop).ok_or_else(|| {
                    ModelError::Input("--mode slide needs --crop (or a --preset that sets it)".into())
                })?;
                p.window = Window::Slide { crop, stride: self.stride };
            }
            None => {
                if let Window::Slide { crop, stride } = &mut p.window {
                    *crop = self.crop.unwrap_or(*crop);
                    *stride = self.stride.or(*stride);
                }
            }
        }
        if let Some(scales) = &self.scales {
            p.scales = scales.clone();
        }
        p.flip = self.flip.unwrap_or(p.flip);
        p.base_size = self.base_size.or(p.base_size);
        p.average = self.average.unwrap_or(p.average);
        Ok(p)
    }
}

/// Class scores (averaged probabilities or logits, per `protocol.average`)
/// for an interleaved RGB image (`height * width * 3` bytes, row by row), at
/// the image's own resolution: `1 x classes x H x W`.
pub fn predict(
    net: &PspNet,
    rgb: &[u8],
    height: usize,
    width: usize,
    norm: &Normalization,
    protocol: &Protocol,
) -> Result<Tensor, ModelError> {
    protocol.validate()?;
    if protocol.matlab {
        let Window::Slide { crop, stride } = protocol.window else {
            return Err(ModelError::Input("the MATLAB protocol runs sliding windows (--mode slide)".into()));
        };
        let windows = MatlabWindows {
            crop,
            stride: stride.unwrap_or_else(|| default_stride(crop)),
            base: protocol.base_size.unwrap_or(height.max(width)),
            scales: &protocol.scales,
            flip: protocol.flip,
        };
        return crate::matlab::predict(net, rgb, height, width, norm, &windows);
    }
    let image = rgb_tensor(rgb, height, width, |_, v| v)?;
    let mut total: Option<Tensor> = None;
    for &scale in &protocol.scales {
        let size = scaled_size(height, width, scale, protocol.base_size)?;
        let resized;
        let scaled = if size == [height, width] {
            &image
        } else {
            resized = resize_bilinear(&image, size, false)?;
            &resized
        };
        let scores = match protocol.window {
            Window::Whole => pass(net, &norm.apply(scaled, [0, 0], size)?, protocol)?,
            Window::Slide { crop, stride } => {
                slide(net, scaled, norm, crop, stride.unwrap_or_else(|| default_stride(crop)), protocol)?
            }
        };
        let scores = if size == [height, width] { scores } else { resize_bilinear(&scores, [height, width], false)? };
        match total.as_mut() {
            Some(total) => total.as_mut_slice().iter_mut().zip(scores.as_slice()).for_each(|(t, s)| *t += s),
            None => total = Some(scores),
        }
    }
    let mut total = total.ok_or_else(|| ModelError::Input("protocol: no scales".into()))?;
    let n = protocol.scales.len() as f32;
    total.as_mut_slice().iter_mut().for_each(|t| *t /= n);
    Ok(total)
}

/// semseg's resize rule with Python's round-half-to-even `round()`: the long
/// side becomes `round(scale * base)` (`base` defaults to the long side) and
/// the short side keeps the aspect ratio.
fn scaled_size(height: usize, width: usize, scale: f64, base_size: Option<usize>) -> Result<[usize; 2], ModelError> {
    let base = base_size.unwrap_or(height.max(width)) as f64;
    let long = (scale * base).round_ties_even();
    let size = if height > width {
        [long, (long / height as f64 * width as f64).round_ties_even()]
    } else {
        [(long / width as f64 * height as f64).round_ties_even(), long]
    };
    if size.iter().any(|&s| s < 1.0) {
        return Err(ModelError::Input(format!("scale {scale} shrinks a {height}x{width} image to nothing")));
    }
    Ok(size.map(|s| s as usize))
}

/// semseg's default stride, `ceil(crop * 2/3)` in floating point (the
/// MATLAB code's too).
fn default_stride(crop: usize) -> usize {
    (crop as f64 * (2.0 / 3.0)).ceil() as usize
}

/// `[start, end)` of the windows along one axis of length `size`:
/// `max(size - crop + stride - 1, 0) / stride + 1` of them, each clamped to
/// end inside the image (shorter than `crop` only when `size` is).
fn windows(size: usize, crop: usize, stride: usize) -> Vec<[usize; 2]> {
    let grids = (size + stride - 1).saturating_sub(crop) / stride + 1;
    (0..grids)
        .map(|i| {
            let end = (i * stride + crop).min(size);
            [end.saturating_sub(crop), end]
        })
        .collect()
}

/// One window (or whole image) through the network, with its flip.
fn pass(net: &PspNet, x: &Tensor, protocol: &Protocol) -> Result<Tensor, ModelError> {
    let scores = |x: &Tensor| -> Result<Tensor, ModelError> {
        let logits = net.forward(x)?;
        Ok(match protocol.average {
            Average::Probs => softmax_channels(&logits),
            Average::Logits => logits,
        })
    };
    let mut out = scores(x)?;
    if protocol.flip {
        let w = x.shape().w();
        let mirror = |t: &[f32]| t.chunks_exact(w).flat_map(|row| row.iter().rev().copied()).collect::<Vec<_>>();
        let flipped = scores(&Tensor::from_vec(x.shape(), mirror(x.as_slice()))?)?;
        let back = mirror(flipped.as_slice());
        out.as_mut_slice().iter_mut().zip(back).for_each(|(o, f)| *o = (*o + f) / 2.0);
    }
    Ok(out)
}

/// Sliding windows over one scaled image: per-pixel mean of the overlapping
/// windows' scores, at the scaled image's size.
fn slide(
    net: &PspNet,
    image: &Tensor,
    norm: &Normalization,
    crop: usize,
    stride: usize,
    protocol: &Protocol,
) -> Result<Tensor, ModelError> {
    let (h, w) = (image.shape().h(), image.shape().w());
    let (ph, pw) = if protocol.pad_to_crop { (h.max(crop), w.max(crop)) } else { (h, w) };
    let (top, left) = ((ph - h) / 2, (pw - w) / 2);
    let x = norm.apply(image, [top, left], [ph, pw])?;
    let classes = net.classes();
    let mut sum = vec![0.0f32; classes * ph * pw];
    let mut count = vec![0u32; ph * pw];
    let xs = x.as_slice();
    for [y0, y1] in windows(ph, crop, stride) {
        for [x0, x1] in windows(pw, crop, stride) {
            let (wh, ww) = (y1 - y0, x1 - x0);
            let shape = Shape::new(1, 3, wh, ww)?;
            let window = Tensor::from_fn(shape, |_, c, y, i| xs[(c * ph + y0 + y) * pw + x0 + i]);
            let scores = pass(net, &window, protocol)?;
            for (c, plane) in scores.as_slice().chunks_exact(wh * ww).enumerate() {
                for (y, row) in plane.chunks_exact(ww).enumerate() {
                    let at = (c * ph + y0 + y) * pw + x0;
                    sum[at..at + ww].iter_mut().zip(row).for_each(|(s, v)| *s += v);
                }
            }
            for y in y0..y1 {
                count[y * pw + x0..y * pw + x1].iter_mut().for_each(|n| *n += 1);
            }
        }
    }
    for plane in sum.chunks_exact_mut(ph * pw) {
        plane.iter_mut().zip(&count).for_each(|(s, &n)| *s /= n as f32);
    }
    if [ph, pw] == [h, w] {
        return Ok(Tensor::from_vec(Shape::new(1, classes, h, w)?, sum)?);
    }
    Ok(Tensor::from_fn(Shape::new(1, classes, h, w)?, |_, c, y, i| sum[(c * ph + y + top) * pw + i + left]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_half_to_even_like_python() {
        // round(0.5 * 5) = round(2.5) = 2 in Python 3; round(1.5 * 5) = round(7.5) = 8.
        assert_eq!(scaled_size(5, 5, 0.5, None).unwrap(), [2, 2]);
        assert_eq!(scaled_size(5, 5, 1.5, None).unwrap(), [8, 8]);
        // Short side: 64 / 128 * 37 = 18.5 -> 18, 64 / 128 * 39 = 19.5 -> 20.
        assert_eq!(scaled_size(37, 128, 1.0, Some(64)).unwrap(), [18, 64]);
        assert_eq!(scaled_size(128, 39, 1.0, Some(64)).unwrap(), [64, 20]);
        // Square images take the `else` branch: both sides the long one.
        assert_eq!(scaled_size(10, 10, 1.0, Some(7)).unwrap(), [7, 7]);
        assert!(scaled_size(1, 100, 0.01, None).is_err());
    }

    #[test]
    fn semseg_scaled_sizes_of_a_37x53_image() {
        // long = round(s * 64); new_h = round(long / 53 * 37).
        assert_eq!(scaled_size(37, 53, 0.5, Some(64)).unwrap(), [22, 32]);
        assert_eq!(scaled_size(37, 53, 1.0, Some(64)).unwrap(), [45, 64]);
        assert_eq!(scaled_size(37, 53, 1.5, Some(64)).unwrap(), [67, 96]);
        assert_eq!(scaled_size(37, 53, 1.0, None).unwrap(), [37, 53]);
        // Cityscapes at base 2048 keeps its 1024x2048 size.
        assert_eq!(scaled_size(1024, 2048, 1.0, Some(2048)).unwrap(), [1024, 2048]);
    }

    #[test]
    fn default_strides() {
        assert_eq!(
            [default_stride(473), default_stride(713), default_stride(33), default_stride(1)],
            [316, 476, 22, 1]
        );
    }

    #[test]
    fn window_grids() {
        // semseg: ceil((size - crop) / stride) + 1 windows, the last moved back.
        assert_eq!(windows(33, 33, 22), [[0, 33]]);
        assert_eq!(windows(67, 33, 22), [[0, 33], [22, 55], [34, 67]]);
        assert_eq!(windows(96, 33, 22), [[0, 33], [22, 55], [44, 77], [63, 96]]);
        // Cityscapes 1024x2048, crop 713, stride 476: 2 x 4 = 8 windows.
        assert_eq!(windows(1024, 713, 476), [[0, 713], [311, 1024]]);
        assert_eq!(windows(2048, 713, 476).len(), 4);
        assert_eq!(windows(2048, 713, 476)[3], [1335, 2048]);
        // mmseg without padding: a window shorter than the crop.
        assert_eq!(windows(37, 41, 17), [[0, 37]]);
        assert_eq!(windows(53, 41, 17), [[0, 41], [12, 53]]);
        // mmseg's formula: (512 - 512 + 341 - 1) // 341 + 1 = 1; (513 + 340 - 512) // 341 + 1 = 2.
        assert_eq!(windows(512, 512, 341), [[0, 512]]);
        assert_eq!(windows(513, 512, 341), [[0, 512], [1, 513]]);
    }

    #[test]
    fn normalises_into_a_centred_zero_canvas() {
        let image = Tensor::from_vec(Shape::new(1, 3, 1, 1).unwrap(), vec![3.0, 6.0, 9.0]).unwrap();
        let norm = Normalization { mean: [1.0, 2.0, 3.0], std: [2.0, 4.0, 6.0] };
        let t = norm.apply(&image, [1, 0], [2, 2]).unwrap();
        assert_eq!(t.as_slice(), &[0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn rejects_bad_protocols() {
        let bad = [
            Protocol { scales: vec![], ..Protocol::whole() },
            Protocol { scales: vec![1.0, f64::NAN], ..Protocol::whole() },
            Protocol { scales: vec![-1.0], ..Protocol::whole() },
            Protocol { base_size: Some(0), ..Protocol::whole() },
            Protocol { window: Window::Slide { crop: 0, stride: None }, ..Protocol::whole() },
            Protocol { window: Window::Slide { crop: 8, stride: Some(0) }, ..Protocol::whole() },
        ];
        for p in bad {
            assert!(p.validate().is_err(), "{p:?}");
        }
        assert!(Protocol::whole().validate().is_ok());
    }
}
