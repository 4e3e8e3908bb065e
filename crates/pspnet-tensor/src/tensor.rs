use ndarray::{Array4, ArrayView2, ArrayView3, ArrayView4, ArrayViewMut3, ArrayViewMut4, Axis};

use crate::{Shape, TensorError, huge_pages};

/// An owned NCHW `f32` tensor in standard (C-contiguous) layout.
///
/// The layout is an invariant: kernels read a tensor as one flat slice, image
/// after image, channel after channel, row after row.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    shape: Shape,
    data: Array4<f32>,
}

impl Tensor {
    /// A tensor of zeros.
    pub fn zeros(shape: Shape) -> Self {
        Self::filled(shape, 0.0)
    }

    /// A tensor with every element set to `value`. A large one is backed by
    /// transparent huge pages where the OS offers them: a forward pass
    /// allocates hundreds of megabytes of activations, and fresh memory is
    /// mapped in several times faster in 2 MiB pages than in 4 KiB ones.
    pub fn filled(shape: Shape, value: f32) -> Self {
        let mut data = vec![value; shape.len()];
        huge_pages::advise(&mut data);
        let [n, c, h, w] = shape.dims();
        let data = Array4::from_shape_vec((n, c, h, w), data).expect("a checked shape holds its element count");
        Tensor { shape, data }
    }

    /// Wraps a flat NCHW buffer; its length must equal the shape's.
    pub fn from_vec(shape: Shape, data: Vec<f32>) -> Result<Self, TensorError> {
        if data.len() != shape.len() {
            return Err(TensorError::LengthMismatch { shape: shape.dims(), expected: shape.len(), actual: data.len() });
        }
        let [n, c, h, w] = shape.dims();
        let data = Array4::from_shape_vec((n, c, h, w), data).map_err(|_| TensorError::LengthMismatch {
            shape: shape.dims(),
            expected: shape.len(),
            actual: 0,
        })?;
        Ok(Tensor { shape, data })
    }

    /// Takes over an ndarray of any memory order (copying it into standard
    /// layout when needed); every dimension must be non-zero.
    pub fn from_array(array: Array4<f32>) -> Result<Self, TensorError> {
        let (n, c, h, w) = array.dim();
        let shape = Shape::new(n, c, h, w)?;
        let data = if array.is_standard_layout() { array } else { array.as_standard_layout().into_owned() };
        Ok(Tensor { shape, data })
    }

    /// A tensor whose element `[n, c, y, x]` is `f(n, c, y, x)`.
    pub fn from_fn(shape: Shape, mut f: impl FnMut(usize, usize, usize, usize) -> f32) -> Self {
        let [n, c, h, w] = shape.dims();
        Tensor { shape, data: Array4::from_shape_fn((n, c, h, w), |(n, c, y, x)| f(n, c, y, x)) }
    }

    /// The tensor's shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// All elements, NCHW order.
    pub fn as_slice(&self) -> &[f32] {
        self.data.as_slice().expect("Tensor keeps standard layout")
    }

    /// All elements, NCHW order, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        self.data.as_slice_mut().expect("Tensor keeps standard layout")
    }

    /// The elements of image `n` (`c * h * w` values, CHW order).
    pub fn image_slice(&self, n: usize) -> Result<&[f32], TensorError> {
        self.check_image(n)?;
        let len = self.shape.image_len();
        Ok(&self.as_slice()[n * len..(n + 1) * len])
    }

    /// The elements of image `n`, mutable.
    pub fn image_slice_mut(&mut self, n: usize) -> Result<&mut [f32], TensorError> {
        self.check_image(n)?;
        let len = self.shape.image_len();
        Ok(&mut self.as_mut_slice()[n * len..(n + 1) * len])
    }

    /// The whole tensor as an ndarray view.
    pub fn view(&self) -> ArrayView4<'_, f32> {
        self.data.view()
    }

    /// The whole tensor as a mutable ndarray view.
    pub fn view_mut(&mut self) -> ArrayViewMut4<'_, f32> {
        self.data.view_mut()
    }

    /// Image `n` as a `(c, h, w)` view.
    pub fn image(&self, n: usize) -> Result<ArrayView3<'_, f32>, TensorError> {
        self.check_image(n)?;
        Ok(self.data.index_axis(Axis(0), n))
    }

    /// Image `n` as a mutable `(c, h, w)` view.
    pub fn image_mut(&mut self, n: usize) -> Result<ArrayViewMut3<'_, f32>, TensorError> {
        self.check_image(n)?;
        Ok(self.data.index_axis_mut(Axis(0), n))
    }

    /// Channel `c` of image `n` as an `(h, w)` view.
    pub fn channel(&self, n: usize, c: usize) -> Result<ArrayView2<'_, f32>, TensorError> {
        self.check_image(n)?;
        if c >= self.shape.c() {
            return Err(TensorError::IndexOutOfRange { axis: "channel", index: c, shape: self.shape.dims() });
        }
        Ok(self.data.index_axis(Axis(0), n).index_axis_move(Axis(0), c))
    }

    /// Gives the elements back as a flat NCHW vector.
    pub fn into_vec(self) -> Vec<f32> {
        let (vec, offset) = self.data.into_raw_vec_and_offset();
        debug_assert_eq!(offset.unwrap_or(0), 0);
        vec
    }

    /// Gives the elements back as an ndarray.
    pub fn into_array(self) -> Array4<f32> {
        self.data
    }

    /// Stacks tensors along the channel axis (`torch.cat(dim=1)`): same
    /// batch size and spatial size, channels in the order given.
    pub fn concat_channels(parts: &[&Tensor]) -> Result<Tensor, TensorError> {
        let first = parts.first().ok_or(TensorError::ZeroDimension { axis: "C", dims: [0; 4] })?.shape();
        let mut channels = 0usize;
        for part in parts {
            let s = part.shape();
            if (s.n(), s.h(), s.w()) != (first.n(), first.h(), first.w()) {
                return Err(TensorError::ConcatMismatch { first: first.dims(), other: s.dims() });
            }
            channels = channels
                .checked_add(s.c())
                .ok_or(TensorError::TooLarge { dims: [first.n(), usize::MAX, first.h(), first.w()] })?;
        }
        let mut out = Tensor::zeros(first.with_c(channels)?);
        let mut channel0 = 0;
        for part in parts {
            out.write_channels(channel0, part)?;
            channel0 += part.shape().c();
        }
        Ok(out)
    }

    /// Copies `part` into channels `channel0 ..` of every image (same
    /// batch size, height and width): concatenation one piece at a time, so
    /// the pieces need not all exist at once.
    pub fn write_channels(&mut self, channel0: usize, part: &Tensor) -> Result<(), TensorError> {
        let (s, p) = (self.shape, part.shape());
        if (s.n(), s.h(), s.w()) != (p.n(), p.h(), p.w()) || channel0.checked_add(p.c()).is_none_or(|end| end > s.c()) {
            return Err(TensorError::ChannelRange { target: s.dims(), channel0, part: p.dims() });
        }
        let plane = s.plane_len();
        for n in 0..s.n() {
            self.image_slice_mut(n)?[channel0 * plane..][..p.c() * plane].copy_from_slice(part.image_slice(n)?);
        }
        Ok(())
    }

    /// Channels `channel0 .. channel0 + channels` of every image: the
    /// inverse of [`Tensor::write_channels`] (a concatenation's gradient
    /// split back into its pieces).
    pub fn read_channels(&self, channel0: usize, channels: usize) -> Result<Tensor, TensorError> {
        let s = self.shape;
        let part = s.with_c(channels)?;
        if channel0.checked_add(channels).is_none_or(|end| end > s.c()) {
            return Err(TensorError::ChannelRange { target: s.dims(), channel0, part: part.dims() });
        }
        let plane = s.plane_len();
        let mut out = Tensor::zeros(part);
        for n in 0..s.n() {
            out.image_slice_mut(n)?.copy_from_slice(&self.image_slice(n)?[channel0 * plane..][..channels * plane]);
        }
        Ok(out)
    }

    fn check_image(&self, n: usize) -> Result<(), TensorError> {
        if n >= self.shape.n() {
            return Err(TensorError::IndexOutOfRange { axis: "image", index: n, shape: self.shape.dims() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(n: usize, c: usize, h: usize, w: usize) -> Shape {
        Shape::new(n, c, h, w).unwrap()
    }

    #[test]
    fn read_channels_undoes_concatenation() {
        let a = Tensor::from_fn(shape(2, 2, 1, 3), |n, c, _, x| (100 * n + 10 * c + x) as f32);
        let b = Tensor::from_fn(shape(2, 3, 1, 3), |n, c, _, x| -((100 * n + 10 * c + x) as f32));
        let both = Tensor::concat_channels(&[&a, &b]).unwrap();
        assert_eq!(both.read_channels(0, 2).unwrap(), a);
        assert_eq!(both.read_channels(2, 3).unwrap(), b);
        assert!(both.read_channels(4, 2).is_err());
    }

    #[test]
    fn from_vec_checks_length_and_keeps_nchw_order() {
        let s = shape(1, 2, 2, 3);
        assert!(matches!(
            Tensor::from_vec(s, vec![0.0; 11]),
            Err(TensorError::LengthMismatch { expected: 12, actual: 11, .. })
        ));
        let t = Tensor::from_vec(s, (0..12).map(|v| v as f32).collect()).unwrap();
        assert_eq!(t.channel(0, 1).unwrap()[[1, 2]], 11.0);
        assert_eq!(t.view()[[0, 0, 1, 0]], 3.0);
    }

    #[test]
    fn concat_stacks_channels_per_image() {
        let a = Tensor::from_vec(shape(2, 1, 1, 2), vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let b = Tensor::from_vec(shape(2, 2, 1, 2), vec![5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0]).unwrap();
        let c = Tensor::concat_channels(&[&a, &b]).unwrap();
        assert_eq!(c.shape().dims(), [2, 3, 1, 2]);
        assert_eq!(c.as_slice(), &[1.0, 2.0, 5.0, 6.0, 7.0, 8.0, 3.0, 4.0, 9.0, 10.0, 11.0, 12.0]);
        let d = Tensor::zeros(shape(2, 1, 2, 1));
        assert!(matches!(Tensor::concat_channels(&[&a, &d]), Err(TensorError::ConcatMismatch { .. })));
        assert!(Tensor::concat_channels(&[]).is_err());
        let mut e = Tensor::zeros(shape(2, 3, 1, 2));
        assert!(matches!(e.write_channels(2, &b), Err(TensorError::ChannelRange { channel0: 2, .. })));
        e.write_channels(1, &b).unwrap();
        assert_eq!(e.as_slice(), &[0.0, 0.0, 5.0, 6.0, 7.0, 8.0, 0.0, 0.0, 9.0, 10.0, 11.0, 12.0]);
    }

    #[test]
    fn views_reject_out_of_range_indices() {
        let t = Tensor::zeros(shape(2, 3, 1, 1));
        assert!(t.image(1).is_ok());
        assert!(matches!(t.image(2), Err(TensorError::IndexOutOfRange { axis: "image", index: 2, .. })));
        assert!(matches!(t.channel(0, 3), Err(TensorError::IndexOutOfRange { axis: "channel", .. })));
        assert_eq!(t.image_slice(1).unwrap().len(), 3);
    }

    #[test]
    fn from_array_accepts_any_memory_order_and_rejects_empty() {
        let a = Array4::from_shape_fn((1, 2, 3, 4), |(_, c, y, x)| (c * 100 + y * 10 + x) as f32);
        let t = Tensor::from_array(a.clone().reversed_axes().reversed_axes()).unwrap();
        let mut permuted = a.clone().permuted_axes([0, 1, 3, 2]);
        permuted.swap_axes(2, 3);
        let u = Tensor::from_array(permuted).unwrap();
        assert_eq!(t, u);
        assert_eq!(u.as_slice()[5], 11.0);
        assert!(matches!(Tensor::from_array(Array4::zeros((1, 0, 2, 2))), Err(TensorError::ZeroDimension { .. })));
    }
}
