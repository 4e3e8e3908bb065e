//! The training loop of semseg's `tool/train.py`: per iteration, a batch
//! (split into `accumulate` micro-batches whose gradients add up), the
//! forward and backward pass, and one SGD step with the poly rate, the
//! backbone at the base rate and every other parameter at `head_lr_mult`
//! times it. Checkpoints are written atomically; `last.safetensors` also
//! holds the momentum buffers and the iteration, so a resumed run continues
//! exactly as the uninterrupted one would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use pspnet_data::read_rgb;
use pspnet_kernels::{ConvOptions, splitmix64};
use pspnet_model::{
    ConfusionMatrix, ModelError, ModelSpec, OPTIMIZER_PREFIX, Overrides, PassOptions, Protocol, PspNet, PspNetConfig,
    Scores, Segmenter, StorageDtype, TrainPspNet, read_checkpoint, save_native_with,
};
use pspnet_nn::ParamStore;
use pspnet_nn::train::{BnMode, State, Trainable};
use pspnet_tensor::{Params, Shape, Tensor};

use crate::loader::{Batch, Loader, prefetch};
use crate::sampler::Sampler;
use crate::{PolySchedule, Sgd, TrainError};

/// Metadata key of a training checkpoint's state (JSON: the iteration done).
pub const STATE_KEY: &str = "pspnet.train";

/// The recipe and the run's bookkeeping, as values.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    /// Where checkpoints go.
    pub out: PathBuf,
    /// Images per iteration.
    pub batch: usize,
    /// Iterations in all.
    pub iters: u64,
    /// The backbone's base learning rate.
    pub lr: f64,
    /// Every other parameter's rate, as a multiple of the base.
    pub head_lr_mult: f64,
    /// SGD momentum.
    pub momentum: f32,
    /// L2 weight decay on every parameter.
    pub weight_decay: f32,
    /// The poly schedule's power.
    pub power: f64,
    /// Linear warm-up iterations.
    pub warmup: usize,
    /// Micro-batches per iteration.
    pub accumulate: usize,
    /// The auxiliary loss's weight.
    pub aux_weight: f32,
    /// Dropout2d before both classifiers.
    pub dropout: f32,
    /// How batch-norms normalise.
    pub bn: BnMode,
    /// A new sample order per epoch (else file-name order).
    pub shuffle: bool,
    /// The seed of every draw.
    pub seed: u64,
    /// Write `iter-N.safetensors` every this many iterations (and at the end).
    pub save_every: u64,
    /// Keep only the newest this many `iter-N.safetensors`.
    pub keep: Option<usize>,
}

impl TrainOptions {
    /// The reference recipe (semseg's `train.py`, `pspnet train`'s defaults):
    /// batch 8, lr 0.01 with the rest at 10x, momentum 0.9, weight decay
    /// 1e-4, poly 0.9, aux 0.4, Dropout2d 0.1, batch statistics, shuffled,
    /// seed 0, a checkpoint every 1000 iterations.
    pub fn recipe(out: PathBuf, iters: u64) -> Self {
        TrainOptions {
            out,
            batch: 8,
            iters,
            lr: 0.01,
            head_lr_mult: 10.0,
            momentum: 0.9,
            weight_decay: 1e-4,
            power: 0.9,
            warmup: 0,
            accumulate: 1,
            aux_weight: 0.4,
            dropout: 0.1,
            bn: BnMode::Train,
            shuffle: true,
            seed: 0,
            save_every: 1000,
            keep: None,
        }
    }
}

/// What one iteration did, as `log.jsonl` records it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Record {
    /// The iteration completed (1-based).
    pub iter: u64,
    /// The backbone's rate used by its step.
    pub lr: f64,
    /// `main + aux_weight * aux`.
    pub loss: f32,
    /// The main head's mean cross-entropy.
    pub main: f32,
    /// The auxiliary head's (0 without it).
    pub aux: f32,
    /// Wall time of the iteration alone (waiting for data, forward,
    /// backward, update).
    pub seconds: f64,
}

impl Record {
    /// The record as one line of JSON.
    pub fn json(&self) -> String {
        serde_json::json!({
            "iter": self.iter, "lr": self.lr, "loss": self.loss, "main": self.main, "aux": self.aux,
            "seconds": self.seconds,
        })
        .to_string()
    }
}

/// A network in training with its optimiser.
pub struct Trainer {
    net: TrainPspNet,
    spec: ModelSpec,
    options: TrainOptions,
    sgd: Sgd,
    /// The learned parameters' names, in the optimiser's order.
    names: Vec<String>,
    /// Iterations done.
    done: u64,
    /// The newest checkpoint written.
    last_saved: Option<PathBuf>,
}

impl Trainer {
    /// A trainer over `params` (canonical names) of the network `spec`
    /// describes, `done` iterations in, with saved momentum `buffers` (by
    /// parameter name) when resuming.
    pub fn new(
        params: Params,
        spec: ModelSpec,
        options: TrainOptions,
        conv: ConvOptions,
        done: u64,
        buffers: &BTreeMap<String, Vec<f32>>,
    ) -> Result<Self, TrainError> {
        check(&options)?;
        let config = PspNetConfig { backbone: spec.backbone.clone(), ppm: spec.ppm.clone() };
        let mut store = ParamStore::new(params, conv);
        let mut net = TrainPspNet::build(&config, &mut store.root())?;
        let problems = store.finish();
        if !problems.is_empty() {
            return Err(TrainError::Config(format!("the starting parameters do not fit the network: {problems:?}")));
        }
        let mut names = Vec::new();
        net.visit_state("", &mut |name, state| {
            if let State::Learned(_) = state {
                names.push(name.to_string());
            }
        });
        let mut sgd = Sgd::new(names.len(), options.momentum, options.weight_decay);
        sgd.set_buffers(names.iter().map(|n| buffers.get(n).cloned()).collect());
        Ok(Trainer { net, spec, options, sgd, names, done, last_saved: None })
    }

    /// Continues the run saved in `path` (a `last.safetensors`): its
    /// parameters, momentum buffers and iteration.
    pub fn resume(path: &Path, options: TrainOptions, conv: ConvOptions) -> Result<Self, TrainError> {
        let (params, spec) = read_checkpoint(path, &Overrides::default())?;
        let (state, metadata) = pspnet_weights::load_safetensors(path).map_err(ModelError::from)?;
        let done = metadata
            .get(STATE_KEY)
            .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
            .and_then(|v| v["iteration"].as_u64())
            .ok_or_else(|| {
                TrainError::Config(format!(
                    "{}: no training state ({STATE_KEY}): not a last.safetensors",
                    path.display()
                ))
            })?;
        let mut buffers = BTreeMap::new();
        for key in state.keys().filter(|k| k.starts_with(OPTIMIZER_PREFIX)) {
            let (_, values) = state.f32(key).map_err(ModelError::from)?;
            buffers.insert(key[OPTIMIZER_PREFIX.len()..].to_string(), values);
        }
        Trainer::new(params, spec, options, conv, done, &buffers)
    }

    /// Iterations done.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// The network in training (for initialising fresh layers).
    pub fn net(&mut self) -> &mut TrainPspNet {
        &mut self.net
    }

    /// The model's spec.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The backbone's rate for iteration `i` (0-based).
    fn rate(&self, i: u64) -> f64 {
        let o = &self.options;
        PolySchedule { base: o.lr, iters: o.iters as usize, power: o.power, warmup: o.warmup }.rate(i as usize)
    }

    /// One iteration on `batch`: forward and backward over its
    /// micro-batches, then one SGD step.
    pub fn step(&mut self, batch: &Batch) -> Result<(f32, f32, f32), TrainError> {
        let o = &self.options;
        let shape = batch.images.shape();
        let micro = shape.n() / o.accumulate;
        let plane = shape.h() * shape.w();
        let (mut main, mut aux) = (0.0f32, 0.0f32);
        for m in 0..o.accumulate {
            let images = batch.images.as_slice()[m * micro * 3 * plane..(m + 1) * micro * 3 * plane].to_vec();
            let images = Tensor::from_vec(Shape::new(micro, 3, shape.h(), shape.w()).map_err(config)?, images)
                .map_err(config)?;
            let labels = &batch.labels[m * micro * plane..(m + 1) * micro * plane];
            let pass = PassOptions {
                bn: o.bn,
                dropout: o.dropout,
                seed: splitmix64(o.seed ^ splitmix64(self.done.wrapping_mul(1 << 16) + m as u64)),
                aux_weight: o.aux_weight,
                ignore: pspnet_data::IGNORE,
                grad_scale: 1.0 / o.accumulate as f32,
            };
            let losses = self.net.pass(images, labels, [shape.h(), shape.w()], &pass)?;
            main += losses.main / o.accumulate as f32;
            aux += losses.aux / o.accumulate as f32;
        }
        let total = main + o.aux_weight * aux;
        if !total.is_finite() {
            return Err(TrainError::NonFinite {
                iteration: self.done + 1,
                loss: total,
                checkpoint: self.last_saved.clone(),
            });
        }
        let base = self.rate(self.done);
        let head = base * o.head_lr_mult;
        let (sgd, mut index) = (&mut self.sgd, 0);
        self.net.visit_state("", &mut |name, state| {
            if let State::Learned(p) = state {
                let lr = if name.starts_with("backbone.") { base } else { head };
                let grad = p.take_grad();
                sgd.step(index, &mut p.value, &grad, lr as f32);
                index += 1;
            }
        });
        self.done += 1;
        Ok((total, main, aux))
    }

    /// The current model's scores on `loader`'s samples, each segmented
    /// whole at its own size (the network rebuilt for inference, batch-norms
    /// folded with their running statistics).
    pub fn validate(&mut self, loader: &Loader, conv: ConvOptions) -> Result<Scores, TrainError> {
        let config = PspNetConfig { backbone: self.spec.backbone.clone(), ppm: self.spec.ppm.clone() };
        let mut store = ParamStore::new(self.net.params()?, conv);
        let net = PspNet::build(config, &mut store.root())?;
        let segmenter = Segmenter { net, spec: self.spec.clone() };
        let mut matrix = ConfusionMatrix::new(self.spec.classes);
        for sample in &loader.samples {
            let image = read_rgb(&sample.image, loader.max_pixels)?;
            let (h, w) = (image.height() as usize, image.width() as usize);
            let labels = loader.labels(sample, [h, w])?;
            let predicted = segmenter.labels(image.as_raw(), h, w, &Protocol::whole())?;
            matrix.add(&labels, &predicted.into_raw_vec_and_offset().0, pspnet_data::IGNORE);
        }
        Ok(matrix.scores())
    }

    /// Writes the model (and, with `optimizer`, the momentum buffers and the
    /// iteration) to `path`, atomically.
    pub fn save(&mut self, path: &Path, optimizer: bool) -> Result<(), TrainError> {
        let params = self.net.params()?;
        let mut extra = Params::new();
        let mut metadata = BTreeMap::new();
        if optimizer {
            for (name, buffer) in self.names.iter().zip(self.sgd.buffers()) {
                if let Some(b) = buffer {
                    extra.insert(format!("{OPTIMIZER_PREFIX}{name}"), vec![b.len()], b.clone()).map_err(config)?;
                }
            }
            metadata.insert(STATE_KEY.to_string(), serde_json::json!({ "iteration": self.done }).to_string());
        }
        save_native_with(path, &params, &self.spec, StorageDtype::F32, &extra, &metadata)?;
        self.last_saved = Some(path.to_path_buf());
        Ok(())
    }
}

/// Gives the two classifiers (`decode.classifier`, `aux.classifier`) of
/// `params` zero weights for `classes` classes, keeping their input widths,
/// when they have another count; returns whether they changed (and need
/// [`crate::initialise`]).
pub fn reclassify(params: &mut Params, classes: usize) -> Result<bool, TrainError> {
    let mut changed = false;
    for head in ["decode.classifier", "aux.classifier"] {
        let weight = format!("{head}.weight");
        let Ok(shape) = params.get(&weight).map(|p| p.shape().to_vec()) else { continue };
        if shape.first() == Some(&classes) {
            continue;
        }
        params.remove(&weight);
        params.remove(&format!("{head}.bias"));
        let ins = shape.get(1).copied().unwrap_or(0);
        params.insert(weight, vec![classes, ins, 1, 1], vec![0.0; classes * ins]).map_err(config)?;
        params.insert(format!("{head}.bias"), vec![classes], vec![0.0; classes]).map_err(config)?;
        changed = true;
    }
    Ok(changed)
}

fn config(e: impl std::fmt::Display) -> TrainError {
    TrainError::Config(e.to_string())
}

/// Refuses settings that cannot work, naming the flag.
fn check(o: &TrainOptions) -> Result<(), TrainError> {
    let bad = |what: String| Err(TrainError::Config(what));
    if o.batch == 0 || o.iters == 0 || o.save_every == 0 {
        return bad("--batch, --iters and --save-every must be positive".into());
    }
    if o.accumulate == 0 || !o.batch.is_multiple_of(o.accumulate) {
        return bad(format!("--accumulate {} must divide --batch {}", o.accumulate, o.batch));
    }
    if o.bn == BnMode::Train && o.batch / o.accumulate < 2 {
        return bad(format!(
            "batch-norm in training mode needs at least 2 images per micro-batch (--batch {} / --accumulate {}); \
             use --bn frozen or a larger batch",
            o.batch, o.accumulate
        ));
    }
    if !(0.0..1.0).contains(&o.dropout) {
        return bad(format!("--dropout {} must be in [0, 1)", o.dropout));
    }
    if !(o.lr.is_finite() && o.lr > 0.0 && o.head_lr_mult.is_finite() && o.head_lr_mult > 0.0) {
        return bad(format!("--lr {} and --head-lr-mult {} must be positive", o.lr, o.head_lr_mult));
    }
    Ok(())
}

/// Runs iterations `trainer.done() .. options.iters`, calling `record` after
/// each, then `after` (outside the iteration's time: validation); writes
/// `iter-N.safetensors` every `save_every` iterations and at the end, and
/// `last.safetensors` with the optimiser state at the same times and when
/// `stop` is raised (then returns early). A failure leaves every file
/// already written intact.
pub fn run(
    trainer: &mut Trainer,
    loader: Arc<Loader>,
    mut record: impl FnMut(&Record) -> Result<(), TrainError>,
    mut after: impl FnMut(&mut Trainer) -> Result<(), TrainError>,
    stop: &AtomicBool,
) -> Result<(), TrainError> {
    let o = trainer.options.clone();
    let sampler = Sampler { samples: loader.samples.len(), shuffle: o.shuffle, seed: o.seed };
    let batches = prefetch(loader, sampler, o.batch, trainer.done, o.iters);
    let last = o.out.join("last.safetensors");
    let mut started = Instant::now();
    for (k, batch) in batches {
        let batch = batch?;
        let lr = trainer.rate(k);
        let (loss, main, aux) = trainer.step(&batch)?;
        let seconds = started.elapsed().as_secs_f64();
        record(&Record { iter: k + 1, lr, loss, main, aux, seconds })?;
        let done = trainer.done;
        if done.is_multiple_of(o.save_every) || done == o.iters {
            trainer.save(&o.out.join(format!("iter-{done}.safetensors")), false)?;
            trainer.save(&last, true)?;
            prune(&o.out, o.keep)?;
        }
        after(trainer)?;
        if stop.load(Ordering::Relaxed) && done < o.iters {
            trainer.save(&last, true)?;
            return Ok(());
        }
        started = Instant::now();
    }
    Ok(())
}

/// Deletes all but the newest `keep` `iter-N.safetensors` in `out`.
fn prune(out: &Path, keep: Option<usize>) -> Result<(), TrainError> {
    let Some(keep) = keep else { return Ok(()) };
    let io = |source| TrainError::Io { path: out.to_path_buf(), source };
    let mut saved: Vec<(u64, PathBuf)> = std::fs::read_dir(out)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let n = p.file_name()?.to_str()?.strip_prefix("iter-")?.strip_suffix(".safetensors")?.parse().ok()?;
            Some((n, p))
        })
        .collect();
    saved.sort();
    for (_, path) in saved.iter().rev().skip(keep) {
        std::fs::remove_file(path).map_err(|source| TrainError::Io { path: path.clone(), source })?;
    }
    Ok(())
}
