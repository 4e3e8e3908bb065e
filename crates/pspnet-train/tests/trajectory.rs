//! Three SGD steps of the recipe against float64 PyTorch
//! (xtask/python/train_reference.py's trajectory.safetensors): the same
//! initial weights and fixed batches, two parameter groups, momentum,
//! weight decay, poly decay over 3 iterations, aux 0.4, no dropout. The
//! losses within 1e-5, 1e-4 and 1e-3 relative at steps 1, 2 and 3; every
//! tensor of two or more dimensions within relative L2 5e-3, the running
//! statistics within 5e-2. The fixture script checked that PyTorch's own
//! float32 run stays within a fifth of these (the trajectory is chaotic
//! beyond a few steps, and through a width-2 ResNet-50 within three).

use std::path::Path;

use pspnet_kernels::{ConvAlgorithm, ConvOptions};
use pspnet_model::{Overrides, read_checkpoint};
use pspnet_nn::train::{State, Trainable};
use pspnet_tensor::{Shape, Tensor};
use pspnet_train::{Batch, TrainOptions, Trainer};

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let diff: f64 = a.iter().zip(b).map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2)).sum();
    let norm: f64 = b.iter().map(|&y| f64::from(y).powi(2)).sum();
    (diff / norm.max(f64::MIN_POSITIVE)).sqrt()
}

#[test]
fn three_sgd_steps_follow_pytorch_float64() {
    for case in ["semseg_r18", "mmseg_r18"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pspnet-model/tests/fixtures/train").join(case);
        let (params, spec) = read_checkpoint(&dir.join("checkpoint.pth"), &Overrides::default()).unwrap();
        let out = tempfile::tempdir().unwrap();
        let options = TrainOptions {
            batch: 2,
            dropout: 0.0,
            shuffle: false,
            ..TrainOptions::recipe(out.path().to_path_buf(), 3)
        };
        let conv = ConvOptions { algorithm: ConvAlgorithm::SmallWinograd, ..ConvOptions::default() };
        let mut trainer = Trainer::new(params, spec, options, conv, 0, &Default::default()).unwrap();
        let (fixture, _) = pspnet_weights::load_safetensors(&dir.join("trajectory.safetensors")).unwrap();
        let (_, want_losses) = fixture.f32("loss").unwrap();
        for (step, tolerance) in [1e-5, 1e-4, 1e-3].into_iter().enumerate() {
            let (dims, input) = fixture.f32(&format!("input.{step}")).unwrap();
            let images = Tensor::from_vec(Shape::new(dims[0], dims[1], dims[2], dims[3]).unwrap(), input).unwrap();
            let labels = fixture.f32(&format!("labels.{step}")).unwrap().1.iter().map(|&l| l as u16).collect();
            let (loss, _, _) = trainer.step(&Batch { images, labels }).unwrap();
            let want = want_losses[step];
            assert!(((loss - want) / want).abs() <= tolerance, "{case} step {}: loss {loss} against {want}", step + 1);
        }
        let mut failures = Vec::new();
        trainer.net().visit_state("", &mut |name, state| {
            let (values, tolerance) = match state {
                State::Learned(p) if p.dims.len() >= 2 => (&p.value[..], 5e-3),
                State::Learned(_) => return,
                State::Running(v) => (&v[..], 5e-2),
            };
            let (_, want) = fixture.f32(&format!("after.{name}")).unwrap();
            let error = rel_l2(values, &want);
            if error > tolerance {
                failures.push(format!("{case}: {name}: relative L2 {error:.2e} over {tolerance:e}"));
            }
        });
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
