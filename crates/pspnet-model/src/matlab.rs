//! The authors' evaluation of their Caffe models, hszhao/PSPNet's MATLAB
//! `evaluation/` (`eval_sub.m`, `scale_process.m`, `pre_img.m`,
//! `caffe_process.m`), step by step; docs/protocols.md cites the line of
//! each. It differs from semseg's `test.py` (the other presets) in the long
//! side (`base * scale + 1`), MATLAB's antialiasing bilinear resize, padding
//! at the bottom and right (with the mean rounded to a byte in the sliding
//! branch), the flip fused by summing logits before one softmax, and the
//! scores resized back to the image and renormalised.

use pspnet_kernels::softmax_channels;
use pspnet_tensor::{Shape, Tensor};

use crate::normalize::rgb_tensor;
use crate::{ModelError, Normalization, PspNet};

/// Where one scale's windows go: the resized image, the canvas it is padded
/// to, and each window's top-left corner (`crop x crop` each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatlabPlan {
    /// The resized image `[h, w]`.
    pub resized: [usize; 2],
    /// The padded canvas `[h, w]`.
    pub padded: [usize; 2],
    /// Whether the image fits one window (`pre_img.m` pads it with the exact
    /// mean) rather than sliding ones (`padarray` pads with the mean rounded
    /// to a byte).
    pub single: bool,
    /// The windows' top-left corners `[row, column]`, rows outer.
    pub windows: Vec<[usize; 2]>,
}

/// `eval_sub.m` and `scale_process.m`'s arithmetic for an `height x width`
/// image at `scale` of `base` (the long side becomes `base * scale + 1`;
/// the short side is rounded half away from zero in single precision), for
/// `crop` windows `stride` apart.
pub fn matlab_plan(
    height: usize,
    width: usize,
    scale: f64,
    base: usize,
    crop: usize,
    stride: usize,
) -> Result<MatlabPlan, ModelError> {
    let long = (base as f64 * scale + 1.0) as f32;
    let short = |along: usize, across: usize| (long / along as f32 * across as f32).round();
    let resized = if height > width { [long, short(height, width)] } else { [short(width, height), long] };
    if resized.iter().any(|&s| s < 1.0) {
        return Err(ModelError::Input(format!("scale {scale} shrinks a {height}x{width} image to nothing")));
    }
    let resized = resized.map(|s| s as usize);
    if resized[0].max(resized[1]) <= crop {
        return Ok(MatlabPlan { resized, padded: [crop, crop], single: true, windows: vec![[0, 0]] });
    }
    let padded = resized.map(|s| s.max(crop));
    let origins = |size: usize| -> Vec<usize> {
        let grids = (size - crop).div_ceil(stride) + 1;
        (0..grids).map(|i| (i * stride).min(size - crop)).collect()
    };
    let windows = origins(padded[0]).into_iter().flat_map(|y| origins(padded[1]).into_iter().map(move |x| [y, x]));
    Ok(MatlabPlan { resized, padded, single: false, windows: windows.collect() })
}

/// The windows of the MATLAB evaluation: their size, step and the scales
/// of `base` they run at, with or without the flip.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MatlabWindows<'a> {
    pub(crate) crop: usize,
    pub(crate) stride: usize,
    pub(crate) base: usize,
    pub(crate) scales: &'a [f64],
    pub(crate) flip: bool,
}

/// Class probabilities `1 x classes x H x W` of an interleaved RGB image,
/// as the MATLAB code computes them.
pub(crate) fn predict(
    net: &PspNet,
    rgb: &[u8],
    height: usize,
    width: usize,
    norm: &Normalization,
    windows: &MatlabWindows,
) -> Result<Tensor, ModelError> {
    let MatlabWindows { crop, stride, base, scales, flip } = *windows;
    let classes = net.classes();
    let mut total = vec![0.0f32; classes * height * width];
    for &scale in scales {
        let plan = matlab_plan(height, width, scale, base, crop, stride)?;
        let [h, w] = plan.resized;
        let resized = imresize_bytes(rgb, [height, width], [h, w]);
        let [ph, pw] = plan.padded;
        // pre_img.m pads after converting to single (the exact mean); the
        // sliding branch's padarray pads the bytes with the rounded mean.
        let pad = if plan.single { norm.mean } else { norm.mean.map(f32::round) };
        let mut canvas = rgb_tensor(&resized, h, w, |_, v| v)?;
        canvas = pad_bottom_right(&canvas, [ph, pw], pad)?;
        let x = rgb_tensor_normalised(&canvas, norm);
        let mut sum = vec![0.0f32; classes * ph * pw];
        let mut count = vec![0u32; ph * pw];
        for &[y0, x0] in &plan.windows {
            let window = Tensor::from_fn(Shape::new(1, 3, crop, crop)?, |_, c, y, i| {
                x.as_slice()[(c * ph + y0 + y) * pw + x0 + i]
            });
            let probs = caffe_process(net, &window, flip)?;
            for (c, plane) in probs.as_slice().chunks_exact(crop * crop).enumerate() {
                for (y, row) in plane.chunks_exact(crop).enumerate() {
                    let at = (c * ph + y0 + y) * pw + x0;
                    sum[at..at + crop].iter_mut().zip(row).for_each(|(s, v)| *s += v);
                }
            }
            for y in y0..y0 + crop {
                count[y * pw + x0..y * pw + x0 + crop].iter_mut().for_each(|n| *n += 1);
            }
        }
        // The windows' mean, cropped to the resized image (top-left).
        let scores: Vec<f32> = (0..classes)
            .flat_map(|c| {
                let (sum, count) = (&sum, &count);
                (0..h).flat_map(move |y| (0..w).map(move |i| sum[(c * ph + y) * pw + i] / count[y * pw + i] as f32))
            })
            .collect();
        let mut probs = imresize_planes(&scores, classes, [h, w], [height, width]);
        renormalise(&mut probs, classes, height * width);
        total.iter_mut().zip(&probs).for_each(|(t, p)| *t += p);
    }
    let n = scales.len() as f32;
    total.iter_mut().for_each(|t| *t /= n);
    Ok(Tensor::from_vec(Shape::new(1, classes, height, width)?, total)?)
}

/// `(v - mean) / std` of a `1 x 3 x h x w` tensor of 0..255 values.
fn rgb_tensor_normalised(image: &Tensor, norm: &Normalization) -> Tensor {
    let plane = image.shape().plane_len();
    let mut x = image.clone();
    for (c, values) in x.as_mut_slice().chunks_exact_mut(plane).enumerate() {
        values.iter_mut().for_each(|v| *v = (*v - norm.mean[c]) / norm.std[c]);
    }
    x
}

/// `image` in the top-left of a canvas of `size` filled with `pad` (R, G, B).
fn pad_bottom_right(image: &Tensor, size: [usize; 2], pad: [f32; 3]) -> Result<Tensor, ModelError> {
    let (h, w) = (image.shape().h(), image.shape().w());
    let src = image.as_slice();
    Ok(Tensor::from_fn(image.shape().with_hw(size[0], size[1])?, |_, c, y, x| {
        if y < h && x < w { src[(c * h + y) * w + x] } else { pad[c] }
    }))
}

/// `caffe_process.m`: the logits of the window plus the mirrored logits of
/// the mirrored window (with `flip`), then one softmax.
fn caffe_process(net: &PspNet, x: &Tensor, flip: bool) -> Result<Tensor, ModelError> {
    let mut logits = net.forward(x)?;
    if flip {
        let w = x.shape().w();
        let mirror = |t: &[f32]| t.chunks_exact(w).flat_map(|row| row.iter().rev().copied()).collect::<Vec<_>>();
        let flipped = net.forward(&Tensor::from_vec(x.shape(), mirror(x.as_slice()))?)?;
        logits.as_mut_slice().iter_mut().zip(mirror(flipped.as_slice())).for_each(|(l, f)| *l += f);
    }
    Ok(softmax_channels(&logits))
}

/// `scale_process.m` line 58: each pixel's class scores divided by their sum.
fn renormalise(probs: &mut [f32], classes: usize, plane: usize) {
    for p in 0..plane {
        let sum: f32 = (0..classes).map(|c| probs[c * plane + p]).sum();
        (0..classes).for_each(|c| probs[c * plane + p] /= sum);
    }
}

/// MATLAB's `imresize(..., 'bilinear')` along one axis of `in_len` samples
/// to `out_len`: each output sample's input indices and weights. Half-pixel
/// centres; when shrinking, the triangle kernel is widened by `1 / scale`
/// (antialiasing, MATLAB's default); weights normalised to sum 1 (MATLAB;
/// GNU Octave's image package leaves them as the kernel gives them, the
/// only difference); indices outside the input mirrored (`aux = [1:in,
/// in:-1:1]`).
fn contributions(in_len: usize, out_len: usize, normalise: bool) -> Vec<Vec<(usize, f64)>> {
    let scale = out_len as f64 / in_len as f64;
    let (width, stretch) = if scale < 1.0 { (2.0 / scale, scale) } else { (2.0, 1.0) };
    let kernel = |d: f64| stretch * (1.0 - (stretch * d).abs()).max(0.0);
    let taps = width.ceil() as i64 + 2;
    (1..=out_len)
        .map(|x| {
            // 1-based, as imresize.m computes it.
            let u = x as f64 / scale + 0.5 * (1.0 - 1.0 / scale);
            let left = (u - width / 2.0).floor() as i64;
            let mut weights: Vec<(usize, f64)> = (left..left + taps)
                .map(|index| {
                    let period = 2 * in_len as i64;
                    let m = (index - 1).rem_euclid(period);
                    let mirrored = if m < in_len as i64 { m } else { period - 1 - m };
                    (mirrored as usize, kernel(u - index as f64))
                })
                .filter(|&(_, w)| w != 0.0)
                .collect();
            if normalise {
                let total: f64 = weights.iter().map(|(_, w)| w).sum();
                weights.iter_mut().for_each(|(_, w)| *w /= total);
            }
            weights
        })
        .collect()
}

/// How [`imresize`] treats its values.
#[derive(Debug, Clone, Copy)]
struct Resize {
    /// Round each pass's results to a byte, as MATLAB does for a uint8 image.
    bytes: bool,
    /// Normalise each output's weights (MATLAB; Octave does not).
    normalise: bool,
}

/// Resizes `planes` (each `size[0] x size[1]`, f64) along one axis (0: rows,
/// 1: columns) to `out` samples.
fn resize_axis(planes: &[Vec<f64>], size: [usize; 2], axis: usize, out: usize, kind: Resize) -> Vec<Vec<f64>> {
    let taps = contributions(size[axis], out, kind.normalise);
    let [h, w] = size;
    let new = if axis == 0 { [out, w] } else { [h, out] };
    let finish = |v: f64| if kind.bytes { v.round().clamp(0.0, 255.0) } else { v };
    planes
        .iter()
        .map(|plane| {
            let mut result = vec![0.0; new[0] * new[1]];
            for y in 0..new[0] {
                for x in 0..new[1] {
                    let (o, fixed) = if axis == 0 { (y, x) } else { (x, y) };
                    let sum: f64 = taps[o]
                        .iter()
                        .map(|&(i, weight)| {
                            weight * if axis == 0 { plane[i * w + fixed] } else { plane[fixed * w + i] }
                        })
                        .sum();
                    result[y * new[1] + x] = finish(sum);
                }
            }
            result
        })
        .collect()
}

/// Both axes, the one that shrinks more first (as `imresize.m` orders its
/// passes; rows first on a tie).
fn imresize(planes: Vec<Vec<f64>>, from: [usize; 2], to: [usize; 2], kind: Resize) -> Vec<Vec<f64>> {
    let scale = |a: usize| to[a] as f64 / from[a] as f64;
    let order = if scale(1) < scale(0) { [1, 0] } else { [0, 1] };
    let (mut planes, mut size) = (planes, from);
    for axis in order {
        if size[axis] != to[axis] {
            planes = resize_axis(&planes, size, axis, to[axis], kind);
            size[axis] = to[axis];
        }
    }
    planes
}

/// `imresize` of an interleaved RGB image (uint8: each pass rounds).
fn imresize_bytes(rgb: &[u8], from: [usize; 2], to: [usize; 2]) -> Vec<u8> {
    if from == to {
        return rgb.to_vec();
    }
    let planes = (0..3).map(|c| rgb.iter().skip(c).step_by(3).map(|&v| f64::from(v)).collect()).collect();
    let planes = imresize(planes, from, to, Resize { bytes: true, normalise: true });
    (0..to[0] * to[1]).flat_map(|p| planes.iter().map(move |plane| plane[p] as u8)).collect()
}

/// `imresize` of `channels` planar single-precision maps.
fn imresize_planes(maps: &[f32], channels: usize, from: [usize; 2], to: [usize; 2]) -> Vec<f32> {
    if from == to {
        return maps.to_vec();
    }
    let planes = maps.chunks_exact(from[0] * from[1]).take(channels).map(|p| p.iter().map(|&v| f64::from(v)).collect());
    imresize(planes.collect(), from, to, Resize { bytes: false, normalise: true })
        .into_iter()
        .flatten()
        .map(|v| v as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GNU Octave's imresize (the image package places, widens and mirrors
    /// the taps as MATLAB does, but does not normalise their weights), on a
    /// smooth 23x31 map, to sizes that shrink, enlarge, and do each along
    /// one axis; and MATLAB's normalisation: every output's weights sum to 1.
    #[test]
    fn resize_matches_octave() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/protocol/octave_imresize.json");
        let fixture: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let rows = |v: &serde_json::Value| -> Vec<Vec<f64>> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
                .collect()
        };
        let input = rows(&fixture["input"]);
        let plane: Vec<f64> = input.iter().flatten().copied().collect();
        for output in fixture["outputs"].as_array().unwrap() {
            let want = rows(&output["values"]);
            let to = [want.len(), want[0].len()];
            let octave = Resize { bytes: false, normalise: false };
            let got = imresize(vec![plane.clone()], [input.len(), input[0].len()], to, octave);
            let error = got[0].iter().zip(want.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(error < 1e-12, "{to:?}: max error {error:e}");
        }
        for (from, to) in [(23, 13), (31, 17), (23, 41), (7, 3)] {
            for taps in contributions(from, to, true) {
                assert!((taps.iter().map(|(_, w)| w).sum::<f64>() - 1.0).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn bytes_halve_with_a_widened_tent() {
        // Halving columns 0, 255, 0, 255: each output's tent covers 4 taps
        // weighted 1/8, 3/8, 3/8, 1/8 around 1-based 1.5 and 3.5, the
        // borders mirrored: 3/8 * 255 = 95.6 and 5/8 * 255 = 159.4.
        let rgb: Vec<u8> = (0..4).flat_map(|x| [if x % 2 == 0 { 0 } else { 255 }; 3]).collect();
        let out = imresize_bytes(&rgb, [1, 4], [1, 2]);
        assert_eq!(out, [96, 96, 96, 159, 159, 159]);
        assert_eq!(imresize_bytes(&rgb, [1, 4], [1, 4]), rgb);
    }
}
