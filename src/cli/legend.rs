//! The legend picture: which classes an image contains, with their colour
//! and share of the pixels.

use ab_glyph::{Font, FontRef, PxScale, ScaleFont, point};
use image::{Rgb, RgbImage};
use ndarray::ArrayView2;

/// DejaVu Sans (Bitstream Vera licence, see assets/fonts/DejaVuSans.LICENSE).
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

const ROW: u32 = 24;
const MARGIN: u32 = 8;
const SWATCH: u32 = 16;
const WIDTH: u32 = 320;
const TEXT_SIZE: f32 = 15.0;

/// Classes present in `labels`, most frequent first: `(class, share in percent)`.
pub(crate) fn class_shares(labels: ArrayView2<'_, u32>, classes: usize) -> Vec<(usize, f64)> {
    let mut counts = vec![0u64; classes];
    labels.iter().for_each(|&l| counts[l as usize] += 1);
    let total = labels.len().max(1) as f64;
    let mut shares: Vec<(usize, f64)> =
        counts.iter().enumerate().filter(|(_, n)| **n > 0).map(|(c, &n)| (c, 100.0 * n as f64 / total)).collect();
    shares.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    shares
}

/// Draws `text` in black at `size` pixels, starting at `x` on the baseline
/// `baseline`, darkening what is below it; what falls outside is clipped.
/// Returns the pen position after the text.
pub(crate) fn draw_text(image: &mut RgbImage, text: &str, size: f32, x: f32, baseline: f32) -> f32 {
    let font = FontRef::try_from_slice(FONT).expect("the embedded font parses");
    let scaled = font.as_scaled(PxScale::from(size));
    let (width, height) = (image.width() as i64, image.height() as i64);
    let mut pen = x;
    for ch in text.chars() {
        let glyph = scaled.scaled_glyph(ch);
        let advance = scaled.h_advance(glyph.id);
        if let Some(outline) = font.outline_glyph(ab_glyph::Glyph { position: point(pen, baseline), ..glyph }) {
            let bounds = outline.px_bounds();
            outline.draw(|gx, gy, coverage| {
                let (x, y) = (bounds.min.x as i64 + gx as i64, bounds.min.y as i64 + gy as i64);
                if (0..width).contains(&x) && (0..height).contains(&y) {
                    let px = image.get_pixel_mut(x as u32, y as u32);
                    px.0.iter_mut().for_each(|v| *v = (*v as f32 * (1.0 - coverage.min(1.0))) as u8);
                }
            });
        }
        pen += advance;
    }
    pen
}

/// One row per present class: a colour swatch, the name and the share.
pub(crate) fn legend_image(shares: &[(usize, f64)], names: &[String], palette: &[[u8; 3]]) -> RgbImage {
    let font = FontRef::try_from_slice(FONT).expect("the embedded font parses");
    let scaled = font.as_scaled(PxScale::from(TEXT_SIZE));
    let height = 2 * MARGIN + ROW * shares.len().max(1) as u32;
    let mut image = RgbImage::from_pixel(WIDTH, height, Rgb([255, 255, 255]));
    for (row, &(class, share)) in shares.iter().enumerate() {
        let top = MARGIN + row as u32 * ROW;
        let colour = Rgb(palette[class % palette.len()]);
        for y in top + (ROW - SWATCH) / 2..top + (ROW + SWATCH) / 2 {
            for x in MARGIN..MARGIN + SWATCH {
                image.put_pixel(x, y, colour);
            }
        }
        let name = names.get(class).cloned().unwrap_or_else(|| format!("class {class}"));
        let baseline = top as f32 + (ROW as f32 + scaled.ascent() + scaled.descent()) / 2.0;
        draw_text(&mut image, &format!("{name}  {share:.1}%"), TEXT_SIZE, (MARGIN + SWATCH + MARGIN) as f32, baseline);
    }
    image
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn shares_are_sorted_and_sum_to_100() {
        // 6 pixels: class 2 x3, class 0 x2, class 5 x1.
        let labels = Array2::from_shape_vec((2, 3), vec![2, 0, 2, 5, 0, 2]).unwrap();
        let shares = class_shares(labels.view(), 6);
        assert_eq!(shares.iter().map(|s| s.0).collect::<Vec<_>>(), [2, 0, 5]);
        assert!((shares[0].1 - 50.0).abs() < 1e-12 && (shares.iter().map(|s| s.1).sum::<f64>() - 100.0).abs() < 1e-9);
    }

    #[test]
    fn legend_draws_swatches_and_dark_text() {
        let names = vec!["sky".to_string(), "road".to_string()];
        let image = legend_image(&[(1, 60.0), (0, 40.0)], &names, &[[10, 20, 30], [200, 0, 0]]);
        assert_eq!(image.height(), 2 * MARGIN + 2 * ROW);
        assert_eq!(image.get_pixel(MARGIN + 2, MARGIN + ROW / 2).0, [200, 0, 0], "first row: road's swatch");
        assert_eq!(image.get_pixel(MARGIN + 2, MARGIN + ROW + ROW / 2).0, [10, 20, 30]);
        let text_area = (MARGIN + SWATCH + MARGIN..WIDTH).flat_map(|x| (MARGIN..MARGIN + ROW).map(move |y| (x, y)));
        assert!(text_area.filter(|&(x, y)| image.get_pixel(x, y).0[0] < 100).count() > 30, "text was drawn");
    }
}
