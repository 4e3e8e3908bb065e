//! The official folder layouts and label conventions of the four datasets
//! (../shared/datasets/classes/README.md).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::{DataError, has_image_extension};

/// Label value meaning "not evaluated".
pub const IGNORE: u16 = 255;

/// A dataset with an official layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dataset {
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The image file.
    pub image: PathBuf,
    /// Its label map.
    pub label: PathBuf,
}

/// Class names and palettes from mmsegmentation, label conventions from the
/// datasets' documentation.
const CLASSES: [(&str, &str); 4] = [
    ("camvid", include_str!("../classes/camvid.json")),
    ("ade20k", include_str!("../classes/ade20k.json")),
    ("voc2012", include_str!("../classes/voc2012.json")),
    ("cityscapes", include_str!("../classes/cityscapes.json")),
];

/// Cityscapes label id (0..=33) -> train id (0..=18, or IGNORE).
pub(crate) const CITYSCAPES_TRAIN_IDS: [u16; 34] = [
    255, 255, 255, 255, 255, 255, 255, 0, 1, 255, 255, 2, 3, 4, 255, 255, 255, 5, 255, 6, 7, 8, 9, 10, 11, 12, 13, 14,
    15, 255, 255, 16, 17, 18,
];

impl FromStr for Dataset {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Dataset::ALL.into_iter().find(|d| d.name() == name).ok_or_else(|| {
            let names: Vec<&str> = Dataset::ALL.iter().map(|d| d.name()).collect();
            format!("unknown dataset {name:?} (expected one of {})", names.join(", "))
        })
    }
}

impl Dataset {
    /// Every dataset, in the order of [`Dataset::name`]'s table.
    pub const ALL: [Dataset; 4] = [Dataset::Camvid, Dataset::Ade20k, Dataset::Voc2012, Dataset::Cityscapes];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        CLASSES[self as usize].0
    }

    /// Class names, in output-channel order.
    pub fn class_names(self) -> Vec<String> {
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
    pub fn samples(self, root: &Path, split: &str) -> Result<Vec<Sample>, DataError> {
        self.listed(root, split, true)
    }

    /// The split's images alone, sorted by file name: for splits without
    /// labels, such as the benchmark servers' test splits.
    pub fn images(self, root: &Path, split: &str) -> Result<Vec<PathBuf>, DataError> {
        Ok(self.listed(root, split, false)?.into_iter().map(|s| s.image).collect())
    }

    /// The split's images and where their labels belong, checked to exist
    /// (the labels only when `labelled`).
    fn listed(self, root: &Path, split: &str, labelled: bool) -> Result<Vec<Sample>, DataError> {
        let mut samples = match self {
            Dataset::Camvid => {
                pair_folder(&root.join(split).join("images"), &root.join(split).join("labels"), "", "", "png")?
            }
            Dataset::Ade20k => {
                pair_folder(&root.join("images").join(split), &root.join("annotations").join(split), "", "", "png")?
            }
            Dataset::Voc2012 => {
                let list = root.join("ImageSets/Segmentation").join(format!("{split}.txt"));
                let text = std::fs::read_to_string(&list).map_err(|source| DataError::Io {
                    path: list.clone(),
                    what: "cannot read the split list",
                    source,
                })?;
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
            let reason = format!("no {} images for split {split:?}", self.name());
            return Err(DataError::Layout { path: root.to_path_buf(), reason });
        }
        samples.sort_by(|a, b| a.image.file_name().cmp(&b.image.file_name()));
        for s in &samples {
            for path in [&s.image, &s.label].into_iter().take(if labelled { 2 } else { 1 }) {
                if !path.is_file() {
                    let reason = format!("missing (expected by the {} layout)", self.name());
                    return Err(DataError::Layout { path: path.clone(), reason });
                }
            }
        }
        Ok(samples)
    }

    /// Maps raw label values to classes (or [`IGNORE`]), refusing values the
    /// convention does not define.
    pub fn convert_labels(self, raw: &[u16], path: &Path) -> Result<Vec<u16>, DataError> {
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
                mapped.ok_or_else(|| DataError::LabelValue { path: path.to_path_buf(), value: v, dataset: self.name() })
            })
            .collect()
    }
}

/// Where labelled samples come from: a named dataset's split in its
/// official layout, or custom folders of images and label PNGs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// A split of a named dataset.
    Named {
        /// The dataset.
        dataset: Dataset,
        /// Its root folder.
        root: PathBuf,
        /// The split.
        split: String,
    },
    /// Images paired with `labels/STEM.png` (see [`custom_samples`]).
    Custom {
        /// The image folder.
        images: PathBuf,
        /// The label folder.
        labels: PathBuf,
        /// The label that counts for nothing.
        ignore: u16,
        /// mmsegmentation's `reduce_zero_label`.
        reduce_zero_label: bool,
    },
}

impl DataSource {
    /// The samples, in file-name order.
    pub fn samples(&self) -> Result<Vec<Sample>, DataError> {
        match self {
            DataSource::Named { dataset, root, split } => dataset.samples(root, split),
            DataSource::Custom { images, labels, .. } => custom_samples(images, labels),
        }
    }

    /// How its label values become classes.
    pub fn rule(&self) -> LabelRule {
        match *self {
            DataSource::Named { dataset, .. } => LabelRule::Dataset(dataset),
            DataSource::Custom { ignore, reduce_zero_label, .. } => LabelRule::Custom { ignore, reduce_zero_label },
        }
    }

    /// The named dataset, if any.
    pub fn dataset(&self) -> Option<Dataset> {
        match self {
            DataSource::Named { dataset, .. } => Some(*dataset),
            DataSource::Custom { .. } => None,
        }
    }

    /// The dataset's name (`custom` for custom data).
    pub fn name(&self) -> &'static str {
        self.dataset().map_or("custom", Dataset::name)
    }

    /// The split's name; custom data is named by its image folder.
    pub fn split(&self) -> String {
        match self {
            DataSource::Named { split, .. } => split.clone(),
            DataSource::Custom { images, .. } => images.display().to_string(),
        }
    }
}

/// How a label file's values become classes: a named dataset's convention,
/// or a custom one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelRule {
    /// A named dataset's convention.
    Dataset(Dataset),
    /// Values 0..N-1 are classes, `ignore` is ignored; with
    /// `reduce_zero_label` 0 is ignored and v stands for class v - 1.
    Custom {
        /// The label that counts for nothing.
        ignore: u16,
        /// mmsegmentation's `reduce_zero_label`.
        reduce_zero_label: bool,
    },
}

impl LabelRule {
    /// Maps raw label values to classes below `classes` (or [`IGNORE`]),
    /// refusing any other value; `path` names the label file in errors.
    pub fn classes(self, raw: &[u16], path: &Path, classes: usize) -> Result<Vec<u16>, DataError> {
        let labels = match self {
            LabelRule::Dataset(dataset) => dataset.convert_labels(raw, path)?,
            LabelRule::Custom { ignore, reduce_zero_label } => raw
                .iter()
                .map(|&v| match (v, reduce_zero_label) {
                    (v, _) if v == ignore => IGNORE,
                    (0, true) => IGNORE,
                    (v, true) => v - 1,
                    (v, false) => v,
                })
                .collect(),
        };
        match labels.iter().zip(raw).find(|(l, _)| **l != IGNORE && usize::from(**l) >= classes) {
            Some((_, &value)) => Err(DataError::LabelClass { path: path.to_path_buf(), value, classes }),
            None => Ok(labels),
        }
    }
}

/// A custom dataset's samples: every image in `images` paired by file stem
/// with `labels/STEM.png`; an image whose label is missing is an error.
pub fn custom_samples(images: &Path, labels: &Path) -> Result<Vec<Sample>, DataError> {
    let samples = pair_folder(images, labels, "", "", "png")?;
    if let Some(missing) = samples.iter().find(|s| !s.label.is_file()) {
        let reason = format!("missing: the label of {}", missing.image.display());
        return Err(DataError::Layout { path: missing.label.clone(), reason });
    }
    if samples.is_empty() {
        return Err(DataError::Layout { path: images.to_path_buf(), reason: "no images".into() });
    }
    Ok(samples)
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| DataError::Io { path: dir.to_path_buf(), what: "cannot list folder", source })?
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
) -> Result<Vec<Sample>, DataError> {
    Ok(sorted_entries(images)?
        .into_iter()
        .filter(|p| p.is_file() && has_image_extension(p))
        .filter_map(|image| {
            let stem = image.file_stem()?.to_str()?.strip_suffix(image_suffix)?.to_string();
            Some(Sample { label: labels.join(format!("{stem}{label_suffix}.{label_ext}")), image })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_conventions_map_labels() {
        for d in Dataset::ALL {
            assert_eq!(d.name().parse::<Dataset>().unwrap(), d);
        }
        assert!("kitti".parse::<Dataset>().unwrap_err().contains("camvid, ade20k, voc2012, cityscapes"));
        assert_eq!(Dataset::Camvid.class_names().len(), 11);
        let path = Path::new("l.png");
        assert_eq!(Dataset::Camvid.convert_labels(&[0, 10, 11], path).unwrap(), [0, 10, IGNORE]);
        assert_eq!(Dataset::Ade20k.convert_labels(&[0, 1, 150], path).unwrap(), [IGNORE, 0, 149]);
        assert_eq!(Dataset::Cityscapes.convert_labels(&[7, 33, 0], path).unwrap(), [0, 18, IGNORE]);
        let err = Dataset::Camvid.convert_labels(&[12], path).unwrap_err().to_string();
        assert_eq!(err, "l.png: label value 12 is not defined for camvid");
    }
}
