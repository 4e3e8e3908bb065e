//! Max and average pooling with PyTorch's `nn.MaxPool2d` / `nn.AvgPool2d`
//! semantics (window placement, `ceil_mode`, padding, divisor).

use pspnet_tensor::{Shape, Tensor};

use crate::isa::multiversion;
use crate::planes::{backward_planes, first_maximum, map_planes};
use crate::{Isa, KernelError};

/// Window size, stride, zero padding and rounding of a pooling, per axis `[y, x]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolSpec {
    /// Window size.
    pub kernel: [usize; 2],
    /// Step between windows.
    pub stride: [usize; 2],
    /// Implicit padding on each side (at most half the window, as PyTorch requires).
    pub padding: [usize; 2],
    /// Round the output size up instead of down; a last window that would
    /// start inside the right/bottom padding is dropped, as in PyTorch.
    pub ceil_mode: bool,
}

impl PoolSpec {
    /// A square window `k` with stride `s` and padding `p`, floor mode.
    pub const fn square(k: usize, s: usize, p: usize) -> Self {
        PoolSpec { kernel: [k, k], stride: [s, s], padding: [p, p], ceil_mode: false }
    }

    /// The pooled shape of an input shape, or why that input is refused.
    pub fn output_shape(&self, input: Shape) -> Result<Shape, KernelError> {
        for (what, value) in [("pooling kernel", self.kernel), ("pooling stride", self.stride)] {
            if value.contains(&0) {
                return Err(KernelError::InvalidParameter { what, value });
            }
        }
        if (0..2).any(|a| self.padding[a] > self.kernel[a] / 2) {
            return Err(KernelError::InvalidParameter {
                what: "pooling padding (at most half the kernel)",
                value: self.padding,
            });
        }
        let len = |axis: usize, name: &'static str, size: usize| -> Result<usize, KernelError> {
            let (k, s, p) = (self.kernel[axis], self.stride[axis], self.padding[axis]);
            if size + 2 * p < k {
                return Err(KernelError::WindowLargerThanInput {
                    what: "pooling",
                    axis: name,
                    input,
                    kernel: k,
                    dilation: 1,
                    padding: p,
                    window: k,
                });
            }
            let span = size + 2 * p - k;
            let mut out = if self.ceil_mode { span.div_ceil(s) } else { span / s } + 1;
            if self.ceil_mode && (out - 1) * s >= size + p {
                out -= 1;
            }
            Ok(out)
        };
        Ok(input.with_hw(len(0, "height", input.h())?, len(1, "width", input.w())?)?)
    }

    /// Window bounds along one axis for output index `o`: the unclipped end
    /// (bounded by the padded size, for the average divisor) and the range
    /// clipped to the input.
    fn window(&self, axis: usize, o: usize, size: usize) -> (isize, isize, std::ops::Range<usize>) {
        let start = (o * self.stride[axis]) as isize - self.padding[axis] as isize;
        let end = (start + self.kernel[axis] as isize).min((size + self.padding[axis]) as isize);
        (start, end, start.max(0) as usize..(end.max(0) as usize).min(size))
    }
}

/// Max pooling; padding never wins (it counts as -inf) and NaN propagates.
/// Separable: each output row first takes the maximum of its window's input
/// rows, column by column, then each output the maximum of its window's
/// columns. The values are PyTorch's; only between equal maxima of opposite
/// zero sign may the sign picked differ.
pub fn max_pool2d(input: &Tensor, spec: &PoolSpec) -> Result<Tensor, KernelError> {
    let out = spec.output_shape(input.shape())?;
    let (h, w, isa) = (input.shape().h(), input.shape().w(), Isa::best());
    Ok(map_planes(input, out, |src, dst| {
        let mut columns = vec![f32::NEG_INFINITY; w];
        for (oy, dst_row) in dst.chunks_exact_mut(out.w()).enumerate() {
            let (_, _, ys) = spec.window(0, oy, h);
            columns.fill(f32::NEG_INFINITY);
            for y in ys {
                max_into(isa, &src[y * w..][..w], &mut columns);
            }
            for (ox, d) in dst_row.iter_mut().enumerate() {
                let (_, _, xs) = spec.window(1, ox, w);
                *d = columns[xs].iter().fold(f32::NEG_INFINITY, |m, &v| max_nan(m, v));
            }
        }
    }))
}

/// The larger of the running maximum `m` and `v`; a NaN `v` wins, as in
/// PyTorch's kernel.
#[inline(always)]
fn max_nan(m: f32, v: f32) -> f32 {
    if v > m || v.is_nan() { v } else { m }
}

multiversion! {
    /// `maxima[x] = max_nan(maxima[x], row[x])`, vectorised.
    fn max_into(row: &[f32], maxima: &mut [f32]) {
        for (m, &v) in maxima.iter_mut().zip(row) {
            *m = max_nan(*m, v);
        }
    }
}

/// Average pooling. With `count_include_pad` (PyTorch's default) the
/// divisor is the window clipped to the padded input; without, to the input.
pub fn avg_pool2d(input: &Tensor, spec: &PoolSpec, count_include_pad: bool) -> Result<Tensor, KernelError> {
    let out = spec.output_shape(input.shape())?;
    let (h, w) = (input.shape().h(), input.shape().w());
    Ok(map_planes(input, out, |src, dst| {
        for (oy, dst_row) in dst.chunks_exact_mut(out.w()).enumerate() {
            let (y0, y1, ys) = spec.window(0, oy, h);
            for (ox, d) in dst_row.iter_mut().enumerate() {
                let (x0, x1, xs) = spec.window(1, ox, w);
                if ys.is_empty() || xs.is_empty() {
                    *d = 0.0;
                    continue;
                }
                let sum: f32 = ys.clone().flat_map(|y| &src[y * w + xs.start..y * w + xs.end]).sum();
                let count = if count_include_pad { (y1 - y0) * (x1 - x0) } else { (ys.len() * xs.len()) as isize };
                *d = sum / count as f32;
            }
        }
    }))
}

/// The input gradient of [`max_pool2d`]: each output's gradient goes to the
/// input its window's maximum came from, the first one in row-major window
/// order (a NaN wins, as in the forward pass), as PyTorch's kernel picks it.
pub fn max_pool2d_backward(input: &Tensor, grad_output: &Tensor, spec: &PoolSpec) -> Result<Tensor, KernelError> {
    let (shape, out) = (input.shape(), spec.output_shape(input.shape())?);
    let (h, w) = (shape.h(), shape.w());
    backward_planes(shape, out, grad_output, Some(input), |go, src, g| {
        let src = src.expect("the input's values");
        for (oy, row) in go.chunks_exact(out.w()).enumerate() {
            let (_, _, ys) = spec.window(0, oy, h);
            for (ox, &d) in row.iter().enumerate() {
                let (_, _, xs) = spec.window(1, ox, w);
                g[first_maximum(src, w, ys.clone(), xs)] += d;
            }
        }
    })
}

/// The input gradient of [`avg_pool2d`] on an input of shape `input`: each
/// output's gradient spread evenly over its window, by the forward divisor.
pub fn avg_pool2d_backward(
    grad_output: &Tensor,
    input: Shape,
    spec: &PoolSpec,
    count_include_pad: bool,
) -> Result<Tensor, KernelError> {
    let (out, h, w) = (spec.output_shape(input)?, input.h(), input.w());
    backward_planes(input, out, grad_output, None, |go, _, g| {
        for (oy, row) in go.chunks_exact(out.w()).enumerate() {
            let (y0, y1, ys) = spec.window(0, oy, h);
            for (ox, &d) in row.iter().enumerate() {
                let (x0, x1, xs) = spec.window(1, ox, w);
                let count = if count_include_pad { (y1 - y0) * (x1 - x0) } else { (ys.len() * xs.len()) as isize };
                for y in ys.clone() {
                    g[y * w + xs.start..y * w + xs.end].iter_mut().for_each(|v| *v += d / count as f32);
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_instruction_set_takes_the_maxima_of_the_portable_path() {
        let row: Vec<f32> = (0..45).map(|i| if i == 7 { f32::NAN } else { ((i * 7919) % 31) as f32 - 15.0 }).collect();
        let start: Vec<f32> = (0..45).map(|i| ((i * 104_729) % 29) as f32 - 14.0).collect();
        let run = |isa: Isa| {
            let mut maxima = start.clone();
            max_into(isa, &row, &mut maxima);
            maxima.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        };
        let portable = run(Isa::Portable);
        let want: Vec<u32> = start.iter().zip(&row).map(|(&m, &v)| max_nan(m, v).to_bits()).collect();
        assert_eq!(portable, want);
        assert!(f32::from_bits(portable[7]).is_nan(), "NaN propagates");
        for isa in Isa::available() {
            assert_eq!(run(isa), portable, "{isa}");
        }
    }
}
