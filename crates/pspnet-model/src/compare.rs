//! Agreement between our outputs and a reference implementation's: the
//! numbers a cross-check reports.

use pspnet_tensor::Tensor;

/// How closely a tensor matches a reference of the same shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// Largest absolute difference.
    pub max_abs: f64,
    /// `||got - want||_2 / ||want||_2`.
    pub rel_l2: f64,
    /// Fraction of pixels whose argmax over channels agrees (1.0 = all).
    pub argmax_agreement: f64,
}

impl Comparison {
    /// Compares `got` with `want` (NCHW values in the same order).
    pub fn of(got: &Tensor, want: &[f32]) -> Option<Comparison> {
        let g = got.as_slice();
        if g.len() != want.len() {
            return None;
        }
        let (mut max_abs, mut diff2, mut norm2) = (0.0f64, 0.0f64, 0.0f64);
        for (&a, &b) in g.iter().zip(want) {
            let d = a as f64 - b as f64;
            max_abs = max_abs.max(d.abs());
            diff2 += d * d;
            norm2 += b as f64 * b as f64;
        }
        let shape = got.shape();
        let plane = shape.plane_len();
        let argmax = |data: &[f32], n: usize, p: usize| {
            (0..shape.c()).fold(0, |best, c| {
                if data[(n * shape.c() + c) * plane + p] > data[(n * shape.c() + best) * plane + p] { c } else { best }
            })
        };
        let pixels = shape.n() * plane;
        let agree =
            (0..pixels).filter(|&i| argmax(g, i / plane, i % plane) == argmax(want, i / plane, i % plane)).count();
        Some(Comparison {
            max_abs,
            rel_l2: if norm2 > 0.0 { (diff2 / norm2).sqrt() } else { diff2.sqrt() },
            argmax_agreement: agree as f64 / pixels as f64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pspnet_tensor::Shape;

    #[test]
    fn hand_computed_agreement() {
        // Two channels, two pixels: argmax (1, 0) vs reference (1, 1).
        let got = Tensor::from_vec(Shape::new(1, 2, 1, 2).unwrap(), vec![0.0, 3.0, 4.0, 0.0]).unwrap();
        let c = Comparison::of(&got, &[0.0, 0.0, 3.0, 4.0]).unwrap();
        assert_eq!(c.max_abs, 4.0);
        // ||(0, 3, 1, -4)|| / ||(0, 0, 3, 4)|| = sqrt(26) / 5.
        assert!((c.rel_l2 - 26f64.sqrt() / 5.0).abs() < 1e-12);
        assert_eq!(c.argmax_agreement, 0.5);
        assert!(Comparison::of(&got, &[0.0]).is_none());
    }
}
