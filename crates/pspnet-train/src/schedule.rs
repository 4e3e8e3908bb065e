/// The learning rate of step `i` (0-based) of `iters`: `base * (1 -
/// i / iters)^power`, the first step at the base rate and no floor, times
/// `(i + 1) / warmup` during the first `warmup` steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolySchedule {
    /// The rate of the first step (after warm-up).
    pub base: f64,
    /// Steps in the whole run.
    pub iters: usize,
    /// The decay's exponent (0.9 in PSPNet's recipe).
    pub power: f64,
    /// Steps of linear warm-up (0: none).
    pub warmup: usize,
}

impl PolySchedule {
    /// The rate of step `i`.
    pub fn rate(&self, i: usize) -> f64 {
        let decay = (1.0 - i as f64 / self.iters as f64).max(0.0).powf(self.power);
        let warm = if i < self.warmup { (i + 1) as f64 / self.warmup as f64 } else { 1.0 };
        self.base * decay * warm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poly_decay_and_warm_up_by_hand() {
        let s = PolySchedule { base: 0.01, iters: 100, power: 0.9, warmup: 0 };
        assert_eq!(s.rate(0), 0.01);
        assert!((s.rate(50) - 0.01 * 0.5f64.powf(0.9)).abs() < 1e-15);
        assert_eq!(s.rate(100), 0.0);
        let warm = PolySchedule { warmup: 4, ..s };
        assert_eq!(warm.rate(0), 0.01 * 0.25);
        assert!((warm.rate(3) - s.rate(3)).abs() < 1e-15);
    }
}
