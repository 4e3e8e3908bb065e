//! Pooling, resize and channel reductions against naive f64 oracles written
//! from PyTorch's documented formulas, over random shapes.

mod common;

use common::{assert_close, tensor, values};
use proptest::prelude::*;
use pspnet_kernels::{
    ConvOptions, ConvSpec, KernelError, PoolSpec, Shape, Tensor, UpsampledConv, adaptive_avg_pool2d,
    adaptive_avg_pool2d_levels, adaptive_max_pool2d, adaptive_max_pool2d_levels, argmax_channels, avg_pool2d,
    max_pool2d, resize_bilinear, resize_bilinear_argmax, resize_bilinear_into, softmax_channels,
};

fn dims_and_values(max_hw: usize) -> impl Strategy<Value = ([usize; 4], Vec<f32>)> {
    (1usize..3, 1usize..4, 1usize..max_hw, 1usize..max_hw)
        .prop_flat_map(|(n, c, h, w)| (Just([n, c, h, w]), values(n * c * h * w)))
}

/// Applies `f(plane, h, w) -> (out_h, out_w, values)` to every plane.
fn per_plane(x: &Tensor, f: impl Fn(&[f64], usize, usize) -> (usize, usize, Vec<f64>)) -> (Vec<f64>, [usize; 2]) {
    let [_, _, h, w] = x.shape().dims();
    let mut out = Vec::new();
    let mut hw = [0, 0];
    for plane in x.as_slice().chunks_exact(h * w) {
        let p: Vec<f64> = plane.iter().map(|&v| v as f64).collect();
        let (oh, ow, v) = f(&p, h, w);
        hw = [oh, ow];
        out.extend(v);
    }
    (out, hw)
}

/// Pooling output length, straight from PyTorch's `pooling_output_shape`.
fn pool_len(size: usize, k: usize, s: usize, p: usize, ceil: bool) -> usize {
    let num = (size + 2 * p - k) as f64 / s as f64;
    let mut out = if ceil { num.ceil() } else { num.floor() } as usize + 1;
    if ceil && (out - 1) * s >= size + p {
        out -= 1;
    }
    out
}

fn pool_f64(x: &Tensor, k: usize, s: usize, p: usize, ceil: bool, kind: &str) -> (Vec<f64>, [usize; 2]) {
    per_plane(x, |plane, h, w| {
        let (oh, ow) = (pool_len(h, k, s, p, ceil), pool_len(w, k, s, p, ceil));
        let mut out = Vec::new();
        for oy in 0..oh {
            for ox in 0..ow {
                let (y0, x0) = ((oy * s) as i64 - p as i64, (ox * s) as i64 - p as i64);
                let (y1, x1) = ((y0 + k as i64).min((h + p) as i64), (x0 + k as i64).min((w + p) as i64));
                let padded_count = ((y1 - y0) * (x1 - x0)) as f64;
                let mut vals = Vec::new();
                for y in y0.max(0)..y1.min(h as i64) {
                    for xx in x0.max(0)..x1.min(w as i64) {
                        vals.push(plane[y as usize * w + xx as usize]);
                    }
                }
                out.push(match kind {
                    "max" => vals.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    "avg_incl" if vals.is_empty() => 0.0,
                    "avg_incl" => vals.iter().sum::<f64>() / padded_count,
                    _ if vals.is_empty() => 0.0,
                    _ => vals.iter().sum::<f64>() / vals.len() as f64,
                });
            }
        }
        (oh, ow, out)
    })
}

fn adaptive_f64(x: &Tensor, oh: usize, ow: usize, max: bool) -> Vec<f64> {
    per_plane(x, |plane, h, w| {
        let mut out = Vec::new();
        for i in 0..oh {
            let (y0, y1) =
                (((i * h) as f64 / oh as f64).floor() as usize, (((i + 1) * h) as f64 / oh as f64).ceil() as usize);
            for j in 0..ow {
                let (x0, x1) =
                    (((j * w) as f64 / ow as f64).floor() as usize, (((j + 1) * w) as f64 / ow as f64).ceil() as usize);
                let vals: Vec<f64> =
                    (y0..y1).flat_map(|y| (x0..x1).map(move |xx| (y, xx))).map(|(y, xx)| plane[y * w + xx]).collect();
                out.push(if max {
                    vals.iter().copied().fold(f64::NEG_INFINITY, f64::max)
                } else {
                    vals.iter().sum::<f64>() / vals.len() as f64
                });
            }
        }
        (oh, ow, out)
    })
    .0
}

fn bilinear_f64(x: &Tensor, oh: usize, ow: usize, align: bool) -> Vec<f64> {
    let src = |dst: usize, out: usize, input: usize| -> f64 {
        if align {
            if out > 1 { dst as f64 * (input - 1) as f64 / (out - 1) as f64 } else { 0.0 }
        } else {
            ((dst as f64 + 0.5) * input as f64 / out as f64 - 0.5).max(0.0)
        }
    };
    per_plane(x, |plane, h, w| {
        let mut out = Vec::new();
        for oy in 0..oh {
            let sy = src(oy, oh, h);
            let (y0, ly) = ((sy.floor() as usize).min(h - 1), sy - sy.floor());
            let y1 = (y0 + 1).min(h - 1);
            for ox in 0..ow {
                let sx = src(ox, ow, w);
                let (x0, lx) = ((sx.floor() as usize).min(w - 1), sx - sx.floor());
                let x1 = (x0 + 1).min(w - 1);
                let at = |y: usize, xx: usize| plane[y * w + xx];
                out.push(
                    (1.0 - ly) * ((1.0 - lx) * at(y0, x0) + lx * at(y0, x1))
                        + ly * ((1.0 - lx) * at(y1, x0) + lx * at(y1, x1)),
                );
            }
        }
        (oh, ow, out)
    })
    .0
}

/// `conv(resize_bilinear(x))` in f64, upsampling first as the definition
/// says; returns the values and, per value, the sum of `|w * up|` that bounds
/// its rounding error.
fn upsampled_conv_f64(
    x: &Tensor,
    w: &Tensor,
    size: [usize; 2],
    align: bool,
    p: usize,
    d: usize,
) -> (Vec<f64>, Vec<f64>) {
    let [n, c, _, _] = x.shape().dims();
    let [o, _, k, _] = w.shape().dims();
    let [h, wd] = size;
    let up = bilinear_f64(x, h, wd, align);
    let (oh, ow) = (h + 2 * p - d * (k - 1), wd + 2 * p - d * (k - 1));
    let (mut out, mut mag) = (Vec::new(), Vec::new());
    for b in 0..n {
        for oc in 0..o {
            for y in 0..oh {
                for xx in 0..ow {
                    let (mut sum, mut m) = (0.0, 0.0);
                    for ci in 0..c {
                        for ky in 0..k {
                            for kx in 0..k {
                                let (iy, ix) =
                                    ((y + ky * d) as isize - p as isize, (xx + kx * d) as isize - p as isize);
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                    continue;
                                }
                                let v = up[((b * c + ci) * h + iy as usize) * wd + ix as usize];
                                let product = w.view()[[oc, ci, ky, kx]] as f64 * v;
                                sum += product;
                                m += product.abs();
                            }
                        }
                    }
                    out.push(sum);
                    mag.push(m);
                }
            }
        }
    }
    (out, mag)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// The convolution of an upsampled map, computed at the map's size, is
    /// the convolution of the upsampled map (added to what `out` held).
    #[test]
    fn upsampled_convolution_matches_upsampling_first(
        (dims, v) in dims_and_values(7),
        (o, k) in (1usize..4, prop_oneof![Just(1usize), Just(3)]),
        size in (1usize..20, 1usize..20),
        (p, d) in (0usize..3, 1usize..3),
        align: bool,
        weights in values(3 * 3 * 3 * 9),
    ) {
        let size = [size.0, size.1];
        prop_assume!(size.iter().all(|&s| s + 2 * p > d * (k - 1)));
        let x = tensor(dims, &v);
        let w = tensor([o, dims[1], k, k], &weights);
        let conv = UpsampledConv::new(&w, ConvSpec::default().padding(p).dilation(d), align, ConvOptions::default()).unwrap();
        let shape = conv.output_shape(x.shape(), size).unwrap();
        let mut out = Tensor::filled(shape, 0.5);
        conv.accumulate(&x, size, &mut out).unwrap();
        let (want, mag) = upsampled_conv_f64(&x, &w, size, align, p, d);
        prop_assert_eq!(shape.dims(), [dims[0], o, size[0] + 2 * p - d * (k - 1), size[1] + 2 * p - d * (k - 1)]);
        let want: Vec<f64> = want.iter().map(|v| v + 0.5).collect();
        assert_close(out.as_slice(), &want, |i| 1e-6 * (mag[i] + 1.0), "upsampled convolution");
    }

    #[test]
    fn pooling_matches_reference((dims, v) in dims_and_values(16), k in 1usize..5, s in 1usize..4, p in 0usize..3, ceil: bool) {
        let x = tensor(dims, &v);
        let spec = PoolSpec { kernel: [k, k], stride: [s, s], padding: [p, p], ceil_mode: ceil };
        let fits = dims[2] + 2 * p >= k && dims[3] + 2 * p >= k;
        if p > k / 2 || !fits {
            prop_assert!(max_pool2d(&x, &spec).is_err());
            prop_assert!(avg_pool2d(&x, &spec, true).is_err());
            return Ok(());
        }
        for (kind, got) in [
            ("max", max_pool2d(&x, &spec).unwrap()),
            ("avg_incl", avg_pool2d(&x, &spec, true).unwrap()),
            ("avg_excl", avg_pool2d(&x, &spec, false).unwrap()),
        ] {
            let (want, hw) = pool_f64(&x, k, s, p, ceil, kind);
            prop_assert_eq!([got.shape().h(), got.shape().w()], hw);
            assert_close(got.as_slice(), &want, |_| 1e-6, kind);
        }
    }

    #[test]
    fn adaptive_pooling_matches_reference((dims, v) in dims_and_values(20), oh in 1usize..8, ow in 1usize..8) {
        let x = tensor(dims, &v);
        assert_close(adaptive_avg_pool2d(&x, [oh, ow]).unwrap().as_slice(), &adaptive_f64(&x, oh, ow, false), |_| 1e-6, "avg");
        assert_close(adaptive_max_pool2d(&x, [oh, ow]).unwrap().as_slice(), &adaptive_f64(&x, oh, ow, true), |_| 0.0, "max");
    }

    /// A pyramid's levels pooled in one pass: each level against the f64
    /// oracle, and bit for bit what one call per level gives.
    #[test]
    fn pooling_several_levels_at_once_matches_reference((dims, v) in dims_and_values(20), sizes in proptest::collection::vec((1usize..8, 1usize..8), 1..5)) {
        let x = tensor(dims, &v);
        let sizes: Vec<[usize; 2]> = sizes.into_iter().map(|(h, w)| [h, w]).collect();
        let (avg, max) = (adaptive_avg_pool2d_levels(&x, &sizes).unwrap(), adaptive_max_pool2d_levels(&x, &sizes).unwrap());
        prop_assert_eq!((avg.len(), max.len()), (sizes.len(), sizes.len()));
        for (i, &[oh, ow]) in sizes.iter().enumerate() {
            assert_close(avg[i].as_slice(), &adaptive_f64(&x, oh, ow, false), |_| 1e-6, "avg level");
            assert_close(max[i].as_slice(), &adaptive_f64(&x, oh, ow, true), |_| 0.0, "max level");
            let single = adaptive_avg_pool2d(&x, [oh, ow]).unwrap();
            prop_assert_eq!(avg[i].as_slice(), single.as_slice());
        }
    }

    /// Resizing into a slot of a wider tensor writes exactly the slot.
    #[test]
    fn bilinear_into_a_slot_matches_reference((dims, v) in dims_and_values(12), oh in 1usize..30, ow in 1usize..30, before in 0usize..3, after in 0usize..3, align: bool) {
        let x = tensor(dims, &v);
        let [n, c, _, _] = dims;
        let mut out = Tensor::filled(pspnet_kernels::Shape::new(n, before + c + after, oh, ow).unwrap(), 7.0);
        resize_bilinear_into(&x, &mut out, before, align).unwrap();
        let want = bilinear_f64(&x, oh, ow, align);
        let plane = oh * ow;
        for (image, got) in out.as_slice().chunks_exact((before + c + after) * plane).enumerate() {
            prop_assert!(got[..before * plane].iter().chain(&got[(before + c) * plane..]).all(|&v| v == 7.0));
            assert_close(&got[before * plane..(before + c) * plane], &want[image * c * plane..(image + 1) * c * plane], |_| 2e-6, "into");
        }
    }

    #[test]
    fn bilinear_matches_reference((dims, v) in dims_and_values(12), oh in 1usize..30, ow in 1usize..30, align: bool) {
        let x = tensor(dims, &v);
        let got = resize_bilinear(&x, [oh, ow], align).unwrap();
        assert_close(got.as_slice(), &bilinear_f64(&x, oh, ow, align), |_| 2e-6, "bilinear");
    }

    #[test]
    fn fused_resize_argmax_equals_the_two_steps((dims, v) in dims_and_values(10), oh in 1usize..40, ow in 1usize..40, align: bool) {
        let x = tensor(dims, &v);
        let fused = resize_bilinear_argmax(&x, [oh, ow], align).unwrap();
        let two_steps = argmax_channels(&resize_bilinear(&x, [oh, ow], align).unwrap());
        prop_assert_eq!(fused, two_steps);
    }

    #[test]
    fn softmax_and_argmax_match_reference((dims, v) in dims_and_values(9)) {
        let x = tensor(dims, &v);
        let [n, c, h, w] = dims;
        let soft = softmax_channels(&x);
        let labels = argmax_channels(&x);
        let at = |b: usize, ch: usize, p: usize| x.as_slice()[(b * c + ch) * h * w + p] as f64;
        for b in 0..n {
            for p in 0..h * w {
                let max = (0..c).map(|ch| at(b, ch, p)).fold(f64::NEG_INFINITY, f64::max);
                let first = (0..c).find(|&ch| at(b, ch, p) == max).unwrap();
                prop_assert_eq!(labels[[b, p / w, p % w]] as usize, first);
                let sum: f64 = (0..c).map(|ch| (at(b, ch, p) - max).exp()).sum();
                for ch in 0..c {
                    let want = (at(b, ch, p) - max).exp() / sum;
                    let got = soft.as_slice()[(b * c + ch) * h * w + p] as f64;
                    prop_assert!((got - want).abs() < 1e-6, "softmax {} vs {}", got, want);
                }
            }
        }
    }
}

#[test]
fn argmax_prefers_the_first_maximum_and_nan() {
    // Two channels over three pixels: tie, NaN in channel 1, plain maximum.
    let x = tensor([1, 2, 1, 3], &[1.0, 0.0, 5.0, 1.0, f32::NAN, 4.0]);
    assert_eq!(argmax_channels(&x).into_raw_vec_and_offset().0, vec![0, 1, 0]);
}

#[test]
fn large_maps_cross_parallel_chunks() {
    // 2 x 3 x 70 x 90 = several 4096-pixel chunks per image.
    let x = common::random_tensor([2, 3, 70, 90], 5);
    let soft = softmax_channels(&x);
    let plane = 70 * 90;
    for b in 0..2 {
        for p in [0, 4095, 4096, plane - 1] {
            let sum: f32 = (0..3).map(|c| soft.as_slice()[(b * 3 + c) * plane + p]).sum();
            assert!((sum - 1.0).abs() < 1e-6);
        }
    }
    let labels = argmax_channels(&x);
    let (b, y, xx) = (1, 69, 89);
    let scores: Vec<f32> = (0..3).map(|c| x.view()[[b, c, y, xx]]).collect();
    let best = (0..3).fold(0, |best, c| if scores[c] > scores[best] { c } else { best });
    assert_eq!(labels[[b, y, xx]] as usize, best);
}

#[test]
fn bad_parameters_are_errors() {
    let x = tensor([1, 1, 4, 4], &[0.0]);
    assert!(matches!(adaptive_avg_pool2d(&x, [0, 2]), Err(KernelError::InvalidParameter { .. })));
    assert!(matches!(resize_bilinear(&x, [3, 0], true), Err(KernelError::InvalidParameter { .. })));
    assert!(matches!(adaptive_avg_pool2d_levels(&x, &[[2, 2], [0, 1]]), Err(KernelError::InvalidParameter { .. })));
    let mut narrow = Tensor::zeros(pspnet_kernels::Shape::new(1, 2, 4, 4).unwrap());
    assert!(resize_bilinear_into(&x, &mut narrow, 2, false).is_err(), "channels past the end of the target");
    assert!(matches!(max_pool2d(&x, &PoolSpec::square(0, 1, 0)), Err(KernelError::InvalidParameter { .. })));
    assert!(matches!(max_pool2d(&x, &PoolSpec::square(2, 0, 0)), Err(KernelError::InvalidParameter { .. })));
    assert!(matches!(max_pool2d(&x, &PoolSpec::square(3, 1, 2)), Err(KernelError::InvalidParameter { .. })));
    let err = max_pool2d(&x, &PoolSpec::square(5, 1, 0)).unwrap_err();
    assert!(matches!(err, KernelError::WindowLargerThanInput { what: "pooling", .. }), "{err}");
}

#[test]
fn upsampled_convolution_refuses_bad_shapes() {
    let w = tensor([4, 3, 3, 3], &[0.5]);
    assert!(matches!(
        UpsampledConv::new(&w, ConvSpec::default().stride(2), true, ConvOptions::default()),
        Err(KernelError::InvalidParameter { what, .. }) if what.contains("stride")
    ));
    let conv = UpsampledConv::new(&w, ConvSpec::default().padding(1), false, ConvOptions::default()).unwrap();
    let x = tensor([1, 3, 2, 2], &[1.0]);
    let wrong_channels = tensor([1, 2, 2, 2], &[1.0]);
    let mut out = Tensor::zeros(Shape::new(1, 4, 8, 8).unwrap());
    assert!(matches!(conv.accumulate(&wrong_channels, [8, 8], &mut out), Err(KernelError::ChannelMismatch { .. })));
    assert!(matches!(conv.accumulate(&x, [8, 0], &mut out), Err(KernelError::InvalidParameter { .. })));
    let err = conv.accumulate(&x, [8, 9], &mut out).unwrap_err();
    assert!(err.to_string().contains("output"), "{err}");
    conv.accumulate(&x, [8, 8], &mut out).unwrap();
}
