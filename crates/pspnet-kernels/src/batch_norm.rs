//! Inference-time batch normalisation, folded into the preceding
//! convolution's epilogue so that it costs nothing.

use crate::{Conv2d, KernelError};

/// The four statistics of a PyTorch `BatchNorm2d` in eval mode:
/// `y = (x - mean) / sqrt(var + eps) * gamma + beta`.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNorm {
    /// Learned scale (`weight`).
    pub gamma: Vec<f32>,
    /// Learned shift (`bias`).
    pub beta: Vec<f32>,
    /// Running mean.
    pub mean: Vec<f32>,
    /// Running variance.
    pub var: Vec<f32>,
    /// Added to the variance (PyTorch's default is 1e-5).
    pub eps: f64,
}

/// PyTorch's default `BatchNorm2d` epsilon.
pub const BN_EPS: f64 = 1e-5;

impl BatchNorm {
    /// The per-channel `(scale, shift)` of the folded form `x * scale + shift`,
    /// computed in f64 and rounded once.
    pub fn scale_shift(&self) -> (Vec<f32>, Vec<f32>) {
        let scale: Vec<f64> =
            self.gamma.iter().zip(&self.var).map(|(&g, &v)| g as f64 / (v as f64 + self.eps).sqrt()).collect();
        let shift = self.beta.iter().zip(&self.mean).zip(&scale).map(|((&b, &m), s)| (b as f64 - m as f64 * s) as f32);
        (scale.iter().map(|&s| s as f32).collect(), shift.collect())
    }
}

impl Conv2d {
    /// Folds a batch-norm that follows this convolution into its epilogue.
    pub fn with_batch_norm(self, bn: &BatchNorm) -> Result<Self, KernelError> {
        let (scale, shift) = bn.scale_shift();
        self.with_scale_shift(&scale, &shift)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_matches_the_definition() {
        // gamma 2, beta 1, mean 3, var 3 (eps 1): scale = 2 / sqrt(4) = 1,
        // shift = 1 - 3 = -2, so BN(x) = x - 2, hand-computed.
        let bn = BatchNorm { gamma: vec![2.0], beta: vec![1.0], mean: vec![3.0], var: vec![3.0], eps: 1.0 };
        assert_eq!(bn.scale_shift(), (vec![1.0], vec![-2.0]));
    }
}
