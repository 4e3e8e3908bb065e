//! Scoring predictions on labelled data: each image's prediction (made by a
//! model under a protocol, or read back from a label PNG an earlier run
//! saved) against its label map, mapped to classes by the data's rule, and
//! one confusion matrix summed over the images (semseg's and
//! mmsegmentation's metrics).

use std::path::{Path, PathBuf};

use ndarray::{Array2, Axis};
use pspnet_data::{LabelMap, LabelRule, Sample, read_label_png, read_rgb};
use pspnet_kernels::argmax_channels;
use pspnet_model::{ConfusionMatrix, Protocol, Scores, Segmenter};
use serde_json::{Value, json};

use crate::Error;

/// What an evaluation adds up.
#[derive(Debug)]
pub struct Evaluation {
    /// Ground truth against prediction, over every image that succeeded.
    pub matrix: ConfusionMatrix,
    /// The images that failed, each with its error.
    pub failures: Vec<(Sample, Error)>,
}

/// Segments every sample with `model` under `protocol` and adds it to the
/// confusion matrix; `on_image` hears of each sample when it is done, with
/// its predicted classes (`H x W`) or its error.
pub fn evaluate(
    model: &Segmenter,
    samples: &[Sample],
    rule: LabelRule,
    protocol: &Protocol,
    max_pixels: u64,
    on_image: impl FnMut(&Sample, Result<&Array2<u32>, &Error>),
) -> Evaluation {
    let predict = |sample: &Sample| {
        let photo = read_rgb(&sample.image, max_pixels)?;
        let (w, h) = (photo.width() as usize, photo.height() as usize);
        let scores = model
            .scores(photo.as_raw(), h, w, protocol)
            .map_err(|source| Error::Inference { image: sample.image.clone(), source: Box::new(source) })?;
        Ok((argmax_channels(&scores).index_axis_move(Axis(0), 0), sample.image.clone()))
    };
    tally(samples, rule, model.spec.classes, max_pixels, predict, on_image)
}

/// Where [`evaluate`] with an output folder saves a sample's predicted
/// classes, and [`score`] reads them back: `DIR/STEM.labels.png`, STEM the
/// image's file stem (as `pspnet segment` names its outputs).
pub fn prediction_path(dir: &Path, sample: &Sample) -> PathBuf {
    let stem = sample.image.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    dir.join(format!("{stem}.labels.png"))
}

/// Scores the label PNGs an earlier run saved in `dir` (see
/// [`prediction_path`]) against the samples' labels, without a network: the
/// numbers of the evaluation that wrote them.
pub fn score(
    dir: &Path,
    samples: &[Sample],
    rule: LabelRule,
    classes: usize,
    max_pixels: u64,
    on_image: impl FnMut(&Sample, Result<&Array2<u32>, &Error>),
) -> Evaluation {
    let read = |sample: &Sample| {
        let path = prediction_path(dir, sample);
        let LabelMap { values, width, height } = read_label_png(&path, max_pixels)?;
        if let Some(&value) = values.iter().find(|&&v| usize::from(v) >= classes) {
            return Err(Error::Prediction { path, value, classes });
        }
        let predicted = values.into_iter().map(u32::from).collect();
        let predicted = Array2::from_shape_vec((height as usize, width as usize), predicted).expect("w * h values");
        Ok((predicted, path))
    };
    tally(samples, rule, classes, max_pixels, read, on_image)
}

/// The loop of [`evaluate`] and [`score`]: each sample's labels read and
/// mapped (before its prediction, so bad labels fail fast), its prediction
/// made and checked against their size, both added to the matrix.
fn tally(
    samples: &[Sample],
    rule: LabelRule,
    classes: usize,
    max_pixels: u64,
    mut predict: impl FnMut(&Sample) -> Result<(Array2<u32>, PathBuf), Error>,
    mut on_image: impl FnMut(&Sample, Result<&Array2<u32>, &Error>),
) -> Evaluation {
    let mut evaluation = Evaluation { matrix: ConfusionMatrix::new(classes), failures: Vec::new() };
    for sample in samples {
        let scored = (|| {
            let LabelMap { values, width, height } = read_label_png(&sample.label, max_pixels)?;
            let labels = rule.classes(&values, &sample.label, classes)?;
            let (predicted, from) = predict(sample)?;
            let size = [predicted.ncols() as u32, predicted.nrows() as u32];
            if size != [width, height] {
                let (label, label_size) = (sample.label.clone(), [width, height]);
                return Err(Error::SizeMismatch { label, label_size, other: from, other_size: size });
            }
            Ok((labels, predicted))
        })();
        match scored {
            Ok((labels, predicted)) => {
                let flat = predicted.as_slice().expect("a standard-layout array");
                evaluation.matrix.add(&labels, flat, pspnet_data::IGNORE);
                on_image(sample, Ok(&predicted));
            }
            Err(err) => {
                on_image(sample, Err(&err));
                evaluation.failures.push((sample.clone(), err));
            }
        }
    }
    evaluation
}

/// The results as `evaluate --json` writes them: percentages at full
/// precision, per class `null` where a class never occurs.
pub fn summary(dataset: &str, split: &str, images: usize, names: &[String], matrix: &ConfusionMatrix) -> Value {
    let Scores { per_class, miou, macc, aacc } = matrix.scores();
    json!({
        "dataset": dataset,
        "split": split,
        "images": images,
        "mIoU": miou,
        "mAcc": macc,
        "aAcc": aacc,
        "per_class": names.iter().zip(&per_class).map(|(n, s)| json!({"name": n, "IoU": s.iou, "Acc": s.acc})).collect::<Vec<_>>(),
    })
}
