//! Per-pixel reductions over the channel axis: turning class scores into a
//! label (argmax) or into probabilities (softmax).

use ndarray::Array3;
use pspnet_tensor::Tensor;
use rayon::prelude::*;

/// Pixels per parallel work item.
const CHUNK: usize = 4096;

/// The index of the largest channel at each pixel, as an `(n, h, w)` array.
/// Ties go to the lowest index and NaN counts as the largest value, as in
/// `torch.argmax`.
pub fn argmax_channels(input: &Tensor) -> Array3<u32> {
    let shape = input.shape();
    let plane = shape.plane_len();
    let mut labels = vec![0u32; shape.n() * plane];
    for (image, out) in labels.chunks_exact_mut(plane).enumerate() {
        let src = input.image_slice(image).expect("image index within the batch");
        out.par_chunks_mut(CHUNK).enumerate().for_each(|(chunk, out)| {
            let start = chunk * CHUNK;
            let mut best: Vec<f32> = src[start..start + out.len()].to_vec();
            for c in 1..shape.c() {
                let scores = &src[c * plane + start..c * plane + start + out.len()];
                for ((label, b), &v) in out.iter_mut().zip(best.iter_mut()).zip(scores) {
                    if beats(v, *b) {
                        *b = v;
                        *label = c as u32;
                    }
                }
            }
        });
    }
    Array3::from_shape_vec((shape.n(), shape.h(), shape.w()), labels).expect("length is n*h*w")
}

/// Whether score `v` of a later channel displaces the best so far: strictly
/// larger, or NaN over a number (as `torch.argmax`).
pub(crate) fn beats(v: f32, best: f32) -> bool {
    v > best || (v.is_nan() && !best.is_nan())
}

/// Softmax over channels at every pixel (`exp(x - max) / sum`), as
/// `torch.softmax(x, dim=1)`.
pub fn softmax_channels(input: &Tensor) -> Tensor {
    let shape = input.shape();
    let plane = shape.plane_len();
    let mut out = input.clone();
    for image in 0..shape.n() {
        let data = out.image_slice_mut(image).expect("image index within the batch");
        let chunks: Vec<usize> = (0..plane).step_by(CHUNK).collect();
        let shared = ChannelPlanes { ptr: data.as_mut_ptr(), plane, channels: shape.c() };
        chunks.into_par_iter().for_each(|start| {
            let len = CHUNK.min(plane - start);
            // SAFETY: each task owns pixel columns start..start+len of every
            // channel plane; columns of different tasks are disjoint.
            let mut rows: Vec<&mut [f32]> =
                (0..shared.channels).map(|c| unsafe { shared.segment(c, start, len) }).collect();
            softmax_columns(&mut rows);
        });
    }
    out
}

/// Softmax down the columns of `rows` (one row per channel).
fn softmax_columns(rows: &mut [&mut [f32]]) {
    let len = rows[0].len();
    let mut max = vec![f32::NEG_INFINITY; len];
    for row in rows.iter() {
        max.iter_mut().zip(row.iter()).for_each(|(m, &v)| *m = m.max(v));
    }
    let mut sum = vec![0.0f32; len];
    for row in rows.iter_mut() {
        for ((v, m), s) in row.iter_mut().zip(&max).zip(sum.iter_mut()) {
            *v = (*v - m).exp();
            *s += *v;
        }
    }
    for row in rows.iter_mut() {
        row.iter_mut().zip(&sum).for_each(|(v, s)| *v /= s);
    }
}

/// One image's channel planes, shared by tasks that own disjoint pixel columns.
struct ChannelPlanes {
    ptr: *mut f32,
    plane: usize,
    channels: usize,
}

// SAFETY: tasks only touch disjoint column ranges (see `segment`), and the
// image buffer outlives the parallel loop that borrows it.
unsafe impl Sync for ChannelPlanes {}

impl ChannelPlanes {
    /// # Safety
    /// No other live reference may overlap pixels `start..start+len` of
    /// channel `c`.
    #[allow(clippy::mut_from_ref)]
    unsafe fn segment(&self, c: usize, start: usize, len: usize) -> &mut [f32] {
        assert!(c < self.channels && start + len <= self.plane, "segment outside the image");
        // SAFETY: in bounds (asserted), exclusive (caller).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(c * self.plane + start), len) }
    }
}
