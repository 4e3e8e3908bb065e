//! Dropout2d for training: whole channels zeroed with probability `p`, the
//! kept ones scaled by `1 / (1 - p)`. Each channel's draw comes from
//! `(seed, image, channel)` alone, so a run is the same on any number of
//! threads and a resumed run draws what the uninterrupted one would.

use pspnet_tensor::Tensor;
use rayon::prelude::*;

use crate::KernelError;

/// SplitMix64's finaliser: a well-mixed 64-bit value of `x`.
pub fn splitmix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Each channel's factor for `images` x `channels` channels: 0 (dropped,
/// with probability `p`) or `1 / (1 - p)`.
pub fn dropout2d_mask(images: usize, channels: usize, p: f32, seed: u64) -> Result<Vec<f32>, KernelError> {
    if !(0.0..1.0).contains(&p) {
        return Err(KernelError::InvalidProbability(p.to_string()));
    }
    let keep = 1.0 / (1.0 - p);
    Ok((0..images * channels)
        .map(|i| {
            let draw = splitmix64(seed ^ splitmix64(i as u64 + 1)) >> 40;
            let uniform = draw as f32 / (1u64 << 24) as f32;
            if uniform < p { 0.0 } else { keep }
        })
        .collect())
}

/// Multiplies each channel plane of `x` by its factor in `mask` (as
/// [`dropout2d_mask`] makes it): Dropout2d's forward pass, and its backward
/// pass on the output's gradient with the same mask.
pub fn apply_channel_mask(x: &Tensor, mask: &[f32]) -> Result<Tensor, KernelError> {
    let shape = x.shape();
    if mask.len() != shape.n() * shape.c() {
        return Err(KernelError::ChannelVectorLength {
            what: "dropout mask",
            expected: shape.n() * shape.c(),
            got: mask.len(),
        });
    }
    let mut y = x.clone();
    y.as_mut_slice()
        .par_chunks_mut(shape.plane_len())
        .zip(mask)
        .for_each(|(plane, &m)| plane.iter_mut().for_each(|v| *v *= m));
    Ok(y)
}

#[cfg(test)]
mod tests {
    use pspnet_tensor::Shape;

    use super::*;

    #[test]
    fn drops_whole_channels_at_the_rate_asked() {
        let mask = dropout2d_mask(8, 1000, 0.1, 7).unwrap();
        let dropped = mask.iter().filter(|&&m| m == 0.0).count() as f64 / mask.len() as f64;
        assert!((dropped - 0.1).abs() < 0.02, "{dropped}");
        assert!(mask.iter().all(|&m| m == 0.0 || m == 1.0 / 0.9));
        assert_eq!(mask, dropout2d_mask(8, 1000, 0.1, 7).unwrap(), "the seed decides");
        assert_ne!(mask, dropout2d_mask(8, 1000, 0.1, 8).unwrap());
        assert!(dropout2d_mask(1, 1, 0.0, 1).unwrap() == [1.0]);
        assert!(dropout2d_mask(1, 1, 1.0, 1).is_err());

        let x = Tensor::from_fn(Shape::new(1, 2, 2, 2).unwrap(), |_, c, y, x| (c * 4 + y * 2 + x) as f32);
        let y = apply_channel_mask(&x, &[0.0, 2.0]).unwrap();
        assert_eq!(y.as_slice(), &[0.0, 0.0, 0.0, 0.0, 8.0, 10.0, 12.0, 14.0]);
        assert!(apply_channel_mask(&x, &[1.0]).is_err());
    }
}
