//! The official folder layouts and label conventions of the four datasets
//! (../shared/datasets/classes/README.md), and raw label PNG reading.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::ValueEnum;

/// Label value meaning "not evaluated".
pub(crate) const IGNORE: u16 = 255;

/// A dataset with an official layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Dataset {
    /// `ROOT/SPLIT/images/NAME.png` + `ROOT/SPLIT/labels/NAME.png`; 11 classes, 11 = void.
    Camvid,
    /// ADEChallengeData2016: `ROOT/images/SPLIT/*.jpg` + `ROOT/annotations/SPLIT/*.png`; 0 = void, 1..150 -> 0..149.
    Ade20k,
    /// `ROOT/JPEGImages/NAME.jpg` + `ROOT/SegmentationClass/NAME.png` (palette indices) for the names in
    /// `ROOT/ImageSets/Segmentation/SPLIT.txt`; 255 = border.
    Voc2012,
    /// `ROOT/leftImg8bit/SPLIT/CITY/*_leftImg8bit.png` + `ROOT/gtFine/SPLIT/CITY/*_gtFine_labelIds.png`; label ids -> 19 train ids.
    Cityscapes,
}

/// One image and its label map.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) image: PathBuf,
    pub(crate) label: PathBuf,
}

/// Class names and palettes from mmsegmentation, label conventions from the
/// datasets' documentation.
const CLASSES: [(&str, &str); 4] = [
    ("camvid", include_str!("classes/camvid.json")),
    ("ade20k", include_str!("classes/ade20k.json")),
    ("voc2012", include_str!("classes/voc2012.json")),
    ("cityscapes", include_str!("classes/cityscapes.json")),
];

/// Cityscapes label id (0..=33) -> train id (0..=18, or IGNORE).
const CITYSCAPES_TRAIN_IDS: [u16; 34] = [
    255, 255, 255, 255, 255, 255, 255, 0, 1, 255, 255, 2, 3, 4, 255, 255, 255, 5, 255, 6, 7, 8, 9, 10, 11, 12, 13, 14,
    15, 255, 255, 16, 17, 18,
];

impl Dataset {
    /// The name used on the command line and in reports.
    pub(crate) fn name(self) -> &'static str {
        CLASSES[self as usize].0
    }

    /// Class names, in output-channel order.
    pub(crate) fn class_names(self) -> Vec<String> {
        let json: serde_json::Value =
            serde_json::from_str(CLASSES[self as usize].1).expect("embedded class file is JSON");
        json["classes"]
            .as_array()
            .expect("classes list")
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Lists the split's samples, sorted by image file name.
    pub(crate) fn samples(self, root: &Path, split: &str) -> Result<Vec<Sample>> {
        let mut samples = match self {
            Dataset::Camvid => {
                pair_folder(&root.join(split).join("images"), &root.join(split).join("labels"), "", "", "png")?
            }
            Dataset::Ade20k => {
                pair_folder(&root.join("images").join(split), &root.join("annotations").join(split), "", "", "png")?
            }
            Dataset::Voc2012 => {
                let list = root.join("ImageSets/Segmentation").join(format!("{split}.txt"));
                let text = std::fs::read_to_string(&list)
                    .with_context(|| format!("{}: cannot read the split list", list.display()))?;
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(|name| Sample {
                        image: root.join("JPEGImages").join(format!("{name}.jpg")),
                        label: root.join("SegmentationClass").join(format!("{name}.png")),
                    })
                    .collect()
            }
            Dataset::Cityscapes => {
                let images = root.join("leftImg8bit").join(split);
                let mut samples = Vec::new();
                for city in sorted_entries(&images)?.into_iter().filter(|p| p.is_dir()) {
                    let labels = root.join("gtFine").join(split).join(city.file_name().unwrap_or_default());
                    samples.extend(pair_folder(&city, &labels, "_leftImg8bit", "_gtFine_labelIds", "png")?);
                }
                samples
            }
        };
        if samples.is_empty() {
            bail!("{}: no {} images for split {split:?}", root.display(), self.name());
        }
        samples.sort_by(|a, b| a.image.file_name().cmp(&b.image.file_name()));
        for s in &samples {
            for path in [&s.image, &s.label] {
                if !path.is_file() {
                    bail!("{}: missing (expected by the {} layout)", path.display(), self.name());
                }
            }
        }
        Ok(samples)
    }

    /// Maps raw label values to classes (or [`IGNORE`]), refusing values the
    /// convention does not define.
    pub(crate) fn convert_labels(self, raw: &[u16], path: &Path) -> Result<Vec<u16>> {
        let classes = self.class_names().len() as u16;
        raw.iter()
            .map(|&v| {
                let mapped = match self {
                    Dataset::Camvid if v == classes => Some(IGNORE),
                    Dataset::Camvid | Dataset::Voc2012 if v < classes => Some(v),
                    Dataset::Voc2012 if v == IGNORE => Some(IGNORE),
                    Dataset::Ade20k if v == 0 => Some(IGNORE),
                    Dataset::Ade20k if v <= classes => Some(v - 1),
                    Dataset::Cityscapes => CITYSCAPES_TRAIN_IDS.get(v as usize).copied(),
                    _ => None,
                };
                mapped
                    .with_context(|| format!("{}: label value {v} is not defined for {}", path.display(), self.name()))
            })
            .collect()
    }
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list folder", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    Ok(entries)
}

/// Pairs `images/STEM{image_suffix}.*` with `labels/STEM{label_suffix}.{label_ext}`.
fn pair_folder(
    images: &Path,
    labels: &Path,
    image_suffix: &str,
    label_suffix: &str,
    label_ext: &str,
) -> Result<Vec<Sample>> {
    Ok(sorted_entries(images)?
        .into_iter()
        .filter(|p| p.is_file() && super::image_io::has_image_extension(p))
        .filter_map(|image| {
            let stem = image.file_stem()?.to_str()?.strip_suffix(image_suffix)?.to_string();
            Some(Sample { label: labels.join(format!("{stem}{label_suffix}.{label_ext}")), image })
        })
        .collect())
}

/// A label PNG's raw values (a palette PNG's indices, never its colours),
/// with its size.
pub(crate) fn read_label_png(path: &Path) -> Result<(Vec<u16>, u32, u32)> {
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder.read_info().with_context(|| format!("{}: not a PNG", path.display()))?;
    let (color, depth) = reader.output_color_type();
    if !matches!(color, png::ColorType::Grayscale | png::ColorType::Indexed) {
        bail!("{}: a label map must be a grayscale or palette PNG, this one is {color:?}", path.display());
    }
    let mut buf = vec![0; reader.output_buffer_size().context("label PNG too large")?];
    let info = reader.next_frame(&mut buf).with_context(|| format!("{}: corrupt or truncated PNG", path.display()))?;
    let (w, h) = (info.width, info.height);
    let bits = depth as usize;
    let values = buf[..info.buffer_size()]
        .chunks_exact(info.line_size)
        .flat_map(|row| {
            (0..w as usize).map(move |x| match bits {
                16 => u16::from_be_bytes([row[2 * x], row[2 * x + 1]]),
                8 => row[x] as u16,
                _ => {
                    let per_byte = 8 / bits;
                    let shift = 8 - bits * (x % per_byte + 1);
                    ((row[x / per_byte] >> shift) & ((1 << bits) - 1) as u8) as u16
                }
            })
        })
        .collect();
    Ok((values, w, h))
}
