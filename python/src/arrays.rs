//! NumPy arrays in and out: RGB images of any strides (read-only ones
//! included) copied into the engine's row-major layout, label maps and
//! scores handed back as new arrays.

use ndarray::{Array2, Array3, ArrayView2};
use numpy::{
    IntoPyArray, PyArray3, PyArrayDescrMethods, PyArrayMethods, PyReadonlyArray2, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use crate::errors::value_error;

/// A shape as Python writes it: `(360, 480, 2)`, `(5,)`.
fn tuple(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!("({})", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    }
}

/// An RGB image as the engine takes it: `height * width * 3` bytes, row by row.
pub(crate) struct Rgb {
    pub(crate) data: Vec<u8>,
    pub(crate) height: usize,
    pub(crate) width: usize,
}

/// Copies an `H x W x 3` uint8 array; anything else is a `ValueError`
/// saying what was expected.
pub(crate) fn rgb_image(image: &Bound<'_, PyAny>) -> PyResult<Rgb> {
    let array = image.cast::<PyUntypedArray>().map_err(|_| {
        let kind = image.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into());
        value_error(format!("expected a numpy array of shape (H, W, 3) and dtype uint8, got {kind}"))
    })?;
    let dtype = array.dtype();
    if !dtype.is_equiv_to(&numpy::dtype::<u8>(image.py())) {
        return Err(value_error(format!("expected an RGB image of dtype uint8, got dtype {dtype}")));
    }
    let shape = array.shape();
    if shape.len() != 3 || shape[2] != 3 {
        return Err(value_error(format!("expected an RGB image of shape (H, W, 3), got shape {}", tuple(shape))));
    }
    if shape[0] == 0 || shape[1] == 0 {
        return Err(value_error(format!("expected a non-empty image, got shape {}", tuple(shape))));
    }
    let array = array.cast::<PyArray3<u8>>()?.readonly();
    let view = array.as_array();
    let data = match view.as_slice() {
        Some(contiguous) => contiguous.to_vec(),
        None => view.iter().copied().collect(),
    };
    Ok(Rgb { data, height: shape[0], width: shape[1] })
}

/// A label map given back by the user: `H x W` of any unsigned or signed
/// integer dtype up to 64 bits, every value a class below `classes`.
pub(crate) fn label_map(labels: &Bound<'_, PyAny>, classes: usize) -> PyResult<Array2<u32>> {
    fn convert<T: numpy::Element + Copy + std::fmt::Display + TryInto<u32>>(
        labels: &Bound<'_, PyAny>,
        classes: usize,
    ) -> Option<PyResult<Array2<u32>>> {
        let array = labels.extract::<PyReadonlyArray2<'_, T>>().ok()?;
        let view = array.as_array();
        let class = |v: T| v.try_into().ok().filter(|&c| (c as usize) < classes);
        if let Some(v) = view.iter().find(|&&v| class(v).is_none()) {
            return Some(Err(value_error(format!("labels: value {v} is not a class (0..{classes})"))));
        }
        Some(Ok(view.mapv(|v| class(v).unwrap_or(0))))
    }
    convert::<u8>(labels, classes)
        .or_else(|| convert::<u16>(labels, classes))
        .or_else(|| convert::<u32>(labels, classes))
        .or_else(|| convert::<u64>(labels, classes))
        .or_else(|| convert::<i32>(labels, classes))
        .or_else(|| convert::<i64>(labels, classes))
        .unwrap_or_else(|| {
            let what = labels
                .cast::<PyUntypedArray>()
                .map(|a| format!("shape {}, dtype {}", tuple(a.shape()), a.dtype()))
                .unwrap_or_else(|_| "no numpy array".into());
            Err(value_error(format!("expected labels of shape (H, W) and an integer dtype, got {what}")))
        })
}

/// Class ids as the label PNGs store them: uint8 for up to 256 classes,
/// else uint16.
pub(crate) fn labels_array<'py>(py: Python<'py>, labels: ArrayView2<'_, u32>, classes: usize) -> Bound<'py, PyAny> {
    if classes <= 256 {
        labels.mapv(|v| v as u8).into_pyarray(py).into_any()
    } else {
        labels.mapv(|v| v as u16).into_pyarray(py).into_any()
    }
}

/// An `H x W x 3` uint8 array of interleaved RGB bytes.
pub(crate) fn rgb_array(py: Python<'_>, data: Vec<u8>, height: usize, width: usize) -> PyResult<Bound<'_, PyAny>> {
    let array = Array3::from_shape_vec((height, width, 3), data).map_err(|e| value_error(e.to_string()))?;
    Ok(array.into_pyarray(py).into_any())
}
