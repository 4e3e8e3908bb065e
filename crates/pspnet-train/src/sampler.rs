//! Which samples each batch holds. Shuffled: a new permutation of the
//! samples per epoch, drawn from the seed, batches running across epoch
//! ends. In order (`--no-shuffle`): the samples in file-name order, batch
//! k holding samples kB .. kB+B-1, wrapping. Either way a batch depends
//! only on its number, so a resumed run needs no sampler state.

use crate::draws::{Draws, Purpose};

/// See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sampler {
    /// How many samples there are.
    pub samples: usize,
    /// Shuffle each epoch.
    pub shuffle: bool,
    /// The run's seed.
    pub seed: u64,
}

impl Sampler {
    /// The sample indices of batch `k` of `size`.
    pub fn batch(&self, k: u64, size: usize) -> Vec<usize> {
        let first = k * size as u64;
        let mut epoch_order: Option<(u64, Vec<usize>)> = None;
        (first..first + size as u64)
            .map(|position| {
                let (epoch, index) = (position / self.samples as u64, (position % self.samples as u64) as usize);
                if !self.shuffle {
                    return index;
                }
                match &epoch_order {
                    Some((e, order)) if *e == epoch => order[index],
                    _ => {
                        let order = self.permutation(epoch);
                        let sample = order[index];
                        epoch_order = Some((epoch, order));
                        sample
                    }
                }
            })
            .collect()
    }

    /// Epoch `epoch`'s order (Fisher-Yates).
    fn permutation(&self, epoch: u64) -> Vec<usize> {
        let mut draws = Draws::new(self.seed, Purpose::Order, &[epoch]);
        let mut order: Vec<usize> = (0..self.samples).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, draws.below(i + 1));
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_batches_wrap() {
        let s = Sampler { samples: 5, shuffle: false, seed: 0 };
        assert_eq!(s.batch(0, 2), [0, 1]);
        assert_eq!(s.batch(2, 2), [4, 0]);
        assert_eq!(s.batch(3, 2), [1, 2]);
    }

    #[test]
    fn each_epoch_is_a_permutation_and_epochs_differ() {
        let s = Sampler { samples: 7, shuffle: true, seed: 3 };
        let batches: Vec<usize> = (0..7).flat_map(|k| s.batch(k, 3)).collect();
        for epoch in batches.chunks(7) {
            let mut sorted = epoch.to_vec();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..7).collect::<Vec<_>>());
        }
        assert_ne!(batches[..7], batches[7..14]);
        assert_eq!(s.batch(4, 3), Sampler { ..s }.batch(4, 3));
        assert_ne!(s.batch(0, 7), Sampler { seed: 4, ..s }.batch(0, 7));
    }
}
