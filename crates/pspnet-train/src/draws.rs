//! Random draws that depend only on what they are for: a generator is
//! seeded by hashing the run's seed with labels (a purpose, an iteration, a
//! slot in the batch, a parameter's name), so a run draws the same on any
//! number of threads, and a resumed run draws what the uninterrupted one
//! would have.

use pspnet_kernels::splitmix64;

/// What a generator's draws are for (its first label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Purpose {
    /// The epoch permutations of the samples.
    Order = 1,
    /// A sample's augmentation.
    Augment = 2,
    /// The dropout masks of an iteration.
    Dropout = 3,
    /// A fresh layer's initial weights.
    Init = 4,
}

/// A SplitMix64 stream seeded from `(seed, purpose, labels)`.
#[derive(Debug, Clone)]
pub struct Draws {
    state: u64,
}

impl Draws {
    /// The stream of `purpose` at `labels` in a run seeded `seed`.
    pub fn new(seed: u64, purpose: Purpose, labels: &[u64]) -> Self {
        let start = splitmix64(seed ^ splitmix64(purpose as u64));
        Draws { state: labels.iter().fold(start, |state, &label| splitmix64(state ^ splitmix64(label))) }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        splitmix64(self.state)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [low, high).
    pub fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.uniform()
    }

    /// Uniform over 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.uniform() * n as f64) as usize).min(n - 1)
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = 1.0 - self.uniform();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * self.uniform()).cos()
    }
}

/// A stable 64-bit label for a name (FNV-1a).
pub fn label(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let take = |d: &mut Draws| (0..4).map(|_| d.next_u64()).collect::<Vec<_>>();
        let a = take(&mut Draws::new(7, Purpose::Augment, &[3, 1]));
        assert_eq!(a, take(&mut Draws::new(7, Purpose::Augment, &[3, 1])));
        assert_ne!(a, take(&mut Draws::new(7, Purpose::Augment, &[3, 2])));
        assert_ne!(a, take(&mut Draws::new(8, Purpose::Augment, &[3, 1])));
        assert_ne!(a, take(&mut Draws::new(7, Purpose::Dropout, &[3, 1])));
    }

    #[test]
    fn uniform_and_normal_have_their_moments() {
        let mut d = Draws::new(1, Purpose::Init, &[]);
        let n = 200_000;
        let (u, z): (Vec<f64>, Vec<f64>) = (0..n).map(|_| (d.uniform(), d.normal())).unzip();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / n as f64;
        let var = |v: &[f64]| {
            let m = mean(v);
            v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n as f64
        };
        assert!((mean(&u) - 0.5).abs() < 0.005 && (var(&u) - 1.0 / 12.0).abs() < 0.002);
        assert!(mean(&z).abs() < 0.01 && (var(&z) - 1.0).abs() < 0.01);
        assert!(u.iter().all(|&x| (0.0..1.0).contains(&x)));
    }
}
