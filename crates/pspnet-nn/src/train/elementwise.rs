use pspnet_kernels::KernelError;
use pspnet_tensor::Tensor;

use crate::NnError;

/// `a += b` for tensors of one shape: a residual addition, or two
/// gradients of one activation meeting.
pub fn add_assign(a: &mut Tensor, b: &Tensor) -> Result<(), NnError> {
    if a.shape() != b.shape() {
        let (expected, got) = (a.shape(), b.shape());
        return Err(KernelError::ShapeMismatch { what: "added tensor", expected, got }.into());
    }
    a.as_mut_slice().iter_mut().zip(b.as_slice()).for_each(|(x, y)| *x += y);
    Ok(())
}

/// `max(x, 0)` in place.
pub fn relu_in_place(x: &mut Tensor) {
    x.as_mut_slice().iter_mut().for_each(|v| *v = v.max(0.0));
}
