//! The benchmark servers' formats for predictions: Cityscapes' label ids,
//! VOC's palette PNGs, ADE20K's 1-based ids.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::DataError;
use crate::dataset::CITYSCAPES_TRAIN_IDS;

/// A server's prediction format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submission {
    /// `STEM.png` (STEM ending in `_leftImg8bit`, which the Cityscapes
    /// scripts match predictions by), 8-bit label ids: each of the 19 train
    /// ids mapped back to its label id.
    Cityscapes,
    /// `ID.png`, palette indices 0..20 with VOC's 256-colour palette.
    Voc,
    /// `STEM.png`, 8-bit ids 1..150 (0 is "other", which a prediction never is).
    Ade20k,
}

impl FromStr for Submission {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "cityscapes" => Ok(Submission::Cityscapes),
            "voc" => Ok(Submission::Voc),
            "ade20k" => Ok(Submission::Ade20k),
            _ => Err(format!("unknown format {name:?} (expected cityscapes, voc or ade20k)")),
        }
    }
}

/// VOC's colour map: index i's bits spread over the high bits of R, G, B
/// (the devkit's `VOClabelcolormap.m`).
pub fn voc_palette() -> [[u8; 3]; 256] {
    std::array::from_fn(|i| {
        let mut rgb = [0u8; 3];
        let mut index = i;
        for shift in (0..8).rev() {
            for (channel, value) in rgb.iter_mut().enumerate() {
                *value |= (((index >> channel) & 1) as u8) << shift;
            }
            index >>= 3;
        }
        rgb
    })
}

impl Submission {
    /// The format's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Submission::Cityscapes => "cityscapes",
            Submission::Voc => "voc",
            Submission::Ade20k => "ade20k",
        }
    }

    /// How many classes the format's models predict.
    pub fn classes(self) -> usize {
        match self {
            Submission::Cityscapes => 19,
            Submission::Voc => 21,
            Submission::Ade20k => 150,
        }
    }

    /// Where the prediction of `image` goes: `dir/FORMAT/STEM.png`.
    pub fn path(self, dir: &Path, image: &Path) -> PathBuf {
        let stem = image.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        dir.join(self.name()).join(format!("{stem}.png"))
    }

    /// The PNG of a `width x height` map of predicted classes (row by row),
    /// each below [`Submission::classes`].
    pub fn encode(self, classes: &[u32], width: u32, height: u32) -> Result<Vec<u8>, DataError> {
        let error = |reason: String| DataError::Layout { path: PathBuf::from(self.name()), reason };
        if let Some(&c) = classes.iter().find(|&&c| c as usize >= self.classes()) {
            return Err(error(format!("class {c} is not one of the format's {} classes", self.classes())));
        }
        let label_ids: Vec<u8> = CITYSCAPES_TRAIN_IDS
            .iter()
            .enumerate()
            .filter(|&(_, &train)| train != 255)
            .map(|(label, _)| label as u8)
            .collect();
        let values: Vec<u8> = classes
            .iter()
            .map(|&c| match self {
                Submission::Cityscapes => label_ids[c as usize],
                Submission::Voc => c as u8,
                Submission::Ade20k => c as u8 + 1,
            })
            .collect();
        let mut bytes = Vec::new();
        let mut encoder = png::Encoder::new(Cursor::new(&mut bytes), width, height);
        if self == Submission::Voc {
            encoder.set_color(png::ColorType::Indexed);
            encoder.set_palette(voc_palette().concat());
        } else {
            encoder.set_color(png::ColorType::Grayscale);
        }
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| error(e.to_string()))?;
        writer.write_image_data(&values).map_err(|e| error(e.to_string()))?;
        writer.finish().map_err(|e| error(e.to_string()))?;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode_label_png;

    /// The 19 evaluated classes' label ids, from cityscapesscripts'
    /// `labels.py` (road 7, sidewalk 8, ..., bicycle 33).
    const CITYSCAPES_LABEL_IDS: [u8; 19] = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33];

    fn decoded(format: Submission, classes: &[u32]) -> Vec<u16> {
        let png = format.encode(classes, classes.len() as u32, 1).unwrap();
        decode_label_png(Path::new("x.png"), &png, 1 << 20).unwrap().values
    }

    #[test]
    fn cityscapes_train_ids_become_label_ids() {
        let all: Vec<u32> = (0..19).collect();
        let want: Vec<u16> = CITYSCAPES_LABEL_IDS.iter().map(|&v| u16::from(v)).collect();
        assert_eq!(decoded(Submission::Cityscapes, &all), want);
    }

    #[test]
    fn ade20k_is_one_based_and_voc_keeps_its_indices_with_the_devkit_palette() {
        assert_eq!(decoded(Submission::Ade20k, &[0, 5, 149]), [1, 6, 150]);
        assert_eq!(decoded(Submission::Voc, &[0, 15, 20]), [0, 15, 20]);
        // VOClabelcolormap.m: background, aeroplane, person, tv/monitor, and 255 (the border).
        let palette = voc_palette();
        assert_eq!(
            [palette[0], palette[1], palette[15], palette[20]],
            [[0, 0, 0], [128, 0, 0], [192, 128, 128], [0, 64, 128]]
        );
        assert_eq!(palette[255], [224, 224, 192]);
        let png = Submission::Voc.encode(&[1], 1, 1).unwrap();
        let decoder = png::Decoder::new(Cursor::new(png)).read_info().unwrap();
        assert_eq!(decoder.info().palette.as_deref().map(|p| p[3..6].to_vec()), Some(vec![128, 0, 0]));
    }

    #[test]
    fn a_class_outside_the_format_is_refused() {
        let err = Submission::Cityscapes.encode(&[19], 1, 1).unwrap_err().to_string();
        assert!(err.contains("class 19 is not one of the format's 19 classes"), "{err}");
        assert_eq!(
            Submission::Voc.path(Path::new("out"), Path::new("a/2007_000033.jpg")),
            Path::new("out/voc/2007_000033.png")
        );
        assert_eq!(
            "kitti".parse::<Submission>().unwrap_err(),
            "unknown format \"kitti\" (expected cityscapes, voc or ade20k)"
        );
    }
}
