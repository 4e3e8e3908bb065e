//! Rust errors as Python exceptions, with the command line's messages:
//! a missing file is `FileNotFoundError`, an unreadable or hostile
//! checkpoint `pspnet.CheckpointError`, bad input `ValueError`.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyFileNotFoundError, PyValueError};
use pyo3::prelude::*;

create_exception!(
    pspnet,
    CheckpointError,
    PyException,
    "A checkpoint that cannot be loaded: unreadable, of no known layout, or hostile."
);

/// Whether a missing file or folder is what went wrong.
fn is_not_found(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound) {
            return true;
        }
        cause = e.source();
    }
    false
}

/// An error of loading a checkpoint.
pub(crate) fn checkpoint_error(err: pspnet::Error) -> PyErr {
    if is_not_found(&err) {
        return PyFileNotFoundError::new_err(err.to_string());
    }
    CheckpointError::new_err(err.to_string())
}

/// An error of running the model or reading data: bad input.
pub(crate) fn input_error(err: pspnet::Error) -> PyErr {
    let message = err.to_string();
    input_error_saying(&err, message)
}

/// [`input_error`] with another message.
pub(crate) fn input_error_saying(err: &pspnet::Error, message: String) -> PyErr {
    if is_not_found(err) {
        return PyFileNotFoundError::new_err(message);
    }
    PyValueError::new_err(message)
}

/// A `ValueError` with this message.
pub(crate) fn value_error(message: impl Into<String>) -> PyErr {
    PyValueError::new_err(message.into())
}
