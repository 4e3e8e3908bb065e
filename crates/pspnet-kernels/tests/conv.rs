//! Convolution against a naive f64 oracle, on every instruction set this CPU has.

mod common;

use common::{assert_close, conv2d_f64, random_tensor, tensor, values};
use proptest::prelude::*;
use pspnet_kernels::{
    BF16_WINOGRAD_MIN_CHANNELS, Conv2d, ConvAlgorithm, ConvSpec, Isa, KernelError, Precision, Shape, Tensor,
};

/// f32 rounding bound for a sum of `k` products whose magnitudes add to
/// `mag`: each addition loses at most one unit roundoff (2^-24) of the
/// running magnitude, so `k * 2^-24 * mag` (plus slack for the epilogue).
fn conv_tolerance(k: usize, mag: f64) -> f64 {
    (k as f64 + 4.0) * 6.0e-8 * mag + 1e-6
}

#[derive(Debug, Clone)]
struct Case {
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
}

fn case() -> impl Strategy<Value = Case> {
    let channels = prop_oneof![3 => 1usize..6, 1 => 6usize..80];
    (
        1usize..=2,
        channels,
        prop_oneof![3 => 1usize..12, 1 => 12usize..40],
        1usize..14,
        1usize..14,
        [1usize..5, 1usize..5],
        [1usize..4, 1usize..4],
        [0usize..7, 0usize..7],
        [prop_oneof![3 => 1usize..4, 1 => 4usize..17], prop_oneof![3 => 1usize..4, 1 => 4usize..17]],
    )
        .prop_map(|(n, cin, cout, h, w, kernel, stride, padding, dilation)| Case {
            n,
            cin,
            cout,
            h,
            w,
            kernel,
            stride,
            padding,
            dilation,
        })
}

fn fits(c: &Case) -> bool {
    (0..2).all(|a| {
        let size = [c.h, c.w][a];
        size + 2 * c.padding[a] > c.dilation[a] * (c.kernel[a] - 1)
    })
}

fn spec(c: &Case) -> ConvSpec {
    ConvSpec { stride: c.stride, padding: c.padding, dilation: c.dilation }
}

/// How much looser than the direct sum's bound a Winograd layer may round,
/// by the side of its output tiles. Its transforms mix a whole 6x6 or 7x7
/// patch before the sum and a whole tile after it (scaling by up to 8 or
/// 16), so an output's error follows the largest magnitude in its channel
/// rather than its own taps' (an output whose taps all fall in the padding
/// is exactly 0 directly, not in the Winograd domain). Applied to the
/// channel's largest magnitude, each slack is twice the worst ratio seen in
/// 20,000 random cases for F(4x4, 3x3) (between 1 and 2) and in 3,000
/// cases of `winograd_case` for F(5x5, 3x3) (between 8 and 12, on a single
/// input channel, where no sum over channels averages the rounding out).
fn winograd_slack(tile: Option<usize>) -> f64 {
    match tile {
        None => 1.0,
        Some(4) => 4.0,
        Some(_) => 24.0,
    }
}

fn check_case(c: &Case, x: &[f32], w: &[f32], extras: &[f32]) {
    let input = tensor([c.n, c.cin, c.h, c.w], x);
    let weight = tensor([c.cout, c.cin, c.kernel[0], c.kernel[1]], w);
    for isa in Isa::available() {
        for algorithm in [ConvAlgorithm::Direct, ConvAlgorithm::Auto] {
            let conv = Conv2d::with_isa(&weight, spec(c), isa).unwrap().with_algorithm(algorithm).unwrap();
            if algorithm == ConvAlgorithm::Auto && !conv.is_winograd() {
                continue;
            }
            let slack = if fits(c) { winograd_slack(conv.winograd_tile(input.shape()).unwrap()) } else { 1.0 };
            check_algorithm(c, &conv, &format!("{isa} {algorithm:?}"), &input, &weight, extras, slack);
        }
    }
}

fn check_algorithm(c: &Case, conv: &Conv2d, what: &str, input: &Tensor, weight: &Tensor, extras: &[f32], slack: f64) {
    if !fits(c) {
        assert!(matches!(conv.forward(input), Err(KernelError::WindowLargerThanInput { .. })), "{c:?}");
        return;
    }
    let (want, mut mag, dims) = conv2d_f64(input, weight, c.stride, c.padding, c.dilation);
    let k = c.cin * c.kernel[0] * c.kernel[1];
    if slack > 1.0 {
        for plane in mag.chunks_mut(dims[2] * dims[3]) {
            let largest = plane.iter().copied().fold(0.0, f64::max);
            plane.fill(largest);
        }
    }
    let got = conv.forward(input).unwrap();
    assert_eq!(got.shape().dims(), dims, "{what}: {c:?}");
    assert_close(got.as_slice(), &want, |i| slack * conv_tolerance(k, mag[i]), &format!("{what} plain {c:?}"));

    // The fused epilogue: relu(conv * scale + shift + residual).
    let scale: Vec<f32> = (0..c.cout).map(|i| extras[i % extras.len()] * 2.0).collect();
    let shift: Vec<f32> = (0..c.cout).map(|i| extras[(i + 1) % extras.len()]).collect();
    let residual = tensor(dims, &extras[2..]);
    let fused = conv.clone().with_scale_shift(&scale, &shift).unwrap().with_relu(true);
    let got = fused.forward_with_residual(input, &residual).unwrap();
    let plane = dims[2] * dims[3];
    let want: Vec<f64> = want
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let ch = (i / plane) % c.cout;
            (v * scale[ch] as f64 + shift[ch] as f64 + residual.as_slice()[i] as f64).max(0.0)
        })
        .collect();
    let tol = |i: usize| slack * conv_tolerance(k, mag[i]) * 2.0 * scale[(i / plane) % c.cout].abs() as f64 + 1e-6;
    assert_close(got.as_slice(), &want, tol, &format!("{what} fused {c:?}"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn conv_matches_f64_reference_on_every_isa(
        (c, x, w, extras) in case().prop_flat_map(|c| {
            let (xl, wl) = (c.n * c.cin * c.h * c.w, c.cout * c.cin * c.kernel[0] * c.kernel[1]);
            (Just(c), values(xl), values(wl), values(8))
        })
    ) {
        check_case(&c, &x, &w, &extras);
    }
}

/// 3x3 stride-1 layers on maps large enough that many take F(5x5, 3x3)
/// tiles (the shapes above are mostly too small for them to pay).
fn winograd_case() -> impl Strategy<Value = Case> {
    (1usize..24, 1usize..20, 20usize..56, 20usize..56, 0usize..4, 1usize..4).prop_map(
        |(cin, cout, h, w, padding, dilation)| Case {
            n: 1,
            cin,
            cout,
            h,
            w,
            kernel: [3, 3],
            stride: [1, 1],
            padding: [padding; 2],
            dilation: [dilation; 2],
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn winograd_tiles_match_f64_reference(
        (c, x, w, extras) in winograd_case().prop_flat_map(|c| {
            let (xl, wl) = (c.cin * c.h * c.w, c.cout * c.cin * 9);
            (Just(c), values(xl), values(wl), values(8))
        })
    ) {
        check_case(&c, &x, &w, &extras);
    }
}

/// 1x1 convolutions on tiny maps (the pyramid pooling module's bins) take
/// the matrix-vector path; same oracle, same epilogue.
fn pointwise_case() -> impl Strategy<Value = Case> {
    (1usize..=2, 1usize..300, 1usize..40, 1usize..5, 1usize..5).prop_map(|(n, cin, cout, h, w)| Case {
        n,
        cin,
        cout,
        h,
        w,
        kernel: [1, 1],
        stride: [1, 1],
        padding: [0, 0],
        dilation: [1, 1],
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn pointwise_conv_on_small_maps_matches_f64_reference(
        (c, x, w, extras) in pointwise_case().prop_flat_map(|c| {
            let (xl, wl) = (c.n * c.cin * c.h * c.w, c.cout * c.cin);
            (Just(c), values(xl), values(wl), values(8))
        })
    ) {
        check_case(&c, &x, &w, &extras);
    }
}

/// Shapes large enough to cross every blocking boundary: several K slices
/// (K > 384), several pixel blocks and partial panels on both axes.
#[test]
fn conv_crosses_cache_blocks() {
    let cases = [
        ([1, 100, 23, 29], [37, 100, 3, 3], ConvSpec::default().padding(2).dilation(2)),
        ([2, 520, 9, 11], [70, 520, 1, 1], ConvSpec::default()),
        ([1, 64, 31, 17], [19, 64, 3, 3], ConvSpec::default().stride(2).padding(1)),
        ([1, 3, 45, 41], [33, 3, 7, 7], ConvSpec::default().stride(2).padding(3)),
        ([1, 200, 6, 6], [9, 200, 3, 3], ConvSpec::default().padding(16).dilation(16)),
    ];
    for (i, (xd, wd, spec)) in cases.into_iter().enumerate() {
        let (input, weight) = (random_tensor(xd, i as u64), random_tensor(wd, 100 + i as u64));
        let (want, mag, _) = conv2d_f64(&input, &weight, spec.stride, spec.padding, spec.dilation);
        let k = wd[1] * wd[2] * wd[3];
        for isa in Isa::available() {
            let got = Conv2d::with_isa(&weight, spec, isa).unwrap().forward(&input).unwrap();
            assert_close(got.as_slice(), &want, |j| conv_tolerance(k, mag[j]), &format!("{isa} case {i}"));
        }
    }
}

/// Every output value is computed by the same operations whatever the
/// thread count, so results are bit-identical.
#[test]
fn conv_is_bit_identical_for_any_thread_count() {
    let input = random_tensor([1, 96, 27, 35], 7);
    let weight = random_tensor([72, 96, 3, 3], 8);
    let residual = random_tensor([1, 72, 27, 35], 9);
    for isa in Isa::available() {
        let conv = Conv2d::with_isa(&weight, ConvSpec::default().padding(2).dilation(2), isa)
            .unwrap()
            .with_scale_shift(&[0.5; 72], &[0.1; 72])
            .unwrap()
            .with_relu(true);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| conv.forward_with_residual(&input, &residual).unwrap())
        };
        let one = run(1);
        for threads in [2, 3, 5] {
            let other = run(threads);
            let same = one.as_slice().iter().zip(other.as_slice()).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{isa}: {threads} threads differ from 1");
        }
    }
}

/// Each SIMD path against the portable one, on a PSPNet-like layer, for both
/// algorithms (Winograd rounds differently, hence its looser bound).
#[test]
fn simd_paths_agree_with_portable() {
    let input = random_tensor([1, 128, 30, 30], 11);
    let weight = random_tensor([64, 128, 3, 3], 12);
    let spec = ConvSpec::default().padding(4).dilation(4);
    for (algorithm, bound) in [(ConvAlgorithm::Direct, 2e-4), (ConvAlgorithm::Winograd, 1e-3)] {
        let portable = Conv2d::with_isa(&weight, spec, Isa::Portable).unwrap().with_algorithm(algorithm).unwrap();
        let want = portable.forward(&input).unwrap();
        for isa in Isa::available() {
            let conv = portable.on_isa(isa).unwrap();
            assert_eq!((conv.isa(), conv.is_winograd()), (isa, algorithm == ConvAlgorithm::Winograd));
            let got = conv.forward(&input).unwrap();
            let worst = got.as_slice().iter().zip(want.as_slice()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(worst < bound, "{isa} {algorithm:?}: max difference to portable {worst}");
        }
    }
}

/// `|got - want| / |want|` in the L2 norm.
fn relative_l2(got: &[f32], want: &[f64]) -> f64 {
    let (err, norm) = got.iter().zip(want).fold((0.0, 0.0), |(e, n), (&g, &w)| (e + (g as f64 - w).powi(2), n + w * w));
    (err / norm).sqrt()
}

/// Relative L2 error against the f64 oracle on the layer shapes Winograd
/// runs in PSPNet (plain, dilation 2 and 4, odd sizes that leave partial
/// tiles, several channel chunks), with both tile sizes on every ISA (which
/// one a layer takes depends on the micro-kernel's width): per layer, about
/// 1.5e-6 in F(4x4, 3x3) and 3e-6 in F(5x5, 3x3) on these uniform random
/// tensors (the direct sum: about 1e-7).
#[test]
fn winograd_is_accurate_on_pspnet_layers() {
    let layers = [(64, 64, 29, 1), (96, 40, 31, 2), (130, 72, 23, 4), (8, 16, 5, 1), (64, 48, 40, 2), (72, 40, 57, 4)];
    for isa in Isa::available() {
        let mut tiles = Vec::new();
        for (i, &(cin, cout, size, dilation)) in layers.iter().enumerate() {
            let input = random_tensor([1, cin, size, size + 3], 20 + i as u64);
            let weight = random_tensor([cout, cin, 3, 3], 40 + i as u64);
            let spec = ConvSpec::default().padding(dilation).dilation(dilation);
            let (want, _, _) = conv2d_f64(&input, &weight, [1, 1], spec.padding, spec.dilation);
            let conv = Conv2d::with_isa(&weight, spec, isa).unwrap();
            let tile = conv.winograd_tile(input.shape()).unwrap().expect("a Winograd layer");
            let relative = relative_l2(conv.forward(&input).unwrap().as_slice(), &want);
            let bound = if tile == 4 { 2.5e-6 } else { 5e-6 };
            assert!(relative < bound, "{isa} cin {cin} d {dilation} F({tile}): relative L2 {relative:e}");
            tiles.push(tile);
        }
        assert!(tiles.contains(&4) && tiles.contains(&5), "{isa}: tiles {tiles:?}");
    }
}

/// `SmallWinograd` takes F(2x2, 3x3) on every 3x3 stride-1 layer above and
/// rounds a few times less than F(4x4) (relative L2 1e-7 to 4e-7 on these
/// tensors, against about 1.5e-6), while other shapes still run direct.
#[test]
fn small_winograd_rounds_like_the_direct_sum() {
    let layers = [(64, 64, 29, 1), (96, 40, 31, 2), (130, 72, 23, 4), (8, 16, 5, 1), (72, 40, 57, 4)];
    for isa in Isa::available() {
        for (i, &(cin, cout, size, dilation)) in layers.iter().enumerate() {
            let input = random_tensor([1, cin, size, size + 3], 20 + i as u64);
            let weight = random_tensor([cout, cin, 3, 3], 40 + i as u64);
            let spec = ConvSpec::default().padding(dilation).dilation(dilation);
            let (want, _, _) = conv2d_f64(&input, &weight, [1, 1], spec.padding, spec.dilation);
            let conv =
                Conv2d::with_isa(&weight, spec, isa).unwrap().with_algorithm(ConvAlgorithm::SmallWinograd).unwrap();
            assert_eq!(conv.winograd_tile(input.shape()).unwrap(), Some(2), "{isa} cin {cin}");
            let relative = relative_l2(conv.forward(&input).unwrap().as_slice(), &want);
            assert!(relative < 5e-7, "{isa} cin {cin} d {dilation} F(2): relative L2 {relative:e}");
        }
    }
    let strided = Conv2d::with_isa(&random_tensor([8, 4, 3, 3], 1), ConvSpec::default().stride(2), Isa::Portable);
    let strided = strided.unwrap().with_algorithm(ConvAlgorithm::SmallWinograd).unwrap();
    assert!(!strided.is_winograd());
}

#[test]
fn bad_shapes_are_typed_errors_naming_the_shapes() {
    let weight = random_tensor([4, 3, 3, 3], 1);
    let conv = Conv2d::with_isa(&weight, ConvSpec::default(), Isa::Portable).unwrap();
    let err = conv.forward(&random_tensor([1, 2, 8, 8], 2)).unwrap_err();
    assert!(matches!(err, KernelError::ChannelMismatch { expected: 3, got: 2, .. }));
    assert!(err.to_string().contains("[1, 2, 8, 8]"), "{err}");

    let err = conv.forward(&random_tensor([1, 3, 2, 8], 2)).unwrap_err();
    assert!(matches!(err, KernelError::WindowLargerThanInput { axis: "height", window: 3, .. }), "{err}");

    for huge in [
        ConvSpec::default().dilation(usize::MAX / 2 + 1),
        ConvSpec::default().padding(usize::MAX / 2).stride(usize::MAX),
    ] {
        let conv = Conv2d::with_isa(&weight, huge, Isa::Portable).unwrap();
        assert!(matches!(conv.forward(&random_tensor([1, 3, 8, 8], 2)), Err(KernelError::Overflow { .. })), "{huge:?}");
    }

    for bad in [ConvSpec::default().stride(0), ConvSpec::default().dilation(0)] {
        assert!(matches!(Conv2d::with_isa(&weight, bad, Isa::Portable), Err(KernelError::InvalidParameter { .. })));
    }
    assert!(matches!(
        conv.clone().with_bias(&[0.0; 5]),
        Err(KernelError::ChannelVectorLength { expected: 4, got: 5, .. })
    ));

    let input = random_tensor([1, 3, 8, 8], 3);
    let wrong = random_tensor([1, 4, 6, 7], 4);
    assert!(matches!(
        conv.forward_with_residual(&input, &wrong),
        Err(KernelError::ShapeMismatch { what: "residual", .. })
    ));
    let mut out = Tensor::zeros(Shape::new(1, 4, 5, 5).unwrap());
    assert!(matches!(
        conv.forward_into(&input, None, &mut out),
        Err(KernelError::ShapeMismatch { what: "output", .. })
    ));
}

#[test]
fn bias_is_added_per_channel() {
    // 1x1 conv with weight 2 on one channel: out = 2x + b, hand-computed.
    let conv = Conv2d::with_isa(&tensor([2, 1, 1, 1], &[2.0, -1.0]), ConvSpec::default(), Isa::Portable)
        .unwrap()
        .with_bias(&[0.5, 1.0])
        .unwrap();
    let out = conv.forward(&tensor([1, 1, 1, 3], &[1.0, 2.0, 3.0])).unwrap();
    assert_eq!(out.as_slice(), &[2.5, 4.5, 6.5, 0.0, -1.0, -2.0]);
}

/// `x` rounded to bfloat16 (ties to even): the oracle's own rounding, for
/// building operands the bf16 kernels represent exactly.
fn bf16_exact(t: &Tensor) -> Tensor {
    let shape = t.shape();
    let values = t.as_slice().iter().map(|&x| pspnet_kernels::bf16::from_f32(x).to_f32()).collect();
    Tensor::from_vec(shape, values).unwrap()
}

/// The direct bf16 path on operands that bf16 holds exactly: the products
/// are then exact and only the f32 sums round, so the f32 bound applies
/// (odd depths exercise the zero-padded last pair; 1x1 layers, strides and
/// sums longer than one `K` slice too).
#[test]
fn bf16_direct_convolution_matches_f64_on_bf16_operands() {
    let layers = [
        ([40, 33, 3, 3], 1, 1),
        ([24, 130, 1, 1], 1, 1),
        ([16, 401, 1, 1], 1, 1),
        ([16, 45, 3, 3], 2, 2),
        ([8, 77, 1, 1], 2, 1),
    ];
    for (i, &(dims, stride, dilation)) in layers.iter().enumerate() {
        let input = bf16_exact(&random_tensor([1, dims[1], 19, 23], 60 + i as u64));
        let weight = bf16_exact(&random_tensor(dims, 70 + i as u64));
        let spec = ConvSpec::default().stride(stride).dilation(dilation).padding(dilation * (dims[2] / 2));
        let (want, mag, _) = conv2d_f64(&input, &weight, spec.stride, spec.padding, spec.dilation);
        for isa in Isa::available() {
            let conv = Conv2d::with_isa(&weight, spec, isa)
                .unwrap()
                .with_algorithm(ConvAlgorithm::Direct)
                .unwrap()
                .with_precision(Precision::Bf16);
            let got = conv.forward(&input).unwrap();
            let k = dims[1] * dims[2] * dims[3];
            assert_close(got.as_slice(), &want, |i| conv_tolerance(k, mag[i]), &format!("{isa} bf16 {dims:?}"));
        }
    }
}

/// bf16 rounds every operand to 8 bits of mantissa (relative error up to
/// 2^-9): the direct path stays within 1% relative L2 of the exact result
/// on these uniform random layers, on every ISA. The Winograd path rounds
/// its transformed operands, whose cancellations amplify the error about
/// fivefold: within 4% (on the trained CamVid model, 99.8% of labels still
/// match fp32 PyTorch; tests/cli.rs).
#[test]
fn bf16_convolution_stays_within_bf16_error() {
    for (i, &(cin, cout, dilation)) in [(96, 40, 2), (64, 64, 1), (37, 24, 1)].iter().enumerate() {
        let input = random_tensor([1, cin, 21, 26], 80 + i as u64);
        let weight = random_tensor([cout, cin, 3, 3], 90 + i as u64);
        let spec = ConvSpec::default().padding(dilation).dilation(dilation);
        let (want, _, _) = conv2d_f64(&input, &weight, [1, 1], spec.padding, spec.dilation);
        for isa in Isa::available() {
            for algorithm in [ConvAlgorithm::Direct, ConvAlgorithm::Winograd] {
                let conv = Conv2d::with_isa(&weight, spec, isa)
                    .unwrap()
                    .with_algorithm(algorithm)
                    .unwrap()
                    .with_precision(Precision::Bf16);
                let relative = relative_l2(conv.forward(&input).unwrap().as_slice(), &want);
                let bound = if algorithm == ConvAlgorithm::Direct { 1e-2 } else { 4e-2 };
                assert!(relative < bound, "{isa} {algorithm:?}: relative L2 {relative:e}");
                assert!(relative > 1e-5, "{isa} {algorithm:?}: {relative:e} is too exact for bf16 operands");
            }
        }
    }
}

/// A Winograd layer whose last panel of tiles is mostly padding (12, 20 and
/// 42 tiles: one, two and three vectors of the AVX-512 kernels' 48 columns)
/// computes every tile, in both precisions: each layer runs twice, on
/// different inputs, so products left in the reused workspace by the
/// first run would spoil the second if the narrower kernels skipped them.
#[test]
fn winograd_computes_every_tile_of_a_partial_panel() {
    for (i, &(h, w)) in [(9, 14), (16, 20), (21, 26)].iter().enumerate() {
        let weight = random_tensor([16, 64, 3, 3], 40 + i as u64);
        for precision in [Precision::F32, Precision::Bf16] {
            let conv = Conv2d::new(&weight, ConvSpec::default().padding(1))
                .unwrap()
                .with_algorithm(ConvAlgorithm::Winograd)
                .unwrap()
                .with_precision(precision);
            for seed in [50, 60] {
                let input = random_tensor([1, 64, h, w], seed + i as u64);
                let (want, _, _) = conv2d_f64(&input, &weight, [1, 1], [1, 1], [1, 1]);
                let relative = relative_l2(conv.forward(&input).unwrap().as_slice(), &want);
                let bound = if precision == Precision::F32 { 1e-5 } else { 4e-2 };
                assert!(relative < bound, "{h}x{w} {precision:?}, input {seed}: relative L2 {relative:e}");
            }
        }
    }
}

/// `Auto` runs a 3x3 stride-1 layer in the Winograd domain in f32 at any
/// width, in bf16 only from `BF16_WINOGRAD_MIN_CHANNELS` input channels on;
/// switching precision re-decides, and an explicit choice is kept.
#[test]
fn auto_picks_winograd_by_precision_and_width() {
    let narrow = random_tensor([8, BF16_WINOGRAD_MIN_CHANNELS / 2, 3, 3], 1);
    let wide = random_tensor([8, BF16_WINOGRAD_MIN_CHANNELS, 3, 3], 2);
    let strided = random_tensor([8, BF16_WINOGRAD_MIN_CHANNELS, 3, 3], 3);
    let cases = [
        (&narrow, 1, ConvAlgorithm::Auto, Precision::F32, true),
        (&narrow, 1, ConvAlgorithm::Auto, Precision::Bf16, false),
        (&wide, 1, ConvAlgorithm::Auto, Precision::Bf16, true),
        (&strided, 2, ConvAlgorithm::Auto, Precision::F32, false),
        (&narrow, 1, ConvAlgorithm::Winograd, Precision::Bf16, true),
        (&wide, 1, ConvAlgorithm::Direct, Precision::F32, false),
    ];
    for (weight, stride, algorithm, precision, want) in cases {
        let spec = ConvSpec::default().padding(1).stride(stride);
        let conv = Conv2d::new(weight, spec).unwrap().with_algorithm(algorithm).unwrap();
        let mut switched = conv.clone().with_precision(Precision::Bf16);
        switched.set_precision(precision);
        for conv in [conv.with_precision(precision), switched] {
            let what = format!("{} in, stride {stride}, {algorithm:?}, {precision:?}", weight.shape().c());
            assert_eq!(conv.is_winograd(), want, "{what}");
            let input = random_tensor([1, weight.shape().c(), 9, 10], 4);
            let got = conv.forward(&input).unwrap();
            let (exact, _, _) = conv2d_f64(&input, weight, [stride; 2], [1, 1], [1, 1]);
            let bound = if precision == Precision::F32 { 1e-5 } else { 4e-2 };
            assert!(relative_l2(got.as_slice(), &exact) < bound, "{what}");
        }
    }
}
