//! Training PSPNet as its authors did (semseg's `tool/train.py`): stochastic
//! gradient descent with momentum and weight decay, exactly as PyTorch's
//! `torch.optim.SGD` computes it, over parameter groups with their own
//! learning-rate multipliers (the backbone at the base rate, the new
//! layers at ten times it), and the poly schedule with an optional linear
//! warm-up.

mod schedule;
mod sgd;

pub use schedule::PolySchedule;
pub use sgd::Sgd;
