//! One training pass of the whole network against PyTorch's autograd in
//! float64 (fixtures from xtask/python/train_reference.py): small random
//! networks in both layouts, batch 2, an odd input size, batch-norms in
//! training mode, the auxiliary loss at 0.4, no dropout.

use std::path::{Path, PathBuf};

use pspnet_kernels::ConvOptions;
use pspnet_model::{Overrides, PassOptions, PspNetConfig, TrainPspNet, read_checkpoint};
use pspnet_nn::ParamStore;
use pspnet_nn::train::{BnMode, State, Trainable};
use pspnet_ppm::Pooling;
use pspnet_resnet::StridePlacement;
use pspnet_tensor::{Shape, Tensor};

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/train").join(case)
}

/// `||a - b|| / ||b||`.
fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let diff: f64 = a.iter().zip(b).map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2)).sum();
    let norm: f64 = b.iter().map(|&y| f64::from(y).powi(2)).sum();
    (diff / norm.max(f64::MIN_POSITIVE)).sqrt()
}

/// Every parameter's gradient within its tolerance (max(1e-5, 3x PyTorch
/// float32's own error)), the losses within 1e-5, the running statistics
/// within their batch-norm's tolerance, for each case. The 3x3 convolutions
/// run in F(2x2, 3x3) tiles, as training runs them: the rounding of F(4x4)
/// and F(5x5) (a few times the direct sums') puts some gradients up to 2.6x
/// over the tolerance.
#[test]
fn gradients_of_a_training_pass_match_pytorch_float64() {
    for case in ["semseg_r50", "mmseg_r18", "semseg_r18", "semseg_r50_reduce_max"] {
        let (params, mut spec) = read_checkpoint(&fixture(case).join("checkpoint.pth"), &Overrides::default()).unwrap();
        if case.ends_with("reduce_max") {
            spec.backbone.stride_placement = StridePlacement::Reduce;
            spec.ppm.pooling = Pooling::Max;
        }
        let config = PspNetConfig { backbone: spec.backbone.clone(), ppm: spec.ppm.clone() };
        let options = ConvOptions { algorithm: pspnet_kernels::ConvAlgorithm::SmallWinograd, ..ConvOptions::default() };
        let mut store = ParamStore::new(params, options);
        let mut net = TrainPspNet::build(&config, &mut store.root()).unwrap();
        assert!(store.finish().is_empty(), "{case}: every parameter used");

        let (pass, _) = pspnet_weights::load_safetensors(&fixture(case).join("pass.safetensors")).unwrap();
        let (dims, input) = pass.f32("input").unwrap();
        let input = Tensor::from_vec(Shape::new(dims[0], dims[1], dims[2], dims[3]).unwrap(), input).unwrap();
        let (label_dims, labels) = pass.f32("labels").unwrap();
        let labels: Vec<u16> = labels.iter().map(|&l| l as u16).collect();
        let options =
            PassOptions { bn: BnMode::Train, dropout: 0.0, seed: 0, aux_weight: 0.4, ignore: 255, grad_scale: 1.0 };
        let losses = net.pass(input, &labels, [label_dims[1], label_dims[2]], &options).unwrap();
        let (_, want) = pass.f32("loss").unwrap();
        for (got, want, what) in
            [(losses.main, want[0], "main"), (losses.aux, want[1], "aux"), (losses.total, want[2], "total")]
        {
            assert!(((got - want) / want).abs() <= 1e-5, "{case}: {what} loss {got} against {want}");
        }

        let mut checked = 0;
        let mut failures = Vec::new();
        net.visit_state("", &mut |name, state| {
            let (values, key, tolerance) = match state {
                State::Learned(p) => {
                    (p.take_grad(), format!("grad.{name}"), pass.f32(&format!("tol.{name}")).unwrap().1[0])
                }
                // As ill-conditioned as the same batch-norm's scale (the bin-1
                // pyramid level normalises two values per channel).
                State::Running(v) => {
                    let bn = name.rsplit_once('.').map_or(name, |(bn, _)| bn);
                    let scale = pass.f32(&format!("tol.{bn}.weight")).unwrap().1[0];
                    (v.clone(), format!("running.{name}"), scale.max(1e-5))
                }
            };
            let (_, want) = pass.f32(&key).unwrap_or_else(|e| panic!("{case}: {key}: {e}"));
            let error = rel_l2(&values, &want);
            if error > f64::from(tolerance) {
                failures.push(format!("{case}: {key}: relative L2 {error:.2e} over {tolerance:.2e}"));
            }
            checked += 1;
        });
        let expected = pass.keys().filter(|k| k.starts_with("grad.") || k.starts_with("running.")).count();
        assert_eq!(checked, expected, "{case}: every gradient and running statistic compared");
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
