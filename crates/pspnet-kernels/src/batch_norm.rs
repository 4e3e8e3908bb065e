//! Batch normalisation: at inference folded into the preceding
//! convolution's epilogue so that it costs nothing; in training mode
//! normalising by the batch's own statistics, with its gradient.

use pspnet_tensor::{Shape, Tensor};
use rayon::prelude::*;

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

/// What a batch-norm in training mode keeps from its forward pass: each
/// channel's batch mean, biased variance and `1 / sqrt(var + eps)`, and how
/// many values each channel had.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchStats {
    /// Mean per channel.
    pub mean: Vec<f32>,
    /// Biased variance per channel (what normalises).
    pub var: Vec<f32>,
    /// `1 / sqrt(var + eps)` per channel.
    pub invstd: Vec<f32>,
    /// Values per channel (`N * H * W`).
    pub count: usize,
}

impl BatchStats {
    /// Normalises `x` by these statistics and applies `gamma` and `beta`:
    /// [`batch_norm_train`]'s output, bit for bit, so that a backward pass
    /// can recompute it instead of keeping it.
    pub fn normalize(&self, x: &Tensor, gamma: &[f32], beta: &[f32]) -> Result<Tensor, KernelError> {
        per_channel("batch-norm weight", gamma, self.invstd.len())?;
        per_channel("batch-norm bias", beta, self.invstd.len())?;
        let scale: Vec<f32> = gamma.iter().zip(&self.invstd).map(|(g, s)| g * s).collect();
        let shift: Vec<f32> = (0..scale.len()).map(|c| beta[c] - self.mean[c] * gamma[c] * self.invstd[c]).collect();
        channel_affine(x, &scale, &shift)
    }

    /// PyTorch's update of the running statistics: `running = (1 -
    /// momentum) * running + momentum * batch`, with the unbiased variance.
    pub fn update_running(&self, mean: &mut [f32], var: &mut [f32], momentum: f32) {
        let unbiased = self.count as f64 / (self.count - 1) as f64;
        for (c, (m, v)) in mean.iter_mut().zip(var.iter_mut()).enumerate() {
            *m = ((1.0 - momentum as f64) * *m as f64 + momentum as f64 * self.mean[c] as f64) as f32;
            *v = ((1.0 - momentum as f64) * *v as f64 + momentum as f64 * self.var[c] as f64 * unbiased) as f32;
        }
    }
}

/// Channels whose sums one task runs side by side: each sum is a chain of
/// dependent f64 additions, which alone would wait on each addition's
/// latency.
const CHANNEL_GROUP: usize = 4;

/// For each channel `c` of tensors of `shape`, the `S` sums over its values
/// of `terms(c, i)`, `i` running over the flat indices of the channel's
/// values image by image: each sum in that one order (the same on any
/// thread count), `CHANNEL_GROUP` channels at a time.
fn channel_sums<const S: usize>(shape: Shape, terms: impl Fn(usize, usize) -> [f64; S] + Sync) -> Vec<[f64; S]> {
    let (channels, plane) = (shape.c(), shape.plane_len());
    let groups: Vec<Vec<[f64; S]>> = (0..channels.div_ceil(CHANNEL_GROUP))
        .into_par_iter()
        .map(|g| {
            let group = g * CHANNEL_GROUP..((g + 1) * CHANNEL_GROUP).min(channels);
            // -0.0, as `Iterator::sum` starts, so that a sum of zeros keeps its sign.
            let mut sums = [[-0.0f64; S]; CHANNEL_GROUP];
            for n in 0..shape.n() {
                for i in 0..plane {
                    for (sum, c) in sums.iter_mut().zip(group.clone()) {
                        let terms = terms(c, (n * channels + c) * plane + i);
                        sum.iter_mut().zip(terms).for_each(|(s, t)| *s += t);
                    }
                }
            }
            sums[..group.len()].to_vec()
        })
        .collect();
    groups.concat()
}

/// Checks a per-channel vector's length.
fn per_channel(what: &'static str, values: &[f32], channels: usize) -> Result<(), KernelError> {
    if values.len() != channels {
        return Err(KernelError::ChannelVectorLength { what, expected: channels, got: values.len() });
    }
    Ok(())
}

/// Batch-norm in training mode: each channel normalised by its batch mean
/// and biased variance, then `* gamma + beta`. A channel of one value is
/// refused, as PyTorch refuses it (its variance says nothing).
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
) -> Result<(Tensor, BatchStats), KernelError> {
    let shape = x.shape();
    let (channels, count) = (shape.c(), shape.n() * shape.plane_len());
    per_channel("batch-norm weight", gamma, channels)?;
    per_channel("batch-norm bias", beta, channels)?;
    if count < 2 {
        return Err(KernelError::InvalidParameter {
            what: "values per channel in training mode (at least 2)",
            value: [count, 1],
        });
    }
    let values = x.as_slice();
    let means: Vec<f64> = channel_sums(shape, |_, i| [values[i] as f64]).iter().map(|[s]| s / count as f64).collect();
    let vars: Vec<f64> = channel_sums(shape, |c, i| [(values[i] as f64 - means[c]).powi(2)])
        .iter()
        .map(|[s]| s / count as f64)
        .collect();
    let mean: Vec<f32> = means.iter().map(|&m| m as f32).collect();
    let var: Vec<f32> = vars.iter().map(|&v| v as f32).collect();
    let invstd: Vec<f32> = vars.iter().map(|&v| (1.0 / (v + eps).sqrt()) as f32).collect();
    let stats = BatchStats { mean, var, invstd, count };
    Ok((stats.normalize(x, gamma, beta)?, stats))
}

/// `x * scale[c] + shift[c]` on each channel `c`: a batch-norm with its
/// statistics folded in.
pub fn channel_affine(x: &Tensor, scale: &[f32], shift: &[f32]) -> Result<Tensor, KernelError> {
    let channels = x.shape().c();
    per_channel("batch-norm scale", scale, channels)?;
    per_channel("batch-norm shift", shift, channels)?;
    let mut y = x.clone();
    y.as_mut_slice().par_chunks_mut(x.shape().plane_len()).enumerate().for_each(|(p, values)| {
        let (scale, shift) = (scale[p % channels], shift[p % channels]);
        values.iter_mut().for_each(|v| *v = *v * scale + shift);
    });
    Ok(y)
}

/// The gradients of [`batch_norm_train`] with respect to its input, `gamma`
/// and `beta`: `dx = gamma * invstd / M * (M * dy - sum(dy) - x̂ * sum(dy *
/// x̂))`, `dgamma = sum(dy * x̂)`, `dbeta = sum(dy)`, with `x̂` the
/// normalised input and `M` the values per channel.
pub fn batch_norm_train_backward(
    x: &Tensor,
    grad_y: &Tensor,
    gamma: &[f32],
    stats: &BatchStats,
) -> Result<(Tensor, Vec<f32>, Vec<f32>), KernelError> {
    let (shape, channels) = (x.shape(), x.shape().c());
    per_channel("batch-norm weight", gamma, channels)?;
    let normalised = |c: usize, v: f32| ((v - stats.mean[c]) * stats.invstd[c]) as f64;
    let sums = affine_sums(x, grad_y, normalised)?;
    let (plane, m) = (shape.plane_len(), stats.count as f64);
    let mut dx = grad_y.clone();
    dx.as_mut_slice().par_chunks_mut(plane).zip(x.as_slice().par_chunks(plane)).enumerate().for_each(|(p, (g, xs))| {
        let c = p % channels;
        let (dy, dy_xhat) = sums[c];
        let k = gamma[c] as f64 * stats.invstd[c] as f64 / m;
        for (g, &v) in g.iter_mut().zip(xs) {
            *g = (k * (m * *g as f64 - dy - normalised(c, v) * dy_xhat)) as f32;
        }
    });
    let (dbeta, dgamma) = sums.iter().map(|&(dy, dy_xhat)| (dy as f32, dy_xhat as f32)).unzip();
    Ok((dx, dgamma, dbeta))
}

/// Per channel of `x`, `(sum(dy), sum(dy * x̂))` with `x̂ = normalised(channel,
/// value)`: the bias's and the scale's gradients of a batch-norm, in f64.
fn affine_sums(
    x: &Tensor,
    grad_y: &Tensor,
    normalised: impl Fn(usize, f32) -> f64 + Sync,
) -> Result<Vec<(f64, f64)>, KernelError> {
    if grad_y.shape() != x.shape() {
        return Err(KernelError::ShapeMismatch { what: "output gradient", expected: x.shape(), got: grad_y.shape() });
    }
    let (dy, values) = (grad_y.as_slice(), x.as_slice());
    let sums = channel_sums(x.shape(), |c, i| [dy[i] as f64, dy[i] as f64 * normalised(c, values[i])]);
    Ok(sums.into_iter().map(|[dy, dy_xhat]| (dy, dy_xhat)).collect())
}

/// The gradients of a batch-norm in eval mode (`--bn frozen`: the running
/// statistics normalise) with respect to its input, `gamma` and `beta`:
/// `dx = dy * gamma / sqrt(var + eps)`, `dgamma = sum(dy * x̂)`, `dbeta =
/// sum(dy)`, with `x̂` the input normalised by the running statistics.
pub fn batch_norm_frozen_backward(
    x: &Tensor,
    grad_y: &Tensor,
    bn: &BatchNorm,
) -> Result<(Tensor, Vec<f32>, Vec<f32>), KernelError> {
    let (shape, channels) = (x.shape(), x.shape().c());
    for (what, values) in [("batch-norm weight", &bn.gamma), ("running mean", &bn.mean), ("running variance", &bn.var)]
    {
        per_channel(what, values, channels)?;
    }
    let invstd: Vec<f64> = bn.var.iter().map(|&v| 1.0 / (v as f64 + bn.eps).sqrt()).collect();
    let sums = affine_sums(x, grad_y, |c, v| (v as f64 - bn.mean[c] as f64) * invstd[c])?;
    let (dbeta, dgamma) = sums.iter().map(|&(dy, dy_xhat)| (dy as f32, dy_xhat as f32)).unzip();
    let mut dx = grad_y.clone();
    dx.as_mut_slice().par_chunks_mut(shape.plane_len()).enumerate().for_each(|(p, g)| {
        let c = p % channels;
        let scale = (bn.gamma[c] as f64 * invstd[c]) as f32;
        g.iter_mut().for_each(|v| *v *= scale);
    });
    Ok((dx, dgamma, dbeta))
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
