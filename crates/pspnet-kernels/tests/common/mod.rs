//! Test oracles: naive, obviously-correct f64 implementations written
//! straight from PyTorch's documented formulas, independent of the kernels.

#![allow(dead_code, unreachable_pub)]

use proptest::prelude::*;
use pspnet_kernels::{Shape, Tensor};

/// A tensor of the given shape filled from `values` (cycled).
pub fn tensor(dims: [usize; 4], values: &[f32]) -> Tensor {
    let shape = Shape::new(dims[0], dims[1], dims[2], dims[3]).unwrap();
    Tensor::from_vec(shape, values.iter().copied().cycle().take(shape.len()).collect()).unwrap()
}

/// A deterministic pseudo-random tensor in [-1, 1) (xorshift), for tests
/// too large to draw element by element from proptest.
pub fn random_tensor(dims: [usize; 4], seed: u64) -> Tensor {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let shape = Shape::new(dims[0], dims[1], dims[2], dims[3]).unwrap();
    Tensor::from_fn(shape, |_, _, _, _| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    })
}

/// Values in [-1, 1] for a tensor of `len` elements.
pub fn values(len: usize) -> impl Strategy<Value = Vec<f32>> {
    proptest::collection::vec(-1.0f32..1.0, len)
}

/// Reference convolution in f64. Returns (output, sum of |w * x| per output)
/// so tests can bound the f32 rounding error of each value.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_f64(
    input: &Tensor,
    weight: &Tensor,
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
) -> (Vec<f64>, Vec<f64>, [usize; 4]) {
    let [n, cin, h, w] = input.shape().dims();
    let [cout, wcin, kh, kw] = weight.shape().dims();
    assert_eq!(cin, wcin);
    let oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) / stride[0] + 1;
    let ow = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) / stride[1] + 1;
    let x = input.view();
    let wt = weight.view();
    let mut out = Vec::with_capacity(n * cout * oh * ow);
    let mut mag = Vec::with_capacity(n * cout * oh * ow);
    for b in 0..n {
        for co in 0..cout {
            for oy in 0..oh {
                for ox in 0..ow {
                    let (mut s, mut m) = (0.0f64, 0.0f64);
                    for ci in 0..cin {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * stride[0] + ky * dilation[0]) as isize - padding[0] as isize;
                                let ix = (ox * stride[1] + kx * dilation[1]) as isize - padding[1] as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let p = wt[[co, ci, ky, kx]] as f64 * x[[b, ci, iy as usize, ix as usize]] as f64;
                                s += p;
                                m += p.abs();
                            }
                        }
                    }
                    out.push(s);
                    mag.push(m);
                }
            }
        }
    }
    (out, mag, [n, cout, oh, ow])
}

/// Asserts `|got - want| <= tol` elementwise, reporting the first failure.
pub fn assert_close(got: &[f32], want: &[f64], tol: impl Fn(usize) -> f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let t = tol(i);
        assert!(
            (g as f64 - w).abs() <= t || (g.is_nan() && w.is_nan()),
            "{what}: element {i}: got {g}, want {w}, tolerance {t:e}"
        );
    }
}
