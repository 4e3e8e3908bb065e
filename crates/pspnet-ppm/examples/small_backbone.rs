//! Reusing the pyramid pooling module on a backbone that is not a ResNet:
//! two strided 3x3 convolutions, then a PPM with its own reductions.
//!
//! Run: `cargo run -p pspnet-ppm --example small_backbone`

use pspnet_kernels::{Conv2d, ConvSpec};
use pspnet_ppm::{PyramidPooling, PyramidPoolingConfig};
use pspnet_tensor::{Shape, Tensor};

/// Deterministic pseudo-random weights in [-0.5, 0.5).
fn weights(dims: [usize; 4], seed: u32) -> Result<Tensor, Box<dyn std::error::Error>> {
    let mut state = seed | 1;
    let shape = Shape::new(dims[0], dims[1], dims[2], dims[3])?;
    Ok(Tensor::from_fn(shape, |_, _, _, _| {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    }))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A tiny backbone: 3 -> 16 -> 32 channels, 1/4 resolution.
    let down = ConvSpec::default().stride(2).padding(1);
    let backbone = [
        Conv2d::new(&weights([16, 3, 3, 3], 1)?, down)?.with_relu(true),
        Conv2d::new(&weights([32, 16, 3, 3], 2)?, down)?.with_relu(true),
    ];
    // The paper's pyramid (bins 1, 2, 3, 6), each level reduced to 32 / 4 = 8 channels.
    let config = PyramidPoolingConfig::default();
    let reductions = (0..config.bins.len())
        .map(|i| Ok(Conv2d::new(&weights([8, 32, 1, 1], 10 + i as u32)?, ConvSpec::default())?.with_relu(true)))
        .collect::<Result<Vec<_>, Box<dyn std::error::Error>>>()?;
    let ppm = PyramidPooling::new(config, Some(reductions))?;

    let image = weights([1, 3, 97, 130], 99)?;
    let features = backbone.iter().try_fold(image, |x, conv| conv.forward(&x))?;
    let context = ppm.forward(&features)?;
    println!("features {} -> with pyramid context {}", features.shape(), context.shape());
    assert_eq!(context.shape().c(), ppm.out_channels(32));
    Ok(())
}
