//! Scoring a model on labelled data: each image segmented under a protocol,
//! its label map mapped to classes by the data's rule, and one confusion
//! matrix summed over the images (semseg's and mmsegmentation's metrics).

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

/// Segments every sample and adds it to the confusion matrix; `on_image`
/// hears of each sample when it is done (with its error, if it failed).
pub fn evaluate(
    model: &Segmenter,
    samples: &[Sample],
    rule: LabelRule,
    protocol: &Protocol,
    max_pixels: u64,
    mut on_image: impl FnMut(&Sample, Option<&Error>),
) -> Evaluation {
    let classes = model.spec.classes;
    let mut evaluation = Evaluation { matrix: ConfusionMatrix::new(classes), failures: Vec::new() };
    for sample in samples {
        match score_sample(model, sample, rule, protocol, max_pixels) {
            Ok((labels, predictions)) => {
                evaluation.matrix.add(&labels, &predictions, pspnet_data::IGNORE);
                on_image(sample, None);
            }
            Err(err) => {
                on_image(sample, Some(&err));
                evaluation.failures.push((sample.clone(), err));
            }
        }
    }
    evaluation
}

/// One sample's labels (mapped to classes, checked against its image's
/// size) and the model's predictions, row by row.
pub fn score_sample(
    model: &Segmenter,
    sample: &Sample,
    rule: LabelRule,
    protocol: &Protocol,
    max_pixels: u64,
) -> Result<(Vec<u16>, Vec<u32>), Error> {
    let photo = read_rgb(&sample.image, max_pixels)?;
    let LabelMap { values: raw, width, height } = read_label_png(&sample.label, max_pixels)?;
    if (width, height) != photo.dimensions() {
        return Err(Error::SizeMismatch {
            label: sample.label.clone(),
            label_size: [width, height],
            image: sample.image.clone(),
            image_size: [photo.width(), photo.height()],
        });
    }
    let labels = rule.classes(&raw, &sample.label, model.spec.classes)?;
    let (w, h) = (photo.width() as usize, photo.height() as usize);
    let scores = model
        .scores(photo.as_raw(), h, w, protocol)
        .map_err(|source| Error::Inference { image: sample.image.clone(), source: Box::new(source) })?;
    Ok((labels, argmax_channels(&scores).into_raw_vec_and_offset().0))
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
