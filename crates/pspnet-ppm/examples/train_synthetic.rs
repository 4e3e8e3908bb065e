//! Training the pyramid pooling module on synthetic data, outside PSPNet.
//!
//! The task needs global context: every pixel's class is whether the whole
//! image was shifted up or down, which a 3x3 neighbourhood sees only
//! through heavy noise, and the pyramid's 1x1 bin (the global mean) sees
//! clearly.
//!
//! Run: `cargo run --release -p pspnet-ppm --example train_synthetic`

use std::sync::Arc;

use pspnet_kernels::{ConvOptions, ConvSpec, softmax_cross_entropy};
use pspnet_nn::ParamStore;
use pspnet_nn::train::{BnMode, State, TrainConv, TrainConvBn, Trainable};
use pspnet_ppm::{PyramidPoolingConfig, TrainPyramidPooling};
use pspnet_tensor::{Params, Shape, Tensor};

/// A deterministic generator of values in [-0.5, 0.5).
struct Lcg(u32);

impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (self.0 >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = Lcg(1);
    // Parameters: a 3x3 conv + BN (3 -> 8), four 1x1 reductions + BN (8 -> 2), a 1x1 classifier.
    let mut params = Params::new();
    let add = |params: &mut Params, name: &str, dims: Vec<usize>, scale: f32, rng: &mut Lcg| {
        let values = (0..dims.iter().product()).map(|_| scale * rng.next()).collect();
        params.insert(name, dims, values)
    };
    let batch_norm = |params: &mut Params, prefix: &str, channels: usize| {
        for (name, value) in [("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)] {
            params.insert(format!("{prefix}.{name}"), vec![channels], vec![value; channels])?;
        }
        Ok::<(), pspnet_tensor::TensorError>(())
    };
    add(&mut params, "stem.conv.weight", vec![8, 3, 3, 3], 0.5, &mut rng)?;
    batch_norm(&mut params, "stem.bn", 8)?;
    for i in 0..4 {
        add(&mut params, &format!("ppm.{i}.conv.weight"), vec![2, 8, 1, 1], 1.0, &mut rng)?;
        batch_norm(&mut params, &format!("ppm.{i}.bn"), 2)?;
    }
    add(&mut params, "classifier.weight", vec![2, 16, 1, 1], 0.1, &mut rng)?;
    add(&mut params, "classifier.bias", vec![2], 0.0, &mut rng)?;

    let mut store = ParamStore::new(params, ConvOptions::default());
    let mut root = store.root();
    let same = ConvSpec::default().padding(1);
    let mut stem = TrainConvBn::build(&mut root.at("stem"), "conv.weight", "bn", 3, None, 3, same)?.with_relu(true);
    let mut ppm = TrainPyramidPooling::build(PyramidPoolingConfig::default(), &mut root.at("ppm"), 8)?;
    let mut classifier =
        TrainConv::build(&mut root.at("classifier"), "weight", Some("bias"), [2, 16, 1, 1], ConvSpec::default())?;
    assert!(store.finish().is_empty(), "every parameter is used");

    let (batch, size, steps) = (8, 24, 200);
    let (mut window_loss, mut window_right) = (0.0, 0.0);
    for step in 0..steps {
        // Plain SGD with the paper's poly decay.
        let lr = 0.1 * (1.0 - step as f32 / steps as f32).powf(0.9);
        // A batch of noise images (std 2.3), each shifted by an offset in [-0.5, 0.5).
        let offsets: Vec<f32> = (0..batch).map(|_| rng.next()).collect();
        let images = Tensor::from_fn(Shape::new(batch, 3, size, size)?, |n, _, _, _| offsets[n] + 8.0 * rng.next());
        let labels: Vec<u16> = offsets.iter().flat_map(|&o| vec![u16::from(o > 0.0); size * size]).collect();

        let features = stem.forward(Arc::new(images), BnMode::Train)?;
        let pooled = ppm.forward(features, BnMode::Train)?;
        let logits = classifier.forward(Arc::new(pooled))?;
        let plane = size * size;
        let right = (0..labels.len())
            .filter(|&i| {
                let (n, p) = (i / plane, i % plane);
                let (down, up) = (logits.as_slice()[2 * n * plane + p], logits.as_slice()[(2 * n + 1) * plane + p]);
                u16::from(up > down) == labels[i]
            })
            .count();
        let (loss, grad) = softmax_cross_entropy(logits, &labels, 255)?;

        let grad = classifier.backward(&grad, true)?.expect("the input's gradient");
        let grad = ppm.backward(&grad)?;
        stem.backward(grad, false)?;
        for layer in [&mut stem as &mut dyn Trainable, &mut ppm, &mut classifier] {
            layer.visit_state("", &mut |_, state| {
                if let State::Learned(p) = state {
                    let grad = p.take_grad();
                    p.value.iter_mut().zip(grad).for_each(|(v, g)| *v -= lr * g);
                }
            });
        }
        window_loss += loss / 25.0;
        window_right += 100.0 * right as f64 / labels.len() as f64 / 25.0;
        if (step + 1) % 25 == 0 {
            println!(
                "steps {:3}-{:3}: mean loss {window_loss:.3}, pixels right {window_right:.1}%",
                step - 24,
                step + 1
            );
            (window_loss, window_right) = (0.0, 0.0);
        }
    }
    Ok(())
}
