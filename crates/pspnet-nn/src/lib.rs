//! What every part of a pspnet-rs network shares, below the backbone and
//! the pyramid pooling module: the [`Layer`] protocol (shapes, FLOPs,
//! parameters, a visitor over convolutions) and the [`ParamSource`] its
//! builders read their weights from.
//!
//! A network is described once, by its builders: each asks the source for
//! its parameters by path and shape (the way candle-nn's `VarBuilder`
//! works), and the source records every key that is missing or misshaped
//! instead of stopping at the first. Whatever no builder took is
//! unexpected. [`ParamStore::finish`] reports all three together, so a
//! checkpoint's every bad key is named in one error.

mod builders;
mod error;
mod layer;
mod source;
pub mod train;

pub use builders::{batch_norm, classifier, conv_bn, conv_bn_width};
pub use error::NnError;
pub use layer::{Layer, Observer};
pub use source::{Misshaped, ParamSource, ParamStore, Problems};
