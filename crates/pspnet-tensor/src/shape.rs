use std::fmt;

use crate::TensorError;

/// The dimensions of an NCHW tensor: `n` images of `c` channels of `h` x `w`
/// pixels. A `Shape` is always valid: every dimension is at least 1 and the
/// element count, in bytes of `f32`, fits in an `isize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
}

impl Shape {
    /// Checks and builds a shape.
    pub fn new(n: usize, c: usize, h: usize, w: usize) -> Result<Self, TensorError> {
        let dims = [n, c, h, w];
        for (axis, &d) in ["N", "C", "H", "W"].iter().zip(&dims) {
            if d == 0 {
                return Err(TensorError::ZeroDimension { axis, dims });
            }
        }
        let len = dims
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .filter(|&len| len.checked_mul(size_of::<f32>()).is_some_and(|b| b <= isize::MAX as usize))
            .ok_or(TensorError::TooLarge { dims })?;
        debug_assert!(len > 0);
        Ok(Shape { n, c, h, w })
    }

    /// Number of images (batch size).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Number of channels.
    pub fn c(&self) -> usize {
        self.c
    }

    /// Height in pixels.
    pub fn h(&self) -> usize {
        self.h
    }

    /// Width in pixels.
    pub fn w(&self) -> usize {
        self.w
    }

    /// The dimensions as `[n, c, h, w]`.
    pub fn dims(&self) -> [usize; 4] {
        [self.n, self.c, self.h, self.w]
    }

    /// Pixels in one channel plane (`h * w`).
    pub fn plane_len(&self) -> usize {
        self.h * self.w
    }

    /// Elements in one image (`c * h * w`).
    pub fn image_len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Elements in the whole tensor.
    pub fn len(&self) -> usize {
        self.n * self.image_len()
    }

    /// Always false: a valid shape holds at least one element. Present so
    /// that `len` has its usual companion.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The same shape with another channel count (checked).
    pub fn with_c(&self, c: usize) -> Result<Self, TensorError> {
        Shape::new(self.n, c, self.h, self.w)
    }

    /// The same shape with another spatial size (checked).
    pub fn with_hw(&self, h: usize, w: usize) -> Result<Self, TensorError> {
        Shape::new(self.n, self.c, h, w)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {}, {}, {}]", self.n, self.c, self.h, self.w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_zero_dimensions_by_axis() {
        let err = Shape::new(1, 0, 4, 4).unwrap_err();
        assert_eq!(err, TensorError::ZeroDimension { axis: "C", dims: [1, 0, 4, 4] });
        assert!(err.to_string().contains("dimension C of [1, 0, 4, 4]"));
    }

    #[test]
    fn rejects_overflowing_element_counts() {
        let big = usize::MAX / 2;
        assert!(matches!(Shape::new(big, 2, 2, 1), Err(TensorError::TooLarge { .. })));
        // Fits in usize elements, but not in bytes of f32.
        assert!(matches!(Shape::new(1, 1, 1, usize::MAX / 4 + 1), Err(TensorError::TooLarge { .. })));
    }

    #[test]
    fn counts_elements() {
        let s = Shape::new(2, 3, 4, 5).unwrap();
        assert_eq!((s.len(), s.image_len(), s.plane_len()), (120, 60, 20));
        assert_eq!(s.to_string(), "[2, 3, 4, 5]");
    }
}
