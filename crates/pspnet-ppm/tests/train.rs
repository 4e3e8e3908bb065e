//! The pyramid's backward pass without reductions, against its forward: an
//! average pyramid is then linear in its input, so its backward pass B must
//! be the forward F's adjoint, <r, F(x)> = <B(r), x> for any x and r.

use std::sync::Arc;

use pspnet_kernels::ConvOptions;
use pspnet_nn::ParamStore;
use pspnet_nn::train::BnMode;
use pspnet_ppm::{Pooling, PyramidPoolingConfig, TrainPyramidPooling};
use pspnet_tensor::{Params, Shape, Tensor};

/// Deterministic values in [-0.5, 0.5).
fn random(shape: Shape, seed: u32) -> Tensor {
    let mut state = seed | 1;
    Tensor::from_fn(shape, |_, _, _, _| {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    })
}

fn dot(a: &Tensor, b: &Tensor) -> (f64, f64) {
    let terms = a.as_slice().iter().zip(b.as_slice()).map(|(&p, &q)| f64::from(p) * f64::from(q));
    terms.fold((0.0, 0.0), |(sum, size), t| (sum + t, size + t.abs()))
}

#[test]
fn backward_without_reduction_is_the_forward_adjoint() {
    // 7x5 features: bins 3 and 6 overlap and repeat pixels, as in PyTorch.
    let x = random(Shape::new(2, 3, 7, 5).unwrap(), 7);
    for align_corners in [true, false] {
        let config =
            PyramidPoolingConfig { bins: vec![1, 2, 3, 6], pooling: Pooling::Average, align_corners, reduction: false };
        let mut store = ParamStore::new(Params::new(), ConvOptions::default());
        let mut ppm = TrainPyramidPooling::build(config, &mut store.root(), 3).unwrap();
        assert!(store.finish().is_empty(), "no parameters without reductions");
        let y = ppm.forward(Arc::new(x.clone()), BnMode::Train).unwrap();
        assert_eq!(y.shape().c(), 15, "the features and four levels of all 3 channels");
        let r = random(y.shape(), 11);
        let g = ppm.backward(&r).unwrap();
        let ((forward, size), (backward, _)) = (dot(&r, &y), dot(&g, &x));
        assert!(
            (forward - backward).abs() <= 1e-6 * size,
            "align_corners {align_corners}: <r, F(x)> = {forward}, <B(r), x> = {backward}"
        );
    }
}
