//! `pspnet.evaluate`: a model scored on a dataset split, as `pspnet
//! evaluate --json` reports it.

use std::path::{Path, PathBuf};

use pspnet::data::{DataSource, Dataset, parse_class_names};
use pspnet::render::{model_class_names, numbered_class_names};
use pyo3::prelude::*;

use crate::Model;
use crate::errors::{input_error, input_error_saying, value_error};
use crate::protocol::ProtocolArgs;

/// Scores `model` on a dataset split and returns the dict `pspnet evaluate
/// --json` writes (mIoU, mAcc, aAcc in percent, per class IoU and Acc).
///
/// `dataset`: "camvid", "ade20k", "voc2012" or "cityscapes" with `root`
/// and `split` (the protocol defaulting to the dataset's preset), or
/// "custom" with `images` and `labels` folders (paired by file stem),
/// `classes` (a count, a list of names or a class file; default the
/// model's), `ignore_index` and `reduce_zero_label`. The protocol keywords
/// are `Model.segment`'s.
#[pyfunction]
#[pyo3(signature = (
    model, dataset, root=None, split=None, *, images=None, labels=None, classes=None, ignore_index=255,
    reduce_zero_label=false, mode=None, crop=None, stride=None, base_size=None, flip=None, scales=None,
    average=None, preset=None, max_pixels=100_000_000
))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn evaluate<'py>(
    py: Python<'py>,
    model: &Model,
    dataset: &str,
    root: Option<PathBuf>,
    split: Option<String>,
    images: Option<PathBuf>,
    labels: Option<PathBuf>,
    classes: Option<Bound<'py, PyAny>>,
    ignore_index: u16,
    reduce_zero_label: bool,
    mode: Option<String>,
    crop: Option<usize>,
    stride: Option<usize>,
    base_size: Option<usize>,
    flip: Option<bool>,
    scales: Option<Vec<f64>>,
    average: Option<String>,
    preset: Option<String>,
    max_pixels: u64,
) -> PyResult<Bound<'py, PyAny>> {
    let source = if dataset == "custom" {
        let (Some(images), Some(labels)) = (images, labels) else {
            return Err(value_error("dataset \"custom\" needs images= and labels= folders"));
        };
        DataSource::Custom { images, labels, ignore: ignore_index, reduce_zero_label }
    } else {
        let named: Dataset = dataset.parse().map_err(value_error)?;
        let (Some(root), Some(split)) = (root, split) else {
            return Err(value_error(format!("dataset {dataset:?} needs root and split")));
        };
        DataSource::Named { dataset: named, root, split }
    };
    let spec = model.spec();
    let names = match (source.dataset(), classes) {
        (Some(d), None) => d.class_names(),
        (Some(d), Some(_)) => return Err(value_error(format!("classes is for custom data; {} has its own", d.name()))),
        (None, Some(classes)) => class_names(&classes)?,
        (None, None) => model_class_names(spec),
    };
    if names.len() != spec.classes {
        return Err(value_error(format!(
            "the model has {} classes, {} has {}",
            spec.classes,
            source.name(),
            names.len()
        )));
    }
    let args = ProtocolArgs { mode, crop, stride, base_size, flip, scales, average, preset };
    let protocol = args.protocol(source.dataset().map(Dataset::name))?;
    let samples = source.samples().map_err(|e| input_error(e.into()))?;
    let (rule, count) = (source.rule(), samples.len());
    let evaluation =
        model.compute(py, move |s| pspnet::evaluate(s, &samples, rule, &protocol, max_pixels, |_, _| ()))?;
    let failed = evaluation.failures.len();
    if let Some((_, first)) = evaluation.failures.into_iter().next() {
        let message = format!("{failed} of {count} images failed; the first: {first}");
        return Err(input_error_saying(&first, message));
    }
    let summary = pspnet::summary(source.name(), &source.split(), count, &names, &evaluation.matrix);
    py.import("json")?.call_method1("loads", (summary.to_string(),))
}

/// `classes=`: a count, a list of names, or a class file.
fn class_names(classes: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if let Ok(n) = classes.extract::<usize>() {
        return Ok(numbered_class_names(n));
    }
    if let Ok(names) = classes.extract::<Vec<String>>() {
        return Ok(names);
    }
    let path: PathBuf = classes.extract()?;
    let text = std::fs::read_to_string(&path).map_err(|e| {
        input_error(pspnet::data::DataError::Io { path: path.clone(), what: "cannot read", source: e }.into())
    })?;
    parse_class_names(Path::new(&path), &text).map_err(|e| input_error(e.into()))
}
