//! Layers that learn. Each forward pass keeps what its backward pass needs
//! (a convolution its input, a batch-norm its input and batch statistics,
//! a ReLU its output; a chain of units recomputes its inner outputs instead);
//! the backward pass turns the output's gradient into
//! the input's and adds the parameters' gradients to [`Param::grad`].
//!
//! The layers read their parameters by the same paths as the inference
//! builders ([`crate::conv_bn`]), so any checkpoint the engine loads is a
//! starting point, and [`Trainable::visit_state`] hands every parameter and
//! running statistic back under that path for saving.

mod batch_norm;
mod conv;
mod conv_bn;
mod param;

pub use batch_norm::{BnMode, TrainBatchNorm};
pub use conv::TrainConv;
pub use conv_bn::{TrainConvBn, chain_backward, chain_forward};
pub use param::{Param, State, StateVisitor, Trainable, join};
