//! What training minimises: the softmax cross-entropy of every pixel's class
//! scores against its label, and the activations' gradients the chain rule
//! passes back through.

use pspnet_tensor::Tensor;
use rayon::prelude::*;

use crate::KernelError;

/// The mean softmax cross-entropy of `logits` (`N x C x H x W`) against
/// `labels` (`N * H * W` class ids, image by image, row by row), pixels
/// labelled `ignore` left out, and its gradient with respect to the logits
/// (`(softmax - one_hot) / valid pixels`, zero at ignored ones), written
/// over the logits: at full resolution they are the largest tensor of a
/// training pass. With no pixel to count, the loss is NaN, as PyTorch's
/// mean over nothing.
pub fn softmax_cross_entropy(mut logits: Tensor, labels: &[u16], ignore: u16) -> Result<(f32, Tensor), KernelError> {
    let shape = logits.shape();
    let (classes, plane) = (shape.c(), shape.plane_len());
    if labels.len() != shape.n() * plane {
        return Err(KernelError::LabelCount { expected: shape.n() * plane, got: labels.len() });
    }
    if let Some(&label) = labels.iter().find(|&&l| l != ignore && usize::from(l) >= classes) {
        return Err(KernelError::LabelOutOfRange { label, classes });
    }
    let valid = labels.iter().filter(|&&l| l != ignore).count();
    // Per image: the sum of its pixels' losses, in f64, added in image order.
    let sums: Vec<f64> = logits
        .as_mut_slice()
        .par_chunks_mut(classes * plane)
        .zip(labels.par_chunks(plane))
        .map(|(x, labels)| {
            let (mut sum, mut exps) = (0.0f64, vec![0.0f64; classes]);
            for (p, &label) in labels.iter().enumerate() {
                if label == ignore {
                    (0..classes).for_each(|c| x[c * plane + p] = 0.0);
                    continue;
                }
                let max = (0..classes).map(|c| x[c * plane + p]).fold(f32::NEG_INFINITY, f32::max);
                exps.iter_mut().enumerate().for_each(|(c, e)| *e = f64::from(x[c * plane + p] - max).exp());
                let total: f64 = exps.iter().sum();
                let label = usize::from(label);
                sum += total.ln() - f64::from(x[label * plane + p] - max);
                // The label's logit is read above before it is replaced by its gradient.
                for (c, &e) in exps.iter().enumerate() {
                    let target = if c == label { 1.0 } else { 0.0 };
                    x[c * plane + p] = ((e / total - target) / valid as f64) as f32;
                }
            }
            sum
        })
        .collect();
    Ok(((sums.iter().sum::<f64>() / valid as f64) as f32, logits))
}

/// The input gradient of a ReLU from its output: the output's gradient
/// where the output is positive, zero elsewhere (written over it).
pub fn relu_backward(output: &Tensor, mut grad: Tensor) -> Result<Tensor, KernelError> {
    if grad.shape() != output.shape() {
        let (expected, got) = (output.shape(), grad.shape());
        return Err(KernelError::ShapeMismatch { what: "output gradient", expected, got });
    }
    grad.as_mut_slice().par_iter_mut().zip(output.as_slice().par_iter()).for_each(|(g, &y)| {
        if y <= 0.0 {
            *g = 0.0;
        }
    });
    Ok(grad)
}
