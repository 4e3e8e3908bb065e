//! The pyramid pooling module (PPM) of PSPNet (Zhao et al., CVPR 2017, §3.2).
//!
//! A local feature only sees its receptive field. The PPM gives every pixel
//! the global context: it pools the feature map into a pyramid of grids
//! (by default 1x1, 2x2, 3x3 and 6x6 bins), reduces each pooled map to
//! `1/N` of the channels with a 1x1 convolution + batch-norm + ReLU, upsamples
//! each back to the map's size and concatenates them with the map.
//!
//! [`PyramidPooling`] takes any NCHW feature map: it knows nothing of the
//! backbone that made it (see `examples/small_backbone.rs`).

mod error;
mod pyramid;
mod train;

pub use error::PpmError;
pub use pyramid::{Pooling, PyramidPooling, PyramidPoolingConfig};
pub use train::TrainPyramidPooling;
