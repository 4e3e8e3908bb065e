//! Element-wise passes over whole tensors: a residual addition (or two
//! gradients of one activation meeting) and the ReLU.

use pspnet_tensor::Tensor;
use rayon::prelude::*;

use crate::KernelError;

/// `a += b` for tensors of one shape.
pub fn add_assign(a: &mut Tensor, b: &Tensor) -> Result<(), KernelError> {
    if a.shape() != b.shape() {
        let (expected, got) = (a.shape(), b.shape());
        return Err(KernelError::ShapeMismatch { what: "added tensor", expected, got });
    }
    a.as_mut_slice().par_iter_mut().zip(b.as_slice().par_iter()).for_each(|(x, y)| *x += y);
    Ok(())
}

/// `max(x, 0)` in place.
pub fn relu_in_place(x: &mut Tensor) {
    x.as_mut_slice().par_iter_mut().for_each(|v| *v = v.max(0.0));
}

#[cfg(test)]
mod tests {
    use pspnet_tensor::Shape;

    use super::*;

    #[test]
    fn adds_and_rectifies() {
        let shape = Shape::new(1, 1, 1, 3).unwrap();
        let mut a = Tensor::from_vec(shape, vec![1.0, -2.0, 3.0]).unwrap();
        add_assign(&mut a, &Tensor::from_vec(shape, vec![0.5, 0.5, -4.0]).unwrap()).unwrap();
        relu_in_place(&mut a);
        assert_eq!(a.as_slice(), &[1.5, 0.0, 0.0]);
        assert!(add_assign(&mut a, &Tensor::zeros(Shape::new(1, 1, 1, 2).unwrap())).is_err());
    }
}
