//! Whole training runs on a small checkpoint and generated data: the same
//! seed gives bit-identical losses on 1 and 2 threads, a run interrupted
//! and resumed gives the uninterrupted run's losses and weights, and bad
//! labels stop the run naming the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pspnet_data::{DataError, LabelRule};
use pspnet_kernels::{ConvAlgorithm, ConvOptions};
use pspnet_model::{Normalization, Overrides, read_checkpoint};
use pspnet_train::{Augmentation, Loader, Record, TrainError, TrainOptions, Trainer, initialise, reclassify, run};

const CLASSES: usize = 4;

fn checkpoint() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../pspnet-model/tests/fixtures/mmseg_r18/checkpoint.pth")
}

/// Six 40x48 images with labels 0..3 (and some 255), `bad` with a 7.
fn dataset(dir: &Path, bad: bool) -> Vec<pspnet_data::Sample> {
    let (images, labels) = (dir.join("images"), dir.join("labels"));
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&labels).unwrap();
    for i in 0..6u32 {
        let image = image::RgbImage::from_fn(48, 40, |x, y| {
            image::Rgb([(x * 5 + i * 30) as u8, (y * 6 + i * 11) as u8, ((x ^ y) * 3 + i) as u8])
        });
        image.save(images.join(format!("{i}.png"))).unwrap();
        let label = image::GrayImage::from_fn(48, 40, |x, y| {
            let v = if (x + y) % 17 == 0 { 255 } else { ((x / 12 + y / 10 + i) % CLASSES as u32) as u8 };
            image::Luma([if bad && i == 4 && x == 3 && y == 2 { 7 } else { v }])
        });
        label.save(labels.join(format!("{i}.png"))).unwrap();
    }
    pspnet_data::custom_samples(&images, &labels).unwrap()
}

fn options(out: &Path) -> TrainOptions {
    TrainOptions { batch: 2, warmup: 1, seed: 5, save_every: 100, ..TrainOptions::recipe(out.to_path_buf(), 4) }
}

fn conv() -> ConvOptions {
    ConvOptions { algorithm: ConvAlgorithm::SmallWinograd, ..ConvOptions::default() }
}

fn loader(samples: Vec<pspnet_data::Sample>, seed: u64) -> Arc<Loader> {
    Arc::new(Loader {
        samples,
        rule: LabelRule::Custom { ignore: 255, reduce_zero_label: false },
        classes: CLASSES,
        augmentation: "flip,crop,scale,rotate,blur".parse::<Augmentation>().unwrap(),
        crop: Some([33, 35]),
        normalization: Normalization::default(),
        seed,
        max_pixels: 1 << 20,
    })
}

/// A fresh trainer from the fixture checkpoint, its classifiers re-made
/// for the data's classes.
fn trainer(out: &Path) -> Trainer {
    let (mut params, mut spec) = read_checkpoint(&checkpoint(), &Overrides::default()).unwrap();
    assert!(reclassify(&mut params, CLASSES).unwrap());
    spec.classes = CLASSES;
    let mut trainer = Trainer::new(params, spec, options(out), conv(), 0, &Default::default()).unwrap();
    initialise(trainer.net(), 5, |name| name.contains("classifier"));
    trainer
}

/// Runs to the end (or to `stop_after` iterations) and returns the records.
fn train(trainer: &mut Trainer, samples: &[pspnet_data::Sample], stop_after: Option<u64>) -> Vec<Record> {
    let stop = AtomicBool::new(false);
    let mut records = Vec::new();
    run(
        trainer,
        loader(samples.to_vec(), 5),
        |r| {
            records.push(*r);
            if Some(r.iter) == stop_after {
                stop.store(true, Ordering::Relaxed);
            }
            Ok(())
        },
        |_| Ok(()),
        &stop,
    )
    .unwrap();
    records
}

fn losses(records: &[Record]) -> Vec<[u32; 3]> {
    records.iter().map(|r| [r.loss.to_bits(), r.main.to_bits(), r.aux.to_bits()]).collect()
}

#[test]
fn same_seed_same_losses_on_any_thread_count_and_after_a_resume() {
    let dir = tempfile::tempdir().unwrap();
    let samples = dataset(dir.path(), false);
    let on = |threads: usize, out: &str| {
        let out = dir.path().join(out);
        std::fs::create_dir_all(&out).unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| train(&mut trainer(&out), &samples, None))
    };
    let one = on(1, "one");
    let two = on(2, "two");
    assert_eq!(one.len(), 4);
    assert_eq!(losses(&one), losses(&two), "1 and 2 threads");
    assert!(one.iter().all(|r| r.loss.is_finite() && r.loss > 0.0));

    // Interrupted after iteration 2, resumed from last.safetensors.
    let out = dir.path().join("resumed");
    std::fs::create_dir_all(&out).unwrap();
    let first = train(&mut trainer(&out), &samples, Some(2));
    assert_eq!(first.len(), 2);
    let mut resumed = Trainer::resume(&out.join("last.safetensors"), options(&out), conv()).unwrap();
    assert_eq!(resumed.done(), 2);
    let rest = train(&mut resumed, &samples, None);
    assert_eq!(losses(&[first, rest].concat()), losses(&one), "interrupted and resumed");
    let (resumed, _) = pspnet_weights::load_safetensors(&out.join("iter-4.safetensors")).unwrap();
    let (straight, _) = pspnet_weights::load_safetensors(&dir.path().join("one/iter-4.safetensors")).unwrap();
    for key in straight.keys() {
        assert!(resumed.f32(key).unwrap() == straight.f32(key).unwrap(), "{key} differs after the resume");
    }
}

#[test]
fn a_label_outside_the_classes_stops_the_run_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let samples = dataset(dir.path(), true);
    let mut trainer = trainer(dir.path());
    let stop = AtomicBool::new(false);
    let options = TrainOptions { shuffle: false, ..options(dir.path()) };
    let err = run(&mut trainer, loader(samples, 5), |_| Ok(()), |_| Ok(()), &stop).unwrap_err();
    let _ = options;
    assert!(matches!(err, TrainError::Data(DataError::LabelClass { value: 7, classes: 4, .. })), "{err}");
    assert!(err.to_string().contains("4.png: label value 7"), "{err}");
}
