//! Training batches: each sample decoded, its labels mapped to classes and
//! checked, augmented from its own random stream, and normalised; the
//! samples of a batch decoded in parallel, and the next batch prepared on a
//! worker thread while the current one trains.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::time::Duration;

use pspnet_data::{IGNORE, LabelRule, Sample, read_label_png, read_rgb};
use pspnet_model::Normalization;
use pspnet_tensor::{Shape, Tensor};
use rayon::prelude::*;

use crate::TrainError;
use crate::augment::{Augmentation, Example, Padding};
use crate::draws::{Draws, Purpose};
use crate::sampler::Sampler;

/// One normalised batch: `N x 3 x H x W` images and their `N x H x W` labels.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The images.
    pub images: Tensor,
    /// The labels, image by image, row by row (ignored pixels are 255).
    pub labels: Vec<u16>,
}

/// Everything that turns sample files into batches.
#[derive(Debug, Clone)]
pub struct Loader {
    /// The samples, in file-name order.
    pub samples: Vec<Sample>,
    /// Their label convention.
    pub rule: LabelRule,
    /// How many classes the network has.
    pub classes: usize,
    /// The transforms.
    pub augmentation: Augmentation,
    /// The crop size `[h, w]`, if any.
    pub crop: Option<[usize; 2]>,
    /// The network's input normalisation.
    pub normalization: Normalization,
    /// The run's seed.
    pub seed: u64,
    /// The largest image accepted.
    pub max_pixels: u64,
}

impl Loader {
    /// Reads one sample: its image, and its labels mapped to classes (or
    /// 255), checked against the class count and the image's size.
    pub fn example(&self, sample: &Sample) -> Result<Example, TrainError> {
        let image = read_rgb(&sample.image, self.max_pixels)?;
        let (h, w) = (image.height() as usize, image.width() as usize);
        let labels = self.labels(sample, [h, w])?;
        let plane = h * w;
        let mut rgb = vec![0.0f32; 3 * plane];
        for (p, pixel) in image.pixels().enumerate() {
            (0..3).for_each(|c| rgb[c * plane + p] = f32::from(pixel.0[c]));
        }
        Ok(Example { rgb, labels, height: h, width: w })
    }

    /// A sample's labels mapped to classes (or 255), checked against the
    /// class count and its image's size `[h, w]`.
    pub fn labels(&self, sample: &Sample, size: [usize; 2]) -> Result<Vec<u16>, TrainError> {
        let raw = read_label_png(&sample.label, self.max_pixels)?;
        if [raw.height as usize, raw.width as usize] != size {
            return Err(TrainError::SizeMismatch {
                what: "the image",
                first: sample.image.clone(),
                second: sample.label.clone(),
                sizes: [size, [raw.height as usize, raw.width as usize]],
            });
        }
        Ok(self.rule.classes(&raw.values, &sample.label, self.classes)?)
    }

    /// Batch `iteration` of the samples at `indices`: each decoded and
    /// augmented (its draws from `(seed, iteration, slot)`), normalised.
    pub fn batch(&self, iteration: u64, indices: &[usize]) -> Result<Batch, TrainError> {
        let pad = Padding { mean: self.normalization.mean, ignore: IGNORE };
        let examples: Vec<Example> = indices
            .par_iter()
            .enumerate()
            .map(|(slot, &i)| {
                let mut draws = Draws::new(self.seed, Purpose::Augment, &[iteration, slot as u64]);
                let x = self.example(&self.samples[i])?;
                Ok(self.augmentation.apply(x, self.crop, pad, &mut draws))
            })
            .collect::<Result<_, TrainError>>()?;
        let (h, w) = (examples[0].height, examples[0].width);
        if let Some((slot, x)) = examples.iter().enumerate().find(|(_, x)| (x.height, x.width) != (h, w)) {
            return Err(TrainError::SizeMismatch {
                what: "an image of the batch (without --crop, a batch's images must share a size)",
                first: self.samples[indices[0]].image.clone(),
                second: self.samples[indices[slot]].image.clone(),
                sizes: [[h, w], [x.height, x.width]],
            });
        }
        let plane = h * w;
        let mut images = Vec::with_capacity(examples.len() * 3 * plane);
        let mut labels = Vec::with_capacity(examples.len() * plane);
        for x in examples {
            for (c, channel) in x.rgb.chunks_exact(plane).enumerate() {
                let (mean, std) = (self.normalization.mean[c], self.normalization.std[c]);
                images.extend(channel.iter().map(|v| (v - mean) / std));
            }
            labels.extend(x.labels);
        }
        let shape = Shape::new(indices.len(), 3, h, w).map_err(|e| TrainError::Config(e.to_string()))?;
        let images = Tensor::from_vec(shape, images).map_err(|e| TrainError::Config(e.to_string()))?;
        Ok(Batch { images, labels })
    }
}

/// Batches `first..last` of `size` in order, each prepared on a worker
/// thread one ahead of its use.
pub fn prefetch(loader: Arc<Loader>, sampler: Sampler, size: usize, first: u64, last: u64) -> Prefetched {
    let (send, receive) = sync_channel(1);
    std::thread::spawn(move || {
        for k in first..last {
            let batch = loader.batch(k, &sampler.batch(k, size));
            let failed = batch.is_err();
            if send.send((k, batch)).is_err() || failed {
                return;
            }
        }
    });
    Prefetched(receive)
}

/// The batches [`prefetch`] prepares, each with its number.
pub struct Prefetched(Receiver<(u64, Result<Batch, TrainError>)>);

impl Iterator for Prefetched {
    type Item = (u64, Result<Batch, TrainError>);

    /// Waits for the next batch, meanwhile running the thread pool's queued
    /// jobs: the loader decodes on the pool, and the waiting thread may be
    /// the pool's only worker (the `pspnet` binary's main thread is one).
    fn next(&mut self) -> Option<Self::Item> {
        let mut pause = Duration::ZERO;
        loop {
            match self.0.recv_timeout(pause) {
                Ok(item) => return Some(item),
                Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) => {}
            }
            pause = match rayon::yield_now() {
                None => return self.0.recv().ok(),
                Some(rayon::Yield::Executed) => Duration::ZERO,
                Some(rayon::Yield::Idle) => Duration::from_millis(1),
            };
        }
    }
}
