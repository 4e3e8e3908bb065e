//! Training PSPNet as its authors did (semseg's `tool/train.py`): stochastic
//! gradient descent with momentum and weight decay, exactly as PyTorch's
//! `torch.optim.SGD` computes it, over parameter groups with their own
//! learning-rate multipliers (the backbone at the base rate, the new
//! layers at ten times it), the poly schedule with an optional linear
//! warm-up, semseg's augmentation, batches prepared on worker threads, and
//! checkpoints a run resumes from exactly.
//!
//! Every random draw (sample order, augmentation, dropout, initial weights)
//! comes from the seed and what it is for ([`Draws`]), never from thread
//! timing.

mod augment;
mod config;
mod draws;
mod error;
mod heap;
mod imagenet;
mod init;
mod loader;
mod sampler;
mod schedule;
mod scratch;
mod sgd;
mod trainer;

pub use augment::{Augmentation, Example, Padding};
pub use config::config_flags;
pub use draws::{Draws, Purpose, label};
pub use error::TrainError;
pub use heap::keep_freed_memory;
pub use imagenet::{is_imagenet_resnet, with_imagenet_backbone};
pub use init::initialise;
pub use loader::{Batch, Loader, Prefetched, prefetch};
pub use sampler::Sampler;
pub use schedule::PolySchedule;
pub use scratch::{Scratch, scratch};
pub use sgd::Sgd;
pub use trainer::{Record, STATE_KEY, TrainOptions, Trainer, reclassify, run};
