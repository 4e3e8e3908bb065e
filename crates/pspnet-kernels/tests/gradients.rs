//! Every backward pass against the finite differences of an independent
//! float64 forward (PyTorch's definitions written out plainly), on odd
//! sizes: relative L2 within 1e-5.

use pspnet_kernels::{
    BatchNorm, ConvAlgorithm, ConvOptions, ConvSpec, Isa, PoolSpec, Precision, Shape, Tensor,
    adaptive_avg_pool2d_backward, adaptive_max_pool2d_backward, avg_pool2d_backward, batch_norm_frozen_backward,
    batch_norm_train, batch_norm_train_backward, conv2d_input_grad, conv2d_weight_grad, max_pool2d_backward,
    relu_backward, resize_bilinear_backward, softmax_cross_entropy,
};

/// Distinct pseudo-random values in [-1, 1) (no ties for the maxima).
fn values(seed: u64, n: usize) -> Vec<f64> {
    (0..n as u64)
        .map(|i| {
            let x = (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed.wrapping_mul(0xD1B5_4A32_D192_ED03);
            (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

fn tensor(shape: Shape, data: &[f64]) -> Tensor {
    Tensor::from_vec(shape, data.iter().map(|&v| v as f32).collect()).unwrap()
}

/// `d/dx sum(f(x) * weights)` by central differences, in f64.
fn numeric_gradient(x: &[f64], weights: &[f64], f: impl Fn(&[f64]) -> Vec<f64>) -> Vec<f64> {
    let loss = |x: &[f64]| f(x).iter().zip(weights).map(|(a, b)| a * b).sum::<f64>();
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let (v, h) = (x[i], 1e-6);
            x[i] = v + h;
            let up = loss(&x);
            x[i] = v - h;
            let down = loss(&x);
            x[i] = v;
            (up - down) / (2.0 * h)
        })
        .collect()
}

fn assert_close(what: &str, got: &Tensor, want: &[f64]) {
    let err: f64 = got.as_slice().iter().zip(want).map(|(&g, w)| (g as f64 - w).powi(2)).sum::<f64>().sqrt();
    let norm: f64 = want.iter().map(|w| w * w).sum::<f64>().sqrt();
    assert!(norm > 0.0 && err <= 1e-5 * norm, "{what}: relative L2 {}", err / norm);
}

/// Per plane of `[n, c, h, w]`: `f(plane, h, w)` gives the output plane.
fn per_plane(x: &[f64], [n, c, h, w]: [usize; 4], f: impl Fn(&[f64], usize, usize) -> Vec<f64>) -> Vec<f64> {
    (0..n * c).flat_map(|p| f(&x[p * h * w..][..h * w], h, w)).collect()
}

/// PyTorch's pooling window along one axis: `[start, end)` in the padded
/// input, and the part inside the input.
fn window(o: usize, k: usize, s: usize, p: usize, len: usize) -> (isize, isize, std::ops::Range<usize>) {
    let start = (o * s) as isize - p as isize;
    let end = (start + k as isize).min((len + p) as isize);
    (start, end, start.max(0) as usize..(end.max(0) as usize).min(len))
}

/// A pooling window's `[y0, y1)` and `[x0, x1)` in the padded input.
type Bounds = (isize, isize, isize, isize);
/// A window's reduction: its values inside the input, its bounds, how many
/// values are inside.
type Reduce<'a> = dyn Fn(&[f64], Bounds, usize) -> f64 + 'a;

#[test]
fn max_and_average_pooling() {
    let dims = [2, 3, 9, 11];
    let shape = Shape::new(2, 3, 9, 11).unwrap();
    let x = values(1, shape.len());
    for spec in [PoolSpec::square(3, 2, 1), PoolSpec { ceil_mode: true, ..PoolSpec::square(2, 2, 0) }] {
        let out = spec.output_shape(shape).unwrap();
        let r = values(2, out.len());
        let pool = |x: &[f64], reduce: &Reduce| {
            per_plane(x, dims, |plane, h, w| {
                let mut o = Vec::new();
                for oy in 0..out.h() {
                    let (y0, y1, ys) = window(oy, spec.kernel[0], spec.stride[0], spec.padding[0], h);
                    for ox in 0..out.w() {
                        let (x0, x1, xs) = window(ox, spec.kernel[1], spec.stride[1], spec.padding[1], w);
                        let inside: Vec<f64> =
                            ys.clone().flat_map(|y| plane[y * w + xs.start..y * w + xs.end].to_vec()).collect();
                        o.push(reduce(&inside, (y0, y1, x0, x1), ys.len() * xs.len()));
                    }
                }
                o
            })
        };
        let max =
            |v: &[f64], _: (isize, isize, isize, isize), _: usize| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let want = numeric_gradient(&x, &r, |x| pool(x, &max));
        let got = max_pool2d_backward(&tensor(shape, &x), &tensor(out, &r), &spec).unwrap();
        assert_close(&format!("max pool {spec:?}"), &got, &want);
        for include_pad in [true, false] {
            let mean = move |v: &[f64], (y0, y1, x0, x1): Bounds, inside: usize| {
                let count = if include_pad { ((y1 - y0) * (x1 - x0)) as f64 } else { inside as f64 };
                v.iter().sum::<f64>() / count
            };
            let want = numeric_gradient(&x, &r, |x| pool(x, &mean));
            let got = avg_pool2d_backward(&tensor(out, &r), shape, &spec, include_pad).unwrap();
            assert_close(&format!("average pool {spec:?}, count_include_pad {include_pad}"), &got, &want);
        }
    }
}

#[test]
fn adaptive_pooling_with_overlapping_bins() {
    let dims = [1, 2, 7, 10];
    let shape = Shape::new(1, 2, 7, 10).unwrap();
    let x = values(3, shape.len());
    for bins in [[1, 1], [3, 4], [6, 6], [9, 3]] {
        let out = shape.with_hw(bins[0], bins[1]).unwrap();
        let r = values(4, out.len());
        let bin = |i: usize, n: usize, len: usize| (i * len) / n..((i + 1) * len).div_ceil(n);
        let pool = |x: &[f64], max: bool| {
            per_plane(x, dims, |plane, h, w| {
                let mut o = Vec::new();
                for oy in 0..bins[0] {
                    for ox in 0..bins[1] {
                        let (ys, xs) = (bin(oy, bins[0], h), bin(ox, bins[1], w));
                        let v: Vec<f64> = ys.flat_map(|y| plane[y * w + xs.start..y * w + xs.end].to_vec()).collect();
                        o.push(if max {
                            v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
                        } else {
                            v.iter().sum::<f64>() / v.len() as f64
                        });
                    }
                }
                o
            })
        };
        let got = adaptive_avg_pool2d_backward(&tensor(out, &r), shape).unwrap();
        assert_close(&format!("adaptive average {bins:?}"), &got, &numeric_gradient(&x, &r, |x| pool(x, false)));
        let got = adaptive_max_pool2d_backward(&tensor(shape, &x), &tensor(out, &r)).unwrap();
        assert_close(&format!("adaptive max {bins:?}"), &got, &numeric_gradient(&x, &r, |x| pool(x, true)));
    }
}

#[test]
fn bilinear_resize_in_both_conventions() {
    let dims = [1, 2, 5, 6];
    let shape = Shape::new(1, 2, 5, 6).unwrap();
    let x = values(5, shape.len());
    for (size, align_corners) in [([11, 13], true), ([11, 13], false), ([3, 4], true), ([3, 4], false), ([1, 1], true)]
    {
        let out = shape.with_hw(size[0], size[1]).unwrap();
        let r = values(6, out.len());
        // PyTorch's source coordinate, its two neighbours and weights.
        let source = |dst: usize, out_len: usize, in_len: usize| -> (usize, usize, f64) {
            let src = if align_corners {
                if out_len > 1 { dst as f64 * (in_len - 1) as f64 / (out_len - 1) as f64 } else { 0.0 }
            } else {
                ((dst as f64 + 0.5) * in_len as f64 / out_len as f64 - 0.5).max(0.0)
            };
            let i0 = (src.floor() as usize).min(in_len - 1);
            (i0, (i0 + 1).min(in_len - 1), src - i0 as f64)
        };
        let resize = |x: &[f64]| {
            per_plane(x, dims, |plane, h, w| {
                let mut o = Vec::new();
                for oy in 0..size[0] {
                    let (y0, y1, fy) = source(oy, size[0], h);
                    for ox in 0..size[1] {
                        let (x0, x1, fx) = source(ox, size[1], w);
                        let top = plane[y0 * w + x0] * (1.0 - fx) + plane[y0 * w + x1] * fx;
                        let bottom = plane[y1 * w + x0] * (1.0 - fx) + plane[y1 * w + x1] * fx;
                        o.push(top * (1.0 - fy) + bottom * fy);
                    }
                }
                o
            })
        };
        let got = resize_bilinear_backward(&tensor(out, &r), shape, align_corners).unwrap();
        assert_close(
            &format!("resize to {size:?}, align_corners {align_corners}"),
            &got,
            &numeric_gradient(&x, &r, resize),
        );
    }
}

#[test]
fn cross_entropy_ignores_its_index() {
    let shape = Shape::new(2, 4, 3, 5).unwrap();
    let x: Vec<f64> = values(7, shape.len()).iter().map(|v| 3.0 * v).collect();
    let labels: Vec<u16> = (0..2 * 15).map(|i| if i % 7 == 3 { 255 } else { (i * 5 % 4) as u16 }).collect();
    let valid = labels.iter().filter(|&&l| l != 255).count() as f64;
    let loss = |x: &[f64]| {
        let mut sum = 0.0;
        for (i, &label) in labels.iter().enumerate().filter(|&(_, &l)| l != 255) {
            let (n, p) = (i / 15, i % 15);
            let score = |c: usize| x[(n * 4 + c) * 15 + p];
            let total: f64 = (0..4).map(|c| score(c).exp()).sum();
            sum += total.ln() - score(label as usize);
        }
        vec![sum / valid]
    };
    let (got_loss, grad) = softmax_cross_entropy(tensor(shape, &x), &labels, 255).unwrap();
    assert!((got_loss as f64 - loss(&x)[0]).abs() <= 1e-6 * loss(&x)[0], "{got_loss} vs {:?}", loss(&x));
    assert_close("cross-entropy", &grad, &numeric_gradient(&x, &[1.0], loss));
    // Pixel 3 of image 0 and pixel 2 of image 1 are ignored.
    let ignored = (0..4).flat_map(|c| [c * 15 + 3, (4 + c) * 15 + 2]);
    assert!(ignored.map(|i| grad.as_slice()[i]).all(|g| g == 0.0), "ignored pixels get no gradient");

    let err = softmax_cross_entropy(tensor(shape, &x), &[4; 30], 255).unwrap_err().to_string();
    assert!(err.contains("label 4"), "{err}");
    assert!(softmax_cross_entropy(tensor(shape, &x), &[0; 29], 255).unwrap_err().to_string().contains("29 labels"));
    let (nothing, zero) = softmax_cross_entropy(tensor(shape, &x), &[255; 30], 255).unwrap();
    assert!(nothing.is_nan() && zero.as_slice().iter().all(|&g| g == 0.0));
}

#[test]
fn relu_passes_the_gradient_where_it_was_positive() {
    let shape = Shape::new(1, 2, 3, 3).unwrap();
    let x = values(8, shape.len());
    let r = values(9, shape.len());
    let relu = |x: &[f64]| x.iter().map(|v| v.max(0.0)).collect::<Vec<_>>();
    let got = relu_backward(&tensor(shape, &relu(&x)), tensor(shape, &r)).unwrap();
    assert_close("relu", &got, &numeric_gradient(&x, &r, relu));
    assert!(relu_backward(&tensor(shape, &x), Tensor::zeros(Shape::new(1, 2, 3, 2).unwrap())).is_err());
}

/// PyTorch's convolution (OIHW weights, no bias) in f64, and its output size.
fn conv_f64(
    x: &[f64],
    [n, c, h, w]: [usize; 4],
    wt: &[f64],
    [o, k]: [usize; 2],
    spec: ConvSpec,
) -> (Vec<f64>, [usize; 2]) {
    let len =
        |size: usize, a: usize| (size + 2 * spec.padding[a] - spec.dilation[a] * (k - 1) - 1) / spec.stride[a] + 1;
    let (oh, ow) = (len(h, 0), len(w, 1));
    let mut y = vec![0.0; n * o * oh * ow];
    for (b, oc, oy, ox) in (0..n)
        .flat_map(|b| (0..o).flat_map(move |oc| (0..oh).flat_map(move |oy| (0..ow).map(move |ox| (b, oc, oy, ox)))))
    {
        let mut sum = 0.0;
        for (ic, ky, kx) in (0..c).flat_map(|ic| (0..k).flat_map(move |ky| (0..k).map(move |kx| (ic, ky, kx)))) {
            let iy = (oy * spec.stride[0] + ky * spec.dilation[0]).checked_sub(spec.padding[0]).filter(|&v| v < h);
            let ix = (ox * spec.stride[1] + kx * spec.dilation[1]).checked_sub(spec.padding[1]).filter(|&v| v < w);
            if let (Some(iy), Some(ix)) = (iy, ix) {
                sum += wt[((oc * c + ic) * k + ky) * k + kx] * x[((b * c + ic) * h + iy) * w + ix];
            }
        }
        y[((b * o + oc) * oh + oy) * ow + ox] = sum;
    }
    (y, [oh, ow])
}

/// Strided, dilated, padded and 1x1 convolutions: the input, weight and
/// bias gradients.
#[test]
fn convolution_gradients() {
    let cases = [
        (3, ConvSpec::default().padding(1)),
        (3, ConvSpec::default().stride(2).padding(1)),
        (3, ConvSpec::default().padding(2).dilation(2)),
        (1, ConvSpec::default().stride(2)),
        (7, ConvSpec::default().stride(2).padding(3)),
        (3, ConvSpec::default()),
        (1, ConvSpec::default()),
        // Padding beyond the window's span: the input gradient's plain sums.
        (1, ConvSpec::default().stride(2).padding(1)),
    ];
    for (k, spec) in cases {
        let (dims, o) = ([2, 3, 9, 8], 4);
        let shape = Shape::new(2, 3, 9, 8).unwrap();
        let x = values(10, shape.len());
        let wt = values(11, o * 3 * k * k);
        let (_, [oh, ow]) = conv_f64(&x, dims, &wt, [o, k], spec);
        let out = Shape::new(2, o, oh, ow).unwrap();
        let r = values(12, out.len());
        let weight = tensor(Shape::new(o, 3, k, k).unwrap(), &wt);
        let got = conv2d_input_grad(&tensor(out, &r), &weight, spec, shape, ConvOptions::default()).unwrap();
        let want = numeric_gradient(&x, &r, |x| conv_f64(x, dims, &wt, [o, k], spec).0);
        assert_close(&format!("input gradient, {k}x{k} {spec:?}"), &got, &want);
        let (got, bias) =
            conv2d_weight_grad(&tensor(shape, &x), &tensor(out, &r), spec, [k, k], ConvOptions::default()).unwrap();
        let want = numeric_gradient(&wt, &r, |wt| conv_f64(&x, dims, wt, [o, k], spec).0);
        assert_close(&format!("weight gradient, {k}x{k} {spec:?}"), &got, &want);
        let want: Vec<f64> =
            (0..o).map(|c| (0..2).flat_map(|b| &r[(b * o + c) * oh * ow..][..oh * ow]).sum()).collect();
        assert_close(
            "bias gradient",
            &tensor(Shape::new(1, o, 1, 1).unwrap(), &bias.iter().map(|&v| v as f64).collect::<Vec<_>>()),
            &want,
        );
    }
    let weight = Tensor::zeros(Shape::new(4, 3, 3, 3).unwrap());
    let wrong = Tensor::zeros(Shape::new(2, 4, 5, 5).unwrap());
    let err = conv2d_input_grad(
        &wrong,
        &weight,
        ConvSpec::default().padding(1),
        Shape::new(2, 3, 9, 8).unwrap(),
        ConvOptions::default(),
    );
    assert!(err.unwrap_err().to_string().contains("output gradient"));
}

/// Training-mode batch-norm in f64: normalised by the batch's mean and
/// biased variance, then `* gamma + beta`.
fn batch_norm_f64(x: &[f64], [n, c, h, w]: [usize; 4], gamma: &[f64], beta: &[f64]) -> Vec<f64> {
    let plane = h * w;
    let at = |b: usize, ch: usize| (b * c + ch) * plane;
    let mut y = vec![0.0; x.len()];
    for ch in 0..c {
        let values: Vec<f64> = (0..n).flat_map(|b| x[at(b, ch)..][..plane].to_vec()).collect();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
        for b in 0..n {
            for i in 0..plane {
                y[at(b, ch) + i] = (x[at(b, ch) + i] - mean) / (var + 1e-5).sqrt() * gamma[ch] + beta[ch];
            }
        }
    }
    y
}

/// The three gradients of training-mode batch-norm, and PyTorch's update of
/// the running statistics (momentum 0.1, unbiased variance).
#[test]
fn batch_norm_in_training_mode() {
    let dims = [2, 3, 3, 5];
    let shape = Shape::new(2, 3, 3, 5).unwrap();
    let x: Vec<f64> =
        values(13, shape.len()).iter().enumerate().map(|(i, v)| v * (1.0 + (i % 3) as f64) + 0.3).collect();
    let (gamma, beta) = (values(14, 3), values(15, 3));
    let r = values(16, shape.len());
    let f32s = |v: &[f64]| v.iter().map(|&v| v as f32).collect::<Vec<_>>();
    let (y, stats) = batch_norm_train(&tensor(shape, &x), &f32s(&gamma), &f32s(&beta), 1e-5).unwrap();
    assert_close("batch-norm output", &y, &batch_norm_f64(&x, dims, &gamma, &beta));
    let (dx, dgamma, dbeta) =
        batch_norm_train_backward(&tensor(shape, &x), &tensor(shape, &r), &f32s(&gamma), &stats).unwrap();
    assert_close(
        "batch-norm input gradient",
        &dx,
        &numeric_gradient(&x, &r, |x| batch_norm_f64(x, dims, &gamma, &beta)),
    );
    let vector = |v: &[f32]| tensor(Shape::new(1, 3, 1, 1).unwrap(), &v.iter().map(|&v| v as f64).collect::<Vec<_>>());
    assert_close(
        "batch-norm weight gradient",
        &vector(&dgamma),
        &numeric_gradient(&gamma, &r, |g| batch_norm_f64(&x, dims, g, &beta)),
    );
    assert_close(
        "batch-norm bias gradient",
        &vector(&dbeta),
        &numeric_gradient(&beta, &r, |b| batch_norm_f64(&x, dims, &gamma, b)),
    );

    // Channel 0's 30 values: mean and unbiased variance by hand.
    let values0: Vec<f64> = (0..2).flat_map(|b| x[b * 45..][..15].to_vec()).collect();
    let mean = values0.iter().sum::<f64>() / 30.0;
    let unbiased = values0.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 29.0;
    let (mut running_mean, mut running_var) = (vec![0.5; 3], vec![2.0; 3]);
    stats.update_running(&mut running_mean, &mut running_var, 0.1);
    assert!((running_mean[0] as f64 - (0.9 * 0.5 + 0.1 * mean)).abs() < 1e-6);
    assert!((running_var[0] as f64 - (0.9 * 2.0 + 0.1 * unbiased)).abs() < 1e-6);

    let single = Tensor::zeros(Shape::new(1, 3, 1, 1).unwrap());
    let err = batch_norm_train(&single, &[1.0; 3], &[0.0; 3], 1e-5).unwrap_err().to_string();
    assert!(err.contains("at least 2"), "{err}");
}

/// Frozen batch-norm (running statistics): its three gradients.
#[test]
fn batch_norm_with_frozen_statistics() {
    let dims = [2, 3, 2, 3];
    let shape = Shape::new(2, 3, 2, 3).unwrap();
    let x = values(17, shape.len());
    let (gamma, beta, mean) = (values(18, 3), values(19, 3), values(20, 3));
    let var: Vec<f64> = values(21, 3).iter().map(|v| v + 1.5).collect();
    let r = values(22, shape.len());
    let frozen = |x: &[f64], gamma: &[f64], beta: &[f64]| {
        let plane = dims[2] * dims[3];
        x.iter()
            .enumerate()
            .map(|(i, v)| {
                let c = i / plane % 3;
                (v - mean[c]) / (var[c] + 1e-5).sqrt() * gamma[c] + beta[c]
            })
            .collect::<Vec<_>>()
    };
    let f32s = |v: &[f64]| v.iter().map(|&v| v as f32).collect::<Vec<_>>();
    let bn = BatchNorm { gamma: f32s(&gamma), beta: f32s(&beta), mean: f32s(&mean), var: f32s(&var), eps: 1e-5 };
    let (dx, dgamma, dbeta) = batch_norm_frozen_backward(&tensor(shape, &x), &tensor(shape, &r), &bn).unwrap();
    assert_close("frozen input gradient", &dx, &numeric_gradient(&x, &r, |x| frozen(x, &gamma, &beta)));
    let vector = |v: &[f32]| tensor(Shape::new(1, 3, 1, 1).unwrap(), &v.iter().map(|&v| v as f64).collect::<Vec<_>>());
    assert_close("frozen weight gradient", &vector(&dgamma), &numeric_gradient(&gamma, &r, |g| frozen(&x, g, &beta)));
    assert_close("frozen bias gradient", &vector(&dbeta), &numeric_gradient(&beta, &r, |b| frozen(&x, &gamma, b)));
}

/// The weight gradient, as a GEMM (`Direct`) and, where the layer allows,
/// in the Winograd domain (`Auto`), on every instruction set this CPU has,
/// against the gradient summed in f64 straight from its definition: on a
/// shape of few columns split into row groups (70 output channels, 5 x 3 x
/// 3 columns, 2 x 20 x 18 pixels: several tiles and pixel slices), and on
/// one of many column blocks (180 x 3 x 3 columns); plain, dilated, and
/// strided and dilated.
#[test]
fn weight_gradient_on_every_instruction_set() {
    let cases = [(5, 20, 18, 70), (180, 9, 8, 20)];
    let specs = [
        ConvSpec::default().padding(1),
        ConvSpec::default().padding(2).dilation(2),
        ConvSpec::default().stride(2).padding(2).dilation(2),
    ];
    for ((cin, h, w, cout), spec) in cases.into_iter().flat_map(|c| specs.map(|s| (c, s))) {
        let (n, k) = (2, 3);
        let shape = Shape::new(n, cin, h, w).unwrap();
        let x = values(20, shape.len());
        let (_, [oh, ow]) = conv_f64(&x, [n, cin, h, w], &vec![0.0; cout * cin * k * k], [cout, k], spec);
        let out = Shape::new(n, cout, oh, ow).unwrap();
        let dy = values(21, out.len());
        let mut want = vec![0.0f64; cout * cin * k * k];
        for (b, o, i, ky, kx) in (0..n).flat_map(|b| {
            (0..cout).flat_map(move |o| {
                (0..cin).flat_map(move |i| (0..k).flat_map(move |ky| (0..k).map(move |kx| (b, o, i, ky, kx))))
            })
        }) {
            for (oy, ox) in (0..oh).flat_map(|oy| (0..ow).map(move |ox| (oy, ox))) {
                let y = (oy * spec.stride[0] + ky * spec.dilation[0]) as isize - spec.padding[0] as isize;
                let xx = (ox * spec.stride[1] + kx * spec.dilation[1]) as isize - spec.padding[1] as isize;
                if y >= 0 && xx >= 0 && (y as usize) < h && (xx as usize) < w {
                    want[((o * cin + i) * k + ky) * k + kx] += dy[((b * cout + o) * oh + oy) * ow + ox]
                        * x[((b * cin + i) * h + y as usize) * w + xx as usize];
                }
            }
        }
        for (isa, algorithm) in
            Isa::available().into_iter().flat_map(|isa| [ConvAlgorithm::Direct, ConvAlgorithm::Auto].map(|a| (isa, a)))
        {
            let options = ConvOptions { isa, algorithm, precision: Precision::F32 };
            let (got, _) = conv2d_weight_grad(&tensor(shape, &x), &tensor(out, &dy), spec, [k, k], options).unwrap();
            assert_close(&format!("weight gradient, {algorithm:?} on {}, {spec:?}", isa.name()), &got, &want);
        }
    }
}
