//! The pyramid on a 4x4 map whose values are hand-computable: x(y, x) = 4y + x.

use pspnet_kernels::{Conv2d, ConvSpec, Isa};
use pspnet_ppm::{Pooling, PyramidPooling, PyramidPoolingConfig};
use pspnet_tensor::{Shape, Tensor};

fn ramp() -> Tensor {
    Tensor::from_fn(Shape::new(1, 1, 4, 4).unwrap(), |_, _, y, x| (4 * y + x) as f32)
}

/// The 2x2-bin level upsampled to 4x4: bilinear in the bin centres, so
/// `corner + 2 * s(x) + 8 * s(y)` with `s` the source coordinate in bins.
fn level(corner: f32, align_corners: bool) -> Vec<f32> {
    let s: [f32; 4] = if align_corners { [0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0] } else { [0.0, 0.25, 0.75, 1.0] };
    (0..16).map(|i| corner + 2.0 * s[i % 4] + 8.0 * s[i / 4]).collect()
}

fn check(got: &[f32], want: &[f32]) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() < 1e-5, "element {i}: got {g}, want {w}");
    }
}

#[test]
fn average_and_max_pyramids_without_reduction() {
    for (pooling, global, corner) in [(Pooling::Average, 7.5, 2.5), (Pooling::Max, 15.0, 5.0)] {
        for align_corners in [true, false] {
            let config = PyramidPoolingConfig { bins: vec![1, 2], pooling, align_corners, reduction: false };
            let ppm = PyramidPooling::new(config, None).unwrap();
            assert_eq!(ppm.out_channels(1), 3);
            let out = ppm.forward(&ramp()).unwrap();
            assert_eq!(out.shape().dims(), [1, 3, 4, 4]);
            let data = out.as_slice();
            check(&data[..16], &ramp().into_vec());
            check(&data[16..32], &[global; 16]);
            check(&data[32..], &level(corner, align_corners));
        }
    }
}

#[test]
fn reductions_apply_to_the_pooled_maps() {
    // reduce(p) = relu(2p - 6): the global mean 7.5 becomes 9.
    let w = Tensor::filled(Shape::new(1, 1, 1, 1).unwrap(), 2.0);
    let conv =
        Conv2d::with_isa(&w, ConvSpec::default(), Isa::Portable).unwrap().with_bias(&[-6.0]).unwrap().with_relu(true);
    let config =
        PyramidPoolingConfig { bins: vec![1, 2], pooling: Pooling::Average, align_corners: true, reduction: true };
    let ppm = PyramidPooling::new(config, Some(vec![conv.clone(), conv])).unwrap();
    let out = ppm.forward(&ramp()).unwrap();
    check(&out.as_slice()[16..32], &[9.0; 16]);
    // The 2x2 bins 2.5, 4.5, 10.5, 12.5 become 0 (clamped), 3, 15, 19.
    let corners = [out.as_slice()[32], out.as_slice()[35], out.as_slice()[44], out.as_slice()[47]];
    check(&corners, &[0.0, 3.0, 15.0, 19.0]);
}

#[test]
fn bad_configurations_are_refused() {
    let conv3 = Conv2d::new(&Tensor::zeros(Shape::new(1, 1, 3, 3).unwrap()), ConvSpec::default()).unwrap();
    let one = PyramidPoolingConfig { bins: vec![1], ..PyramidPoolingConfig::default() };
    assert!(PyramidPooling::new(one.clone(), Some(vec![conv3])).is_err());
    assert!(PyramidPooling::new(one, Some(vec![])).is_err());
    assert!(
        PyramidPooling::new(PyramidPoolingConfig { bins: vec![0], ..PyramidPoolingConfig::default() }, None).is_err()
    );
    assert!(PyramidPooling::new(PyramidPoolingConfig::default(), None).is_err(), "reduction without convolutions");
    let ppm = PyramidPooling::new(PyramidPoolingConfig { reduction: false, ..PyramidPoolingConfig::default() }, None)
        .unwrap();
    // Bins larger than the map still work, as in PyTorch (pixels repeat).
    assert_eq!(ppm.forward(&ramp()).unwrap().shape().c(), 5);
}
