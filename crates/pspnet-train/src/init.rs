//! How fresh layers start, for every layout (semseg's `init_weights`):
//! convolutions Kaiming normal (fan-out, ReLU gain), the two classifiers
//! N(0, 0.01) with zero biases, batch-norms with scale 1 and shift 0 (and
//! running mean 0, variance 1).

use pspnet_nn::train::{State, Trainable};

use crate::draws::{Draws, Purpose, label};

/// Whether a parameter belongs to one of the two classifiers.
fn is_classifier(name: &str) -> bool {
    name.starts_with("decode.classifier.") || name.starts_with("aux.classifier.")
}

/// Initialises every parameter and running statistic whose name `fresh`
/// accepts; each one's draws come from `(seed, its name)`.
pub fn initialise(net: &mut impl Trainable, seed: u64, fresh: impl Fn(&str) -> bool) {
    net.visit_state("", &mut |name, state| {
        if !fresh(name) {
            return;
        }
        let mut draws = Draws::new(seed, Purpose::Init, &[label(name)]);
        match state {
            State::Learned(p) if p.dims.len() == 4 => {
                let std = if is_classifier(name) {
                    0.01
                } else {
                    let [out, _, kh, kw] = [p.dims[0], p.dims[1], p.dims[2], p.dims[3]];
                    (2.0 / (out * kh * kw) as f64).sqrt()
                };
                p.value.iter_mut().for_each(|v| *v = (std * draws.normal()) as f32);
            }
            // A batch-norm's scale starts at 1; every bias and shift at 0.
            State::Learned(p) => {
                let start = if name.ends_with(".weight") && !is_classifier(name) { 1.0 } else { 0.0 };
                p.value.iter_mut().for_each(|v| *v = start);
            }
            State::Running(v) => {
                let start = if name.ends_with("running_var") { 1.0 } else { 0.0 };
                v.iter_mut().for_each(|x| *x = start);
            }
        }
    });
}
