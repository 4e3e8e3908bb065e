//! The confusion matrix of an evaluation, as `evaluate --out-dir` saves it:
//! raw counts in CSV, and a row-normalised heat map with the class names.

use image::{Rgb, RgbImage};
use pspnet_model::ConfusionMatrix;

use super::legend::draw_text;

/// Rows ground truth, columns prediction; a header of class names and each
/// row led by its class name; raw pixel counts.
pub(crate) fn confusion_csv(names: &[String], matrix: &ConfusionMatrix) -> String {
    let quote = |name: &str| {
        if name.contains([',', '"', '\n']) { format!("\"{}\"", name.replace('"', "\"\"")) } else { name.to_string() }
    };
    let mut csv = String::from("ground truth \\ prediction");
    names.iter().for_each(|n| csv.push_str(&format!(",{}", quote(n))));
    csv.push('\n');
    for (name, row) in names.iter().zip(matrix.counts().chunks(names.len().max(1))) {
        csv.push_str(&quote(name));
        row.iter().for_each(|count| csv.push_str(&format!(",{count}")));
        csv.push('\n');
    }
    csv
}

const TEXT: f32 = 13.0;
const MARGIN: u32 = 8;

/// Each row divided by its total (white 0, dark blue 1); class names to the
/// left of the rows, class numbers above the columns, the numbers also
/// before the names.
pub(crate) fn confusion_image(names: &[String], matrix: &ConfusionMatrix) -> RgbImage {
    let classes = names.len();
    let cell = (600 / classes.max(1)).clamp(6, 40) as u32;
    let label_width = 8 + 7 * names.iter().map(|n| n.chars().count() + 5).max().unwrap_or(8) as u32;
    let (left, top) = (MARGIN + label_width, MARGIN + 2 * TEXT as u32);
    let side = cell * classes as u32;
    let mut image = RgbImage::from_pixel(left + side + MARGIN, top + side + MARGIN, Rgb([255, 255, 255]));
    let counts = matrix.counts();
    for (r, row) in counts.chunks(classes.max(1)).enumerate() {
        let total = row.iter().sum::<u64>().max(1) as f32;
        for (c, &count) in row.iter().enumerate() {
            let share = count as f32 / total;
            let colour = Rgb([255.0 * share, 204.0 * share, 115.0 * share].map(|v| (255.0 - v).round() as u8));
            for y in top + r as u32 * cell..top + (r as u32 + 1) * cell {
                for x in left + c as u32 * cell..left + (c as u32 + 1) * cell {
                    image.put_pixel(x, y, colour);
                }
            }
        }
    }
    let step = ((TEXT as u32 + 2) / cell).max(1) as usize;
    for (i, name) in names.iter().enumerate() {
        let middle = (top + i as u32 * cell + cell / 2) as f32 + TEXT / 3.0;
        if cell >= TEXT as u32 || i % step == 0 {
            draw_text(&mut image, &format!("{i} {name}"), TEXT, MARGIN as f32, middle);
            draw_text(&mut image, &i.to_string(), TEXT, (left + i as u32 * cell) as f32, top as f32 - 4.0);
        }
    }
    image
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csv_has_names_and_raw_counts() {
        let names = vec!["road".to_string(), "sky, blue".to_string()];
        let matrix = ConfusionMatrix::from_counts(2, vec![5, 1, 0, 3]).unwrap();
        assert_eq!(
            confusion_csv(&names, &matrix),
            "ground truth \\ prediction,road,\"sky, blue\"\nroad,5,1\n\"sky, blue\",0,3\n"
        );
    }

    #[test]
    fn the_heat_map_is_row_normalised() {
        let names = vec!["a".to_string(), "b".to_string()];
        let matrix = ConfusionMatrix::from_counts(2, vec![9, 1, 0, 4]).unwrap();
        let image = confusion_image(&names, &matrix);
        let cell = 40;
        let (left, top) = (image.width() - MARGIN - 2 * cell, image.height() - MARGIN - 2 * cell);
        let at = |r: u32, c: u32| image.get_pixel(left + c * cell + cell / 2, top + r * cell + cell / 2).0;
        assert_eq!(at(1, 1), [0, 51, 140], "row b: all correct");
        assert_eq!(at(1, 0), [255, 255, 255], "row b: nothing predicted a");
        assert!(at(0, 0)[0] < at(0, 1)[0], "row a: 90% on the diagonal is darker than 10%");
    }
}
