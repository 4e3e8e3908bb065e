//! `cargo xtask bench-loader`: is the data loader the bottleneck? One
//! invocation times PSPNet-R18's training iteration (the CamVid recipe:
//! batch 8, 360x360, 2 threads) three ways:
//! - fed pre-decoded batches: the same batches `--augment flip,crop` draws,
//!   prepared before the clock starts, stepped in this process;
//! - `pspnet train --augment flip,crop` (the bound: within 3%);
//! - `pspnet train --augment semseg` (within 10%).
//!
//! Each is the median of iterations 2..=ITERS (log.jsonl's `seconds` for the
//! runs: data wait, forward, backward and update).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use pspnet_data::{Dataset, LabelRule};
use pspnet_kernels::{ConvAlgorithm, ConvOptions};
use pspnet_model::{Layout, Normalization, Overrides, read_checkpoint};
use pspnet_ppm::Pooling;
use pspnet_train::{Loader, Sampler, Scratch, TrainOptions, Trainer, initialise, scratch};

use crate::bench_train::{camvid_and_binary, logged_seconds, median};

const ITERS: u64 = 8;
const BATCH: usize = 8;
const CROP: [usize; 2] = [360, 360];
const SEED: u64 = 0;

fn options(out: &Path) -> TrainOptions {
    TrainOptions { batch: BATCH, seed: SEED, ..TrainOptions::recipe(out.to_path_buf(), ITERS) }
}

/// `pspnet train` from `init` with `--augment augment`: the median seconds.
fn cli_run(pspnet: &Path, data: &Path, init: &Path, out: &Path, augment: &str) -> Result<f64> {
    let _ = std::fs::remove_dir_all(out);
    let crop = format!("{}x{}", CROP[0], CROP[1]);
    let run = Command::new(pspnet)
        .args(["train", "--dataset", "camvid", "--split", "train", "--augment", augment, "--crop", &crop])
        .arg("--data-root")
        .arg(data)
        .arg("--init")
        .arg(init)
        .args(["--batch", &BATCH.to_string(), "--iters", &ITERS.to_string(), "--seed", &SEED.to_string()])
        .arg("--out")
        .arg(out)
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .context("running pspnet train")?;
    if !run.status.success() {
        bail!("pspnet train --augment {augment} failed: {}", String::from_utf8_lossy(&run.stderr));
    }
    Ok(median(logged_seconds(out)?))
}

pub(crate) fn run(root: &Path) -> Result<()> {
    let (data, pspnet) = camvid_and_binary(root)?;
    rayon::ThreadPoolBuilder::new().num_threads(2).build_global()?;
    // As `pspnet train` does, so that both feedings pay the same for memory.
    pspnet_train::keep_freed_memory();
    let work = root.join("target/bench-loader");
    std::fs::create_dir_all(&work)?;
    let conv = ConvOptions { algorithm: ConvAlgorithm::SmallWinograd, ..ConvOptions::default() };

    let model = Scratch {
        layout: Layout::Mmseg,
        depth: 18,
        width: 64,
        classes: Dataset::Camvid.class_names().len(),
        bins: vec![1, 2, 3, 6],
        pooling: Pooling::Average,
        reduction: true,
        output_stride: 8,
    };
    let (params, spec) = scratch(&model)?;
    let mut trainer = Trainer::new(params, spec, options(&work), conv, 0, &BTreeMap::new())?;
    initialise(trainer.net(), SEED, |_| true);
    let init = work.join("init.safetensors");
    trainer.save(&init, false)?;

    let (params, spec) = read_checkpoint(&init, &Overrides::default())?;
    let loader = Loader {
        samples: Dataset::Camvid.samples(&data, "train")?,
        rule: LabelRule::Dataset(Dataset::Camvid),
        classes: spec.classes,
        augmentation: "flip,crop".parse()?,
        crop: Some(CROP),
        normalization: Normalization { mean: spec.mean, std: spec.std },
        seed: SEED,
        max_pixels: 100_000_000,
    };
    let sampler = Sampler { samples: loader.samples.len(), shuffle: true, seed: SEED };
    let batches = (0..ITERS).map(|k| loader.batch(k, &sampler.batch(k, BATCH))).collect::<Result<Vec<_>, _>>()?;
    let mut trainer = Trainer::new(params, spec, options(&work.join("fed")), conv, 0, &BTreeMap::new())?;
    let mut fed = Vec::new();
    for (k, batch) in batches.iter().enumerate() {
        let start = Instant::now();
        trainer.step(batch)?;
        if k >= 1 {
            fed.push(start.elapsed().as_secs_f64());
        }
    }
    let fed = median(fed);
    let flip_crop = cli_run(&pspnet, &data, &init, &work.join("flip_crop"), "flip,crop")?;
    let semseg = cli_run(&pspnet, &data, &init, &work.join("semseg"), "semseg")?;

    println!("| feeding | s/iter | against pre-decoded |");
    println!("|---|---|---|");
    println!("| pre-decoded batches | {fed:.3} | 1.000x |");
    println!("| `--augment flip,crop` | {flip_crop:.3} | {:.3}x |", flip_crop / fed);
    println!("| `--augment semseg` | {semseg:.3} | {:.3}x |", semseg / fed);
    Ok(())
}
