//! The gradients of a convolution, for training: with respect to its input
//! (the transposed convolution of the output's gradient) and to its weights
//! and bias (the correlation of the input with the output's gradient).
//!
//! A stride-1 convolution's input gradient is itself a stride-1
//! convolution, of the output's gradient with the filters flipped and their
//! channels swapped, so it runs on the forward kernels (a 3x3 in the
//! Winograd domain). A 3x3 stride-1 layer's weight gradient runs in the
//! Winograd domain too (`winograd::weight_grad`), any other on the weight
//! gradient's GEMM (`gemm::weight_grad`). The rest are plain sums, parallel
//! over planes and filters; each value is summed in a fixed order, so
//! results are the same for any thread count.

use pspnet_tensor::{Shape, Tensor};
use rayon::prelude::*;

use crate::gemm::{MicroKernel, WeightGradJob, WithKernel, weight_grad, with_kernel};
use crate::geometry::output_len;
use crate::{Conv2d, ConvAlgorithm, ConvOptions, ConvSpec, KernelError, winograd};

/// Checks that `grad_output` is what a convolution of `weight` dims
/// (`[out, in, kh, kw]`) with `spec` makes of `input`, and returns it.
fn output_shape(input: Shape, dims: [usize; 4], spec: ConvSpec, grad_output: Shape) -> Result<Shape, KernelError> {
    let [cout, cin, kh, kw] = dims;
    if input.c() != cin {
        return Err(KernelError::ChannelMismatch { input, weight: dims, expected: cin, got: input.c() });
    }
    let len = |axis: usize, name, size, k| {
        output_len("convolution", name, input, size, k, spec.stride[axis], spec.padding[axis], spec.dilation[axis])
    };
    let out = Shape::new(input.n(), cout, len(0, "height", input.h(), kh)?, len(1, "width", input.w(), kw)?)?;
    if grad_output != out {
        return Err(KernelError::ShapeMismatch { what: "output gradient", expected: out, got: grad_output });
    }
    Ok(out)
}

/// The input positions tap `k` of a kernel reads along one axis, for each
/// output position: `o * stride - padding + k * dilation`, or `None` in
/// the padding.
fn reads(out_len: usize, in_len: usize, k: usize, axis: usize, spec: ConvSpec) -> Vec<Option<usize>> {
    (0..out_len)
        .map(|o| {
            (o * spec.stride[axis] + k * spec.dilation[axis]).checked_sub(spec.padding[axis]).filter(|&i| i < in_len)
        })
        .collect()
}

/// The gradient with respect to the input (of shape `input`) of a
/// convolution with OIHW `weight` and `spec`, from the output's gradient: a
/// convolution with `options` of the mirrored, channel-swapped filters over
/// the output's gradient (spread out by the stride, with zeros between, for
/// a strided layer).
pub fn conv2d_input_grad(
    grad_output: &Tensor,
    weight: &Tensor,
    spec: ConvSpec,
    input: Shape,
    options: ConvOptions,
) -> Result<Tensor, KernelError> {
    let dims = weight.shape().dims();
    let out = output_shape(input, dims, spec, grad_output.shape())?;
    let [cout, cin, kh, kw] = dims;
    // Each input pixel gathers the outputs whose windows read it: the same
    // window, mirrored, padded by its span less the forward padding.
    let span = |axis: usize, k: usize| spec.dilation[axis] * (k - 1);
    if spec.stride == [1, 1] && spec.padding[0] <= span(0, kh) && spec.padding[1] <= span(1, kw) {
        let w = weight.as_slice();
        let flipped = Tensor::from_fn(Shape::new(cin, cout, kh, kw)?, |i, o, ky, kx| {
            w[((o * cin + i) * kh + kh - 1 - ky) * kw + kw - 1 - kx]
        });
        let padding = [span(0, kh) - spec.padding[0], span(1, kw) - spec.padding[1]];
        let transposed = ConvSpec { padding, ..spec };
        return Conv2d::with_options(flipped, transposed, options)?.forward(grad_output);
    }
    if spec.padding[0] <= span(0, kh) && spec.padding[1] <= span(1, kw) {
        // A strided layer's gradient is the stride-1 one of the output's
        // gradient spread `stride` apart, plus the rows and columns at the
        // end that the forward windows never reached.
        let spread = |axis: usize, o: usize, size: usize| {
            let reached = (o - 1) * spec.stride[axis] + 1;
            reached + (size + 2 * spec.padding[axis] - span(axis, [kh, kw][axis]) - 1) % spec.stride[axis]
        };
        let (sh, sw) = (spread(0, out.h(), input.h()), spread(1, out.w(), input.w()));
        let mut spread_grad = Tensor::zeros(out.with_hw(sh, sw)?);
        let (dy, [s0, s1]) = (grad_output.as_slice(), spec.stride);
        spread_grad.as_mut_slice().par_chunks_mut(sh * sw).zip(dy.par_chunks(out.plane_len())).for_each(
            |(plane, values)| {
                for (y, row) in values.chunks_exact(out.w()).enumerate() {
                    for (x, &v) in row.iter().enumerate() {
                        plane[y * s0 * sw + x * s1] = v;
                    }
                }
            },
        );
        let unit = ConvSpec { stride: [1, 1], ..spec };
        return conv2d_input_grad(&spread_grad, weight, unit, input, options);
    }
    let (ys, xs): (Vec<_>, Vec<_>) = (
        (0..kh).map(|k| reads(out.h(), input.h(), k, 0, spec)).collect(),
        (0..kw).map(|k| reads(out.w(), input.w(), k, 1, spec)).collect(),
    );
    let (w_in, w) = (input.w(), weight.as_slice());
    let mut grad = Tensor::zeros(input);
    grad.as_mut_slice().par_chunks_mut(input.plane_len()).enumerate().for_each(|(plane, g)| {
        let (n, i) = (plane / cin, plane % cin);
        for o in 0..cout {
            let dy = &grad_output.as_slice()[(n * cout + o) * out.plane_len()..][..out.plane_len()];
            for (ky, rows) in ys.iter().enumerate() {
                for (kx, cols) in xs.iter().enumerate() {
                    let tap = w[((o * cin + i) * kh + ky) * kw + kx];
                    for (row, &iy) in dy.chunks_exact(out.w()).zip(rows) {
                        let Some(iy) = iy else { continue };
                        for (&d, &ix) in row.iter().zip(cols) {
                            if let Some(ix) = ix {
                                g[iy * w_in + ix] += tap * d;
                            }
                        }
                    }
                }
            }
        }
    });
    Ok(grad)
}

/// The gradients with respect to the OIHW weights (`[out, in, kh, kw]` with
/// `kernel = [kh, kw]`) and to a bias of a convolution with `spec`, from its
/// input and the output's gradient, on `options`' micro-kernel: the
/// weights' in the Winograd domain where the layer allows it and `options`
/// do not ask for `Direct`, else as one GEMM; each value summed in a fixed
/// order.
pub fn conv2d_weight_grad(
    input: &Tensor,
    grad_output: &Tensor,
    spec: ConvSpec,
    kernel: [usize; 2],
    options: ConvOptions,
) -> Result<(Tensor, Vec<f32>), KernelError> {
    let shape = input.shape();
    let cout = grad_output.shape().c();
    let dims = [cout, shape.c(), kernel[0], kernel[1]];
    let out = output_shape(shape, dims, spec, grad_output.shape())?;
    struct Run<'a>(WeightGradJob<'a>, bool);
    impl WithKernel for Run<'_> {
        type Output = Vec<f32>;
        fn run<K: MicroKernel>(self) -> Vec<f32> {
            match self.1 {
                true => winograd::weight_grad::<K>(&self.0),
                false => weight_grad::<K>(&self.0),
            }
        }
    }
    let job = WeightGradJob {
        input: input.as_slice(),
        grad_output: grad_output.as_slice(),
        images: shape.n(),
        cin: shape.c(),
        cout,
        input_hw: [shape.h(), shape.w()],
        output_hw: [out.h(), out.w()],
        kernel,
        stride: spec.stride,
        padding: spec.padding,
        dilation: spec.dilation,
    };
    let winograd = options.algorithm != ConvAlgorithm::Direct && winograd::supports(kernel, spec.stride);
    let values = with_kernel(options.isa.check_available()?, Run(job, winograd));
    let weight = Tensor::from_vec(Shape::new(cout, shape.c(), kernel[0], kernel[1])?, values)?;
    let dy = |n: usize, o: usize| &grad_output.as_slice()[(n * cout + o) * out.plane_len()..][..out.plane_len()];
    let bias = (0..cout).map(|o| (0..shape.n()).flat_map(|n| dy(n, o)).sum()).collect();
    Ok((weight, bias))
}
