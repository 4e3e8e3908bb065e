//! semseg's training augmentation (`util/transform.py`, in `tool/train.py`'s
//! order): random scale in [0.5, 2.0] (image bilinear, labels nearest),
//! random rotation in [-10, 10] degrees with probability 0.5 (image padded
//! with the mean, labels with the ignore label), Gaussian blur of radius 5
//! with probability 0.5, horizontal flip with probability 0.5, and a random
//! crop (padded, centred, with the mean / ignore label when smaller). Each
//! sample's draws come from its own stream.

use std::str::FromStr;

use crate::TrainError;
use crate::draws::Draws;

/// An image (planar R, G, B in 0..255) and its labels, `height x width`.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// `3 x height x width` values.
    pub rgb: Vec<f32>,
    /// `height x width` class ids.
    pub labels: Vec<u16>,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

/// Which transforms run (`--augment`: a comma list of scale, rotate, blur,
/// flip, crop; `semseg` for all five, `none` for none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Augmentation {
    /// Random scale.
    pub scale: bool,
    /// Random rotation.
    pub rotate: bool,
    /// Random Gaussian blur.
    pub blur: bool,
    /// Random horizontal flip.
    pub flip: bool,
    /// Random crop (needs a crop size).
    pub crop: bool,
}

impl FromStr for Augmentation {
    type Err = TrainError;

    fn from_str(list: &str) -> Result<Self, TrainError> {
        let mut a = Augmentation::default();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "semseg" => a = Augmentation { scale: true, rotate: true, blur: true, flip: true, crop: true },
                "none" => {}
                "scale" => a.scale = true,
                "rotate" => a.rotate = true,
                "blur" => a.blur = true,
                "flip" => a.flip = true,
                "crop" => a.crop = true,
                other => {
                    return Err(TrainError::Config(format!(
                        "--augment: unknown transform {other:?} (scale, rotate, blur, flip, crop, semseg, none)"
                    )));
                }
            }
        }
        Ok(a)
    }
}

/// What the transforms pad with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Padding {
    /// The image's (the normalisation mean, 0 once normalised).
    pub mean: [f32; 3],
    /// The labels' (the ignore label).
    pub ignore: u16,
}

impl Augmentation {
    /// Runs the chosen transforms in semseg's order; `crop` is the crop size
    /// (random with `self.crop`, else centred, or none).
    pub fn apply(&self, mut x: Example, crop: Option<[usize; 2]>, pad: Padding, draws: &mut Draws) -> Example {
        if self.scale {
            x = scale(&x, draws.between(0.5, 2.0));
        }
        if self.rotate && draws.uniform() < 0.5 {
            x = rotate(&x, draws.between(-10.0, 10.0), pad);
        }
        if self.blur && draws.uniform() < 0.5 {
            x.rgb = blur(&x.rgb, x.height, x.width);
        }
        if self.flip && draws.uniform() < 0.5 {
            x = flip(x);
        }
        match crop {
            Some(size) => cropped(&x, size, pad, self.crop.then_some(draws)),
            None => x,
        }
    }
}

/// cv2.resize by `factor` (the size rounded to nearest): the image bilinear
/// with half-pixel centres, the labels nearest (`floor(dst * in / out)`).
fn scale(x: &Example, factor: f64) -> Example {
    let size = |n: usize| ((n as f64 * factor).round() as usize).max(1);
    let (h, w) = (size(x.height), size(x.width));
    let source = |dst: usize, out: usize, len: usize| {
        let s = ((dst as f64 + 0.5) * len as f64 / out as f64 - 0.5).max(0.0);
        let i0 = (s.floor() as usize).min(len - 1);
        (i0, (i0 + 1).min(len - 1), (s - i0 as f64) as f32)
    };
    let rows: Vec<_> = (0..h).map(|y| source(y, h, x.height)).collect();
    let cols: Vec<_> = (0..w).map(|c| source(c, w, x.width)).collect();
    let plane = x.height * x.width;
    let mut rgb = Vec::with_capacity(3 * h * w);
    for channel in x.rgb.chunks_exact(plane) {
        for &(y0, y1, fy) in &rows {
            for &(x0, x1, fx) in &cols {
                let at = |y: usize, c: usize| channel[y * x.width + c];
                let top = at(y0, x0) + (at(y0, x1) - at(y0, x0)) * fx;
                let bottom = at(y1, x0) + (at(y1, x1) - at(y1, x0)) * fx;
                rgb.push(top + (bottom - top) * fy);
            }
        }
    }
    let nearest = |dst: usize, out: usize, len: usize| (dst * len / out).min(len - 1);
    let labels = (0..h)
        .flat_map(|y| (0..w).map(move |c| (y, c)))
        .map(|(y, c)| x.labels[nearest(y, h, x.height) * x.width + nearest(c, w, x.width)])
        .collect();
    Example { rgb, labels, height: h, width: w }
}

/// cv2.warpAffine by `getRotationMatrix2D((w/2, h/2), angle, 1)`: each output
/// pixel samples the input at the inverse rotation, bilinear for the image
/// and nearest for the labels, the outside being the padding.
fn rotate(x: &Example, degrees: f64, pad: Padding) -> Example {
    let (h, w) = (x.height, x.width);
    let (sin, cos) = degrees.to_radians().sin_cos();
    let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
    // The inverse of [[cos, sin], [-sin, cos]] about the centre.
    let source = |col: usize, row: usize| {
        let (dx, dy) = (col as f64 - cx, row as f64 - cy);
        (cos * dx - sin * dy + cx, sin * dx + cos * dy + cy)
    };
    let plane = h * w;
    let mut rgb = vec![0.0f32; 3 * plane];
    let mut labels = vec![pad.ignore; plane];
    for row in 0..h {
        for col in 0..w {
            let (sx, sy) = source(col, row);
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = ((sx - x0) as f32, (sy - y0) as f32);
            for c in 0..3 {
                let at = |yy: f64, xx: f64| {
                    if yy < 0.0 || xx < 0.0 || yy >= h as f64 || xx >= w as f64 {
                        pad.mean[c]
                    } else {
                        x.rgb[c * plane + yy as usize * w + xx as usize]
                    }
                };
                let top = at(y0, x0) * (1.0 - fx) + at(y0, x0 + 1.0) * fx;
                let bottom = at(y0 + 1.0, x0) * (1.0 - fx) + at(y0 + 1.0, x0 + 1.0) * fx;
                rgb[c * plane + row * w + col] = top * (1.0 - fy) + bottom * fy;
            }
            let (nx, ny) = (sx.round(), sy.round());
            if nx >= 0.0 && ny >= 0.0 && nx < w as f64 && ny < h as f64 {
                labels[row * w + col] = x.labels[ny as usize * w + nx as usize];
            }
        }
    }
    Example { rgb, labels, height: h, width: w }
}

/// cv2.GaussianBlur with a 5x5 kernel and sigma 0 (cv2's rule gives 1.1),
/// borders reflected without repeating the edge (BORDER_REFLECT_101).
fn blur(rgb: &[f32], h: usize, w: usize) -> Vec<f32> {
    let sigma = 0.3 * ((5.0 - 1.0) * 0.5 - 1.0) + 0.8;
    let raw: Vec<f64> = (-2i64..=2).map(|i| (-((i * i) as f64) / (2.0 * sigma * sigma)).exp()).collect();
    let total: f64 = raw.iter().sum();
    let kernel: Vec<f32> = raw.iter().map(|k| (k / total) as f32).collect();
    let reflect = |i: i64, n: usize| -> usize {
        let n = n as i64;
        let i = if i < 0 {
            -i
        } else if i >= n {
            2 * n - 2 - i
        } else {
            i
        };
        i.clamp(0, n - 1) as usize
    };
    let plane = h * w;
    let mut out = vec![0.0f32; rgb.len()];
    for (src, dst) in rgb.chunks_exact(plane).zip(out.chunks_exact_mut(plane)) {
        let mut rows = vec![0.0f32; plane];
        for y in 0..h {
            for x in 0..w {
                rows[y * w + x] = (0..5).map(|k| kernel[k] * src[y * w + reflect(x as i64 + k as i64 - 2, w)]).sum();
            }
        }
        for y in 0..h {
            for x in 0..w {
                dst[y * w + x] = (0..5).map(|k| kernel[k] * rows[reflect(y as i64 + k as i64 - 2, h) * w + x]).sum();
            }
        }
    }
    out
}

/// Mirrors left to right.
fn flip(mut x: Example) -> Example {
    let w = x.width;
    x.rgb.chunks_exact_mut(w).for_each(<[f32]>::reverse);
    x.labels.chunks_exact_mut(w).for_each(<[u16]>::reverse);
    x
}

/// semseg's `Crop`: padded to at least `size` (centred, the extra row or
/// column at the bottom or right), then cut at a random offset (`draws`,
/// each in 0..=spare) or the centred one.
fn cropped(x: &Example, size: [usize; 2], pad: Padding, draws: Option<&mut Draws>) -> Example {
    let [ch, cw] = size;
    let (ph, pw) = (x.height.max(ch), x.width.max(cw));
    let (top, left) = ((ph - x.height) / 2, (pw - x.width) / 2);
    let (oy, ox) = match draws {
        Some(d) => (d.below(ph - ch + 1), d.below(pw - cw + 1)),
        None => ((ph - ch) / 2, (pw - cw) / 2),
    };
    let inside = |y: usize, c: usize| {
        let (y, c) = ((y + oy).checked_sub(top)?, (c + ox).checked_sub(left)?);
        (y < x.height && c < x.width).then_some(y * x.width + c)
    };
    let plane = x.height * x.width;
    let rgb = (0..3)
        .flat_map(|c| (0..ch).flat_map(move |y| (0..cw).map(move |i| (c, y, i))))
        .map(|(c, y, i)| inside(y, i).map_or(pad.mean[c], |p| x.rgb[c * plane + p]))
        .collect();
    let labels = (0..ch)
        .flat_map(|y| (0..cw).map(move |i| (y, i)))
        .map(|(y, i)| inside(y, i).map_or(pad.ignore, |p| x.labels[p]))
        .collect();
    Example { rgb, labels, height: ch, width: cw }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::draws::Purpose;

    fn example(h: usize, w: usize) -> Example {
        let rgb = (0..3 * h * w).map(|i| i as f32).collect();
        let labels = (0..h * w).map(|i| i as u16).collect();
        Example { rgb, labels, height: h, width: w }
    }

    const PAD: Padding = Padding { mean: [1.5, 2.5, 3.5], ignore: 255 };

    #[test]
    fn parses_the_lists() {
        let all: Augmentation = "semseg".parse().unwrap();
        assert!(all.scale && all.rotate && all.blur && all.flip && all.crop);
        assert_eq!("none".parse::<Augmentation>().unwrap(), Augmentation::default());
        let some: Augmentation = "flip, crop".parse().unwrap();
        assert!(some.flip && some.crop && !some.scale);
        assert!("flip,zoom".parse::<Augmentation>().unwrap_err().to_string().contains("zoom"));
    }

    #[test]
    fn centred_crop_pads_with_the_mean_and_the_ignore_label() {
        // 2x3 into 4x2: one row of padding above and below, columns 0..2
        // of the centred window (offset (3 - 2) / 2 = 0).
        let out = cropped(&example(2, 3), [4, 2], PAD, None);
        assert_eq!(out.labels, [255, 255, 0, 1, 3, 4, 255, 255]);
        assert_eq!(&out.rgb[..8], &[1.5, 1.5, 0.0, 1.0, 3.0, 4.0, 1.5, 1.5]);
    }

    #[test]
    fn random_crop_stays_inside_and_flip_mirrors() {
        let mut d = Draws::new(0, Purpose::Augment, &[]);
        for _ in 0..20 {
            let out = cropped(&example(5, 6), [3, 3], PAD, Some(&mut d));
            assert!(out.labels.iter().all(|&l| l < 30), "{:?}", out.labels);
        }
        assert_eq!(flip(example(2, 3)).labels, [2, 1, 0, 5, 4, 3]);
    }

    #[test]
    fn scale_by_two_doubles_and_keeps_labels_nearest() {
        let out = scale(&example(2, 2), 2.0);
        assert_eq!((out.height, out.width), (4, 4));
        assert_eq!(out.labels, [0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3]);
        // Half-pixel centres: output column 1 samples input column 0.25.
        assert_eq!(out.rgb[1], 0.25);
    }

    #[test]
    fn rotation_by_zero_is_the_identity_and_blur_keeps_constants() {
        let x = example(3, 4);
        assert_eq!(rotate(&x, 0.0, PAD), x);
        let flat = vec![7.0f32; 3 * 5 * 6];
        assert!(blur(&flat, 5, 6).iter().all(|v| (v - 7.0).abs() < 1e-5));
    }
}
