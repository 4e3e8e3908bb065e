//! `pspnet.Model`: a loaded checkpoint, its thread pool, and what it can
//! draw.

use std::path::PathBuf;

use ndarray::Array3;
use numpy::IntoPyArray;
use pspnet::kernels::softmax_channels;
use pspnet::model::{ConvOptions, ModelSpec, Overrides, Precision, Protocol, Segmenter};
use pspnet::render::{color_image, model_class_names, model_palette, overlay_labels};
use pspnet::tensor::{Shape, Tensor};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::arrays::{Rgb, label_map, labels_array, rgb_array, rgb_image};
use crate::driver::{Driver, StartError};
use crate::errors::{checkpoint_error, input_error, value_error};
use crate::protocol::ProtocolArgs;

/// A PSPNet loaded from a checkpoint, ready to segment RGB images.
///
/// Made by `pspnet.load`. One model may be used from several Python threads
/// at once: each call releases the GIL and runs on the model's thread pool.
#[pyclass(frozen, module = "pspnet")]
pub struct Model {
    spec: ModelSpec,
    driver: Driver<Segmenter>,
    names: Vec<String>,
    palette: Vec<[u8; 3]>,
}

/// Loads any checkpoint the command line loads.
///
/// `path`: a `.pth` (semseg or mmsegmentation layout), a pspnet-rs
/// `.safetensors` or a `.caffemodel` (with `prototxt` when its layers lack
/// parameters); `None` is the embedded CamVid model (PSPNet ResNet-18, 11
/// classes). `precision`: "f32" or "bf16" (bf16 operands, f32 sums).
/// `threads`: the size of the model's thread pool (default: one per core).
#[pyfunction]
#[pyo3(signature = (path=None, *, precision="f32", threads=None, prototxt=None))]
pub(crate) fn load(
    py: Python<'_>,
    path: Option<PathBuf>,
    precision: &str,
    threads: Option<usize>,
    prototxt: Option<PathBuf>,
) -> PyResult<Model> {
    let precision: Precision = precision.parse().map_err(|e| value_error(format!("precision: {e}")))?;
    if threads == Some(0) {
        return Err(value_error("threads: at least 1"));
    }
    let overrides = Overrides { prototxt, ..Overrides::default() };
    let options = ConvOptions { precision, ..ConvOptions::default() };
    // Loaded on the driver, whose heap then holds the weights as it will the tensors.
    let driver = py.detach(|| {
        Driver::start(threads, move || match &path {
            Some(path) => Segmenter::load(path, &overrides, options).map_err(pspnet::Error::from),
            None => pspnet::embedded_model(&overrides, options),
        })
    });
    let driver = driver.map_err(|err| match err {
        StartError::Threads(err) => value_error(format!("threads: {err}")),
        StartError::State(err) => checkpoint_error(err),
    })?;
    let spec = driver.run(|s: &Segmenter| s.spec.clone()).ok_or_else(|| value_error("the engine did not start"))?;
    let names = model_class_names(&spec);
    let palette = model_palette(&spec);
    Ok(Model { spec, driver, names, palette })
}

impl Model {
    /// What the checkpoint says of the network.
    pub(crate) fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Runs `f` on the model's driver thread, with the GIL released.
    pub(crate) fn compute<T: Send + 'static>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&Segmenter) -> T + Send + 'static,
    ) -> PyResult<T> {
        py.detach(|| self.driver.run(f))
            .ok_or_else(|| PyRuntimeError::new_err("the engine panicked: this is a bug of pspnet-rs"))
    }

    /// `f` on one image, or on each image of a list (giving a list).
    fn each_image<'py>(
        &self,
        image: &Bound<'py, PyAny>,
        f: impl Fn(Rgb) -> PyResult<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match image.cast::<PyList>() {
            Ok(list) => {
                let out: Vec<_> = list.iter().map(|item| f(rgb_image(&item)?)).collect::<PyResult<_>>()?;
                Ok(PyList::new(image.py(), out)?.into_any())
            }
            Err(_) => f(rgb_image(image)?),
        }
    }

    /// Class scores `1 x C x H x W` under `protocol`.
    fn scores(&self, py: Python<'_>, rgb: Rgb, protocol: &Protocol) -> PyResult<Tensor> {
        let protocol = protocol.clone();
        self.compute(py, move |s| s.scores(&rgb.data, rgb.height, rgb.width, &protocol).map_err(pspnet::Error::from))?
            .map_err(input_error)
    }
}

/// An `1 x C x H x W` tensor as a `C x H x W` float32 array.
fn score_array(py: Python<'_>, scores: Tensor) -> PyResult<Bound<'_, PyAny>> {
    let [_, c, h, w] = scores.shape().dims();
    let array = Array3::from_shape_vec((c, h, w), scores.into_vec()).map_err(|e| value_error(e.to_string()))?;
    Ok(array.into_pyarray(py).into_any())
}

#[pymethods]
impl Model {
    /// Class ids (H x W; uint8 for up to 256 classes, else uint16) of an
    /// H x W x 3 uint8 RGB array, or a list of them for a list.
    ///
    /// The keywords are `pspnet segment`'s protocol flags; `None` leaves the
    /// preset's choice, or, without a preset, one whole-image pass at the
    /// image's size, unflipped.
    #[pyo3(signature = (image, *, mode=None, crop=None, stride=None, base_size=None, flip=None, scales=None, average=None, preset=None))]
    #[allow(clippy::too_many_arguments)]
    fn segment<'py>(
        &self,
        image: &Bound<'py, PyAny>,
        mode: Option<String>,
        crop: Option<usize>,
        stride: Option<usize>,
        base_size: Option<usize>,
        flip: Option<bool>,
        scales: Option<Vec<f64>>,
        average: Option<String>,
        preset: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let args = ProtocolArgs { mode, crop, stride, base_size, flip, scales, average, preset };
        let protocol = args.protocol(None)?;
        let classes = self.spec.classes;
        self.each_image(image, |rgb| {
            let protocol = protocol.clone();
            let labels = self
                .compute(image.py(), move |s| {
                    s.labels(&rgb.data, rgb.height, rgb.width, &protocol).map_err(pspnet::Error::from)
                })?
                .map_err(input_error)?;
            Ok(labels_array(image.py(), labels.view(), classes))
        })
    }

    /// The float32 class scores (C x H x W) at the image's size, as
    /// `pspnet segment --logits` writes them: the logits of a whole-image
    /// pass, else what the protocol averages.
    #[pyo3(signature = (image, *, mode=None, crop=None, stride=None, base_size=None, flip=None, scales=None, average=None, preset=None))]
    #[allow(clippy::too_many_arguments)]
    fn logits<'py>(
        &self,
        image: &Bound<'py, PyAny>,
        mode: Option<String>,
        crop: Option<usize>,
        stride: Option<usize>,
        base_size: Option<usize>,
        flip: Option<bool>,
        scales: Option<Vec<f64>>,
        average: Option<String>,
        preset: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let args = ProtocolArgs { mode, crop, stride, base_size, flip, scales, average, preset };
        let protocol = args.protocol(None)?;
        self.each_image(image, |rgb| score_array(image.py(), self.scores(image.py(), rgb, &protocol)?))
    }

    /// The class probabilities (C x H x W, float32): the softmax of
    /// `logits`, or what the protocol averages when it averages
    /// probabilities.
    #[pyo3(signature = (image, *, mode=None, crop=None, stride=None, base_size=None, flip=None, scales=None, average=None, preset=None))]
    #[allow(clippy::too_many_arguments)]
    fn probabilities<'py>(
        &self,
        image: &Bound<'py, PyAny>,
        mode: Option<String>,
        crop: Option<usize>,
        stride: Option<usize>,
        base_size: Option<usize>,
        flip: Option<bool>,
        scales: Option<Vec<f64>>,
        average: Option<String>,
        preset: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let args = ProtocolArgs { mode, crop, stride, base_size, flip, scales, average, preset };
        let protocol = args.protocol(None)?;
        let averaged = protocol.gives_probabilities();
        self.each_image(image, |rgb| {
            let scores = self.scores(image.py(), rgb, &protocol)?;
            score_array(image.py(), if averaged { scores } else { softmax_channels(&scores) })
        })
    }

    /// The class names (numbered when the checkpoint names none).
    #[getter]
    fn classes(&self) -> Vec<String> {
        self.names.clone()
    }

    /// The class colours, classes x 3 uint8: `model.palette[labels]` is the
    /// colour image.
    #[getter]
    fn palette<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let flat = self.palette.iter().flatten().copied().collect();
        let array =
            ndarray::Array2::from_shape_vec((self.palette.len(), 3), flat).map_err(|e| value_error(e.to_string()))?;
        Ok(array.into_pyarray(py).into_any())
    }

    /// Each pixel of a label map (H x W, any integer dtype) in its class's
    /// colour: H x W x 3 uint8.
    fn colorize<'py>(&self, labels: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let map = label_map(labels, self.spec.classes)?;
        let (h, w) = map.dim();
        rgb_array(labels.py(), color_image(map.view(), &self.palette).into_raw(), h, w)
    }

    /// The class colours blended over the photo, per channel
    /// `floor((1 - opacity) * photo + opacity * colour + 0.5)`, as
    /// `pspnet segment`'s overlay PNG (opacity 0.5).
    #[pyo3(signature = (image, labels, opacity=0.5))]
    fn overlay<'py>(
        &self,
        image: &Bound<'py, PyAny>,
        labels: &Bound<'py, PyAny>,
        opacity: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        if !(0.0..=1.0).contains(&opacity) {
            return Err(value_error(format!("opacity {opacity}: expected a number from 0 to 1")));
        }
        let rgb = rgb_image(image)?;
        let labels = label_map(labels, self.spec.classes)?;
        if labels.dim() != (rgb.height, rgb.width) {
            return Err(value_error(format!(
                "labels are {}x{}, the image {}x{} (H x W)",
                labels.dim().0,
                labels.dim().1,
                rgb.height,
                rgb.width
            )));
        }
        let photo = image::RgbImage::from_raw(rgb.width as u32, rgb.height as u32, rgb.data)
            .ok_or_else(|| value_error("image: size overflow"))?;
        rgb_array(
            image.py(),
            overlay_labels(&photo, labels.view(), &self.palette, opacity).into_raw(),
            rgb.height,
            rgb.width,
        )
    }

    /// `segment`'s path without the network: the image copied in, the GIL
    /// released, an all-zero label map handed back. It measures the call's
    /// own overhead (xtask/python/bench_python.py).
    fn roundtrip<'py>(&self, image: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let classes = self.spec.classes;
        self.each_image(image, |rgb| {
            let labels = self.compute(image.py(), move |_| ndarray::Array2::<u32>::zeros((rgb.height, rgb.width)))?;
            Ok(labels_array(image.py(), labels.view(), classes))
        })
    }

    /// Floating-point operations of one forward pass at `height x width`
    /// (convolutions, 2 per multiply-add), as `pspnet info` counts them.
    fn flops(&self, py: Python<'_>, height: usize, width: usize) -> PyResult<u64> {
        let shape = Shape::new(1, 3, height, width).map_err(|e| value_error(e.to_string()))?;
        self.compute(py, move |s| s.net.flops(shape).map_err(pspnet::Error::from))?.map_err(input_error)
    }

    fn __repr__(&self) -> String {
        let spec = &self.spec;
        format!("<pspnet.Model: {} classes, {:?}>", spec.classes, spec.layout)
    }
}
