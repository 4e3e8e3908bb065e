//! The `pspnet` Python module: the engine from NumPy, without PyTorch.
//!
//! `pspnet.load` gives a [`Model`] that segments `H x W x 3` uint8 RGB
//! arrays under the command line's protocols; `pspnet.evaluate` scores it on
//! a dataset as `pspnet evaluate --json` does. Every computation runs with
//! the GIL released, on the model's own thread pool.

mod arrays;
mod driver;
mod errors;
mod evaluate;
mod model;
mod protocol;

use pyo3::prelude::*;

pub use errors::CheckpointError;
pub use model::Model;

/// The Python module.
#[pymodule]
#[pyo3(name = "pspnet")]
fn pspnet_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("CheckpointError", m.py().get_type::<CheckpointError>())?;
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(model::load, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate::evaluate, m)?)?;
    Ok(())
}

/// The engine's tensors come from mimalloc: glibc's malloc gives the driver
/// thread an arena of 64 MB heaps, which map and unmap the tensors of every
/// pass afresh, where the binary's main thread keeps them in the main heap.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
