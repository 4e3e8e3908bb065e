use half::{bf16, f16};

use crate::{Shape, Tensor, TensorError};

/// A 16-bit floating-point element type a tensor can be stored in.
///
/// Implemented for [`f16`](struct@f16) (IEEE half: 10-bit mantissa, narrow range) and
/// [`bf16`] (brain float: f32's range, 7-bit mantissa). Conversions round to
/// nearest, ties to even, as PyTorch's `.half()` and `.bfloat16()` do.
pub trait HalfFloat: Copy + Send + Sync + 'static + private::Sealed {
    /// The dtype's usual name (`"f16"` or `"bf16"`).
    const NAME: &'static str;
    /// Rounds an `f32` to this type.
    fn from_f32(v: f32) -> Self;
    /// Widens to `f32` exactly.
    fn to_f32(self) -> f32;
}

mod private {
    pub trait Sealed {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
}

/// Implements [`HalfFloat`] for one of `half`'s types.
macro_rules! half_float {
    ($t:ident) => {
        impl HalfFloat for $t {
            const NAME: &'static str = stringify!($t);
            fn from_f32(v: f32) -> Self {
                $t::from_f32(v)
            }
            fn to_f32(self) -> f32 {
                $t::to_f32(self)
            }
        }
    };
}

half_float!(f16);
half_float!(bf16);

/// An NCHW tensor stored in 16 bits per element: half the memory of a
/// [`Tensor`], for weights at rest. Compute widens it back to `f32`.
#[derive(Debug, Clone, PartialEq)]
pub struct HalfTensor<T: HalfFloat> {
    shape: Shape,
    data: Vec<T>,
}

impl<T: HalfFloat> HalfTensor<T> {
    /// Wraps a flat NCHW buffer; its length must equal the shape's.
    pub fn from_vec(shape: Shape, data: Vec<T>) -> Result<Self, TensorError> {
        if data.len() != shape.len() {
            return Err(TensorError::LengthMismatch { shape: shape.dims(), expected: shape.len(), actual: data.len() });
        }
        Ok(HalfTensor { shape, data })
    }

    /// Rounds every element of an `f32` tensor to `T`.
    pub fn from_f32(tensor: &Tensor) -> Self {
        HalfTensor { shape: tensor.shape(), data: tensor.as_slice().iter().map(|&v| T::from_f32(v)).collect() }
    }

    /// Widens to an `f32` tensor.
    pub fn to_f32(&self) -> Tensor {
        let data = self.data.iter().map(|v| v.to_f32()).collect();
        Tensor::from_vec(self.shape, data).expect("length is the shape's by construction")
    }

    /// The tensor's shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// All elements, NCHW order.
    pub fn as_slice(&self) -> &[T] {
        &self.data
    }
}

impl Tensor {
    /// Rounds this tensor to 16-bit storage (`f16` or `bf16`).
    pub fn to_half<T: HalfFloat>(&self) -> HalfTensor<T> {
        HalfTensor::from_f32(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_within_each_formats_precision() {
        let shape = Shape::new(1, 1, 1, 4).unwrap();
        let t = Tensor::from_vec(shape, vec![1.0, -2.5, 1.0 / 3.0, 65504.0]).unwrap();
        let h = t.to_half::<f16>().to_f32();
        let b = t.to_half::<bf16>().to_f32();
        // Hand-computed: 1/3 rounds to 0x3555 in f16 (0.333251953125) and to
        // 0x3EAB in bf16 (0.333984375); 65504 is f16's largest finite value.
        assert_eq!(h.as_slice(), &[1.0, -2.5, 0.333_251_95, 65504.0]);
        assert_eq!(b.as_slice(), &[1.0, -2.5, 0.333_984_38, 65536.0]);
    }

    #[test]
    fn from_vec_checks_length() {
        let shape = Shape::new(1, 2, 1, 1).unwrap();
        assert!(HalfTensor::<bf16>::from_vec(shape, vec![bf16::ZERO]).is_err());
        assert_eq!(HalfTensor::<bf16>::from_vec(shape, vec![bf16::ONE; 2]).unwrap().shape(), shape);
    }
}
