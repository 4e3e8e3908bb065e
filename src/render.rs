//! Pictures of a segmentation: the label map as an image, each class in its
//! colour, and the colours blended over the photo.

use image::{DynamicImage, ImageBuffer, Luma, Rgb, RgbImage};
use ndarray::ArrayView2;
use pspnet_model::ModelSpec;

/// The checkpoint's palette, or [`generated_palette`] when it carries none.
pub fn model_palette(spec: &ModelSpec) -> Vec<[u8; 3]> {
    spec.palette.clone().unwrap_or_else(|| generated_palette(spec.classes))
}

/// The checkpoint's class names, or [`numbered_class_names`] when it has none.
pub fn model_class_names(spec: &ModelSpec) -> Vec<String> {
    spec.class_names.clone().unwrap_or_else(|| numbered_class_names(spec.classes))
}

/// `class 0`, `class 1`, ...: names for classes known only by their count.
pub fn numbered_class_names(classes: usize) -> Vec<String> {
    (0..classes).map(|i| format!("class {i}")).collect()
}

/// Distinct colours for checkpoints that carry none: hues around the circle.
pub fn generated_palette(classes: usize) -> Vec<[u8; 3]> {
    (0..classes)
        .map(|i| {
            let hue = (i as f32 * 0.618_034).fract() * 6.0;
            let x = 1.0 - (hue % 2.0 - 1.0).abs();
            let (r, g, b) = match hue as u32 {
                0 => (1.0, x, 0.0),
                1 => (x, 1.0, 0.0),
                2 => (0.0, 1.0, x),
                3 => (0.0, x, 1.0),
                4 => (x, 0.0, 1.0),
                _ => (1.0, 0.0, x),
            };
            [r, g, b].map(|v: f32| (55.0 + 200.0 * v) as u8)
        })
        .collect()
}

/// Class indices as a grayscale image: 8-bit for up to 256 classes, else 16-bit.
pub fn labels_image(labels: ArrayView2<'_, u32>, classes: usize) -> DynamicImage {
    let (h, w) = labels.dim();
    let at = |x: u32, y: u32| labels[[y as usize, x as usize]];
    if classes <= 256 {
        DynamicImage::ImageLuma8(ImageBuffer::from_fn(w as u32, h as u32, |x, y| Luma([at(x, y) as u8])))
    } else {
        DynamicImage::ImageLuma16(ImageBuffer::<Luma<u16>, _>::from_fn(w as u32, h as u32, |x, y| {
            Luma([at(x, y) as u16])
        }))
    }
}

/// Each pixel in its class's colour.
pub fn color_image(labels: ArrayView2<'_, u32>, palette: &[[u8; 3]]) -> RgbImage {
    let (h, w) = labels.dim();
    RgbImage::from_fn(
        w as u32,
        h as u32,
        |x, y| Rgb(palette[labels[[y as usize, x as usize]] as usize % palette.len()]),
    )
}

/// The class colours blended over the photo with weight `opacity` (0..=1):
/// per channel `floor((1 - opacity) * photo + opacity * colour + 0.5)`, in
/// float64 and in that order, so that NumPy's evaluation of the formula
/// gives the same bytes.
pub fn overlay_image(photo: &RgbImage, color: &RgbImage, opacity: f64) -> RgbImage {
    RgbImage::from_fn(photo.width(), photo.height(), |x, y| {
        let (p, c) = (photo.get_pixel(x, y).0, color.get_pixel(x, y).0);
        Rgb([0, 1, 2].map(|i| ((1.0 - opacity) * f64::from(p[i]) + opacity * f64::from(c[i]) + 0.5).floor() as u8))
    })
}

/// [`overlay_image`] of a label map's [`color_image`].
pub fn overlay_labels(photo: &RgbImage, labels: ArrayView2<'_, u32>, palette: &[[u8; 3]], opacity: f64) -> RgbImage {
    overlay_image(photo, &color_image(labels, palette), opacity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_opacity_rounds_the_mean_up() {
        let photo = RgbImage::from_raw(1, 1, vec![0, 10, 255]).unwrap();
        let color = RgbImage::from_raw(1, 1, vec![1, 13, 254]).unwrap();
        // (0 + 1) / 2 = 0.5 -> 1; 11.5 -> 12; 254.5 -> 255.
        assert_eq!(overlay_image(&photo, &color, 0.5).into_raw(), vec![1, 12, 255]);
        assert_eq!(overlay_image(&photo, &color, 0.0).into_raw(), vec![0, 10, 255]);
        assert_eq!(overlay_image(&photo, &color, 1.0).into_raw(), vec![1, 13, 254]);
        // Channel 1 at 0.25: 0.75 * 10 + 0.25 * 13 + 0.5 = 11.25 -> 11.
        assert_eq!(overlay_image(&photo, &color, 0.25).into_raw()[1], 11);
    }
}
