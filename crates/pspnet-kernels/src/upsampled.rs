//! A convolution of a bilinearly upsampled map, computed at the map's own
//! resolution.
//!
//! Upsampling acts on the pixels and a convolution's channel mixing on the
//! channels, and both are linear, so they commute: mixing the channels of
//! each kernel tap first, on the small map, and interpolating the mixed
//! maps afterwards gives `conv(resize_bilinear(x))` with `kh x kw` matrix
//! products at the small map's size instead of one at full size. PSPNet's
//! head convolves 4096 channels of which 2048 are the pyramid's levels,
//! upsampled from 1x1 to 6x6 bins: computed this way, they cost a few
//! hundredths of what they cost at 60x60, and the largest layer of the
//! network halves.

use pspnet_tensor::{Shape, Tensor};
use rayon::prelude::*;

use crate::geometry::output_len;
use crate::resize::{Taps, blend_rows, taps};
use crate::{Conv2d, ConvOptions, ConvSpec, KernelError};

/// `conv(resize_bilinear(x, size, align_corners))` for a stride-1
/// convolution without bias (add the bias, batch-norm and activation to
/// the full-size sum this is part of).
#[derive(Debug, Clone)]
pub struct UpsampledConv {
    /// Output channel `t * O + o` mixes the input channels as tap `t`
    /// (row-major in the kernel window) of output channel `o` does.
    mix: Conv2d,
    dims: [usize; 4],
    spec: ConvSpec,
    align_corners: bool,
}

impl UpsampledConv {
    /// From OIHW weights `[out, in, kh, kw]`; `align_corners` is the
    /// upsampling's convention (as in [`crate::resize_bilinear`]); the
    /// channel mixing runs as `options` say.
    pub fn new(
        weight: &Tensor,
        spec: ConvSpec,
        align_corners: bool,
        options: ConvOptions,
    ) -> Result<Self, KernelError> {
        if spec.stride != [1, 1] {
            return Err(KernelError::InvalidParameter { what: "upsampled convolution stride", value: spec.stride });
        }
        let dims = weight.shape().dims();
        let [outs, ins, kh, kw] = dims;
        let taps = kh * kw;
        let w = weight.as_slice();
        let mixed = Tensor::from_fn(Shape::new(taps * outs, ins, 1, 1)?, |row, c, _, _| {
            let (tap, o) = (row / outs, row % outs);
            w[(o * ins + c) * taps + tap]
        });
        let mix = Conv2d::with_options(mixed, ConvSpec::default(), options)?;
        Ok(UpsampledConv { mix, dims, spec, align_corners })
    }

    /// Channels of the map it upsamples.
    pub fn in_channels(&self) -> usize {
        self.dims[1]
    }

    /// Weights, as the checkpoint counts them.
    pub fn parameters(&self) -> usize {
        self.dims.iter().product()
    }

    /// The convolution that mixes the channels, for a model switching the
    /// arithmetic of every layer.
    pub fn mix_mut(&mut self) -> &mut Conv2d {
        &mut self.mix
    }

    /// The output shape for `x` upsampled to `size`, or why it is refused.
    pub fn output_shape(&self, x: Shape, size: [usize; 2]) -> Result<Shape, KernelError> {
        let [outs, ins, kh, kw] = self.dims;
        if x.c() != ins {
            return Err(KernelError::ChannelMismatch { input: x, weight: self.dims, expected: ins, got: x.c() });
        }
        if size.contains(&0) {
            return Err(KernelError::InvalidParameter { what: "resize output size", value: size });
        }
        let up = x.with_hw(size[0], size[1])?;
        let [(ph, pw), (dh, dw)] =
            [(self.spec.padding[0], self.spec.padding[1]), (self.spec.dilation[0], self.spec.dilation[1])];
        let oh = output_len("convolution", "height", up, size[0], kh, 1, ph, dh)?;
        let ow = output_len("convolution", "width", up, size[1], kw, 1, pw, dw)?;
        Ok(Shape::new(x.n(), outs, oh, ow)?)
    }

    /// Floating-point operations of the full-size convolution this stands
    /// for (2 per multiply-add), so that a model's count stays the
    /// network's, whatever shortcut runs it.
    pub fn flops(&self, x: Shape, size: [usize; 2]) -> Result<u64, KernelError> {
        let out = self.output_shape(x, size)?;
        let depth = (self.dims[1] * self.dims[2] * self.dims[3]) as u64;
        (out.len() as u64).checked_mul(2 * depth).ok_or(KernelError::Overflow { what: "FLOP count" })
    }

    /// Adds `conv(resize_bilinear(x, size))` to `out`, which must have
    /// [`UpsampledConv::output_shape`].
    pub fn accumulate(&self, x: &Tensor, size: [usize; 2], out: &mut Tensor) -> Result<(), KernelError> {
        let shape = self.output_shape(x.shape(), size)?;
        if out.shape() != shape {
            return Err(KernelError::ShapeMismatch { what: "output", expected: shape, got: out.shape() });
        }
        let s = x.shape();
        let mixed = self.mix.forward(x)?;
        let window = Window::new(self, size, [s.h(), s.w()], [shape.h(), shape.w()]);
        let isa = self.mix.isa();
        for n in 0..s.n() {
            let mixed = mixed.image_slice(n)?;
            out.image_slice_mut(n)?.par_chunks_mut(shape.plane_len()).enumerate().for_each(|(o, plane)| {
                let tap_plane = |tap: usize| &mixed[(tap * self.dims[0] + o) * s.plane_len()..][..s.plane_len()];
                let rows = window.mix_columns(tap_plane);
                window.add_rows(isa, &rows, plane);
            });
        }
        Ok(())
    }
}

/// The geometry of one [`UpsampledConv::accumulate`] call: for each kernel
/// row (column) and output row (column), the interpolation taps of the
/// full-size input row (column) it reads, or `None` in the padding;
/// computed once for every output channel.
struct Window {
    kernel: [usize; 2],
    /// The small map's height and the output's width.
    small_h: usize,
    out_w: usize,
    /// `kh x oh` taps along the rows.
    ys: Vec<Option<Taps>>,
    /// `kw x ow` taps along the columns.
    xs: Vec<Option<Taps>>,
}

impl Window {
    fn new(conv: &UpsampledConv, size: [usize; 2], small: [usize; 2], out: [usize; 2]) -> Window {
        let [_, _, kh, kw] = conv.dims;
        let axis = |a: usize, k: usize| {
            let resize = taps(size[a], small[a], conv.align_corners);
            let (d, p) = (conv.spec.dilation[a], conv.spec.padding[a]);
            (0..k)
                .flat_map(|tap| (0..out[a]).map(move |o| (o + tap * d).checked_sub(p).filter(|&i| i < size[a])))
                .map(|i| i.map(|i| resize[i]))
                .collect()
        };
        Window { kernel: [kh, kw], small_h: small[0], out_w: out[1], ys: axis(0, kh), xs: axis(1, kw) }
    }

    /// For each kernel row `i` and small-map row `r`: the sum over kernel
    /// columns `j` of tap `(i, j)`'s mixed row, interpolated at the input
    /// column each output column reads through `j` (`kh x small height`
    /// rows of output width).
    fn mix_columns<'a>(&self, tap_plane: impl Fn(usize) -> &'a [f32]) -> Vec<f32> {
        let ([kh, kw], h, ow) = (self.kernel, self.small_h, self.out_w);
        let mut rows = vec![0.0f32; kh * h * ow];
        for i in 0..kh {
            for (j, xs) in self.xs.chunks_exact(ow).enumerate() {
                let tap = tap_plane(i * kw + j);
                let w = tap.len() / h;
                for (r, row) in rows[i * h * ow..][..h * ow].chunks_exact_mut(ow).enumerate() {
                    let src = &tap[r * w..][..w];
                    for (value, t) in row.iter_mut().zip(xs) {
                        if let Some(t) = t {
                            *value += t.w0 * src[t.i0] + t.w1 * src[t.i1];
                        }
                    }
                }
            }
        }
        rows
    }

    /// Adds to each output row the interpolation, between the rows of
    /// [`Window::mix_columns`], at the input row it reads through each
    /// kernel row.
    fn add_rows(&self, isa: crate::Isa, rows: &[f32], plane: &mut [f32]) {
        let (h, ow) = (self.small_h, self.out_w);
        let oh = plane.len() / ow;
        for (i, ys) in self.ys.chunks_exact(oh).enumerate() {
            for (out_row, t) in plane.chunks_exact_mut(ow).zip(ys) {
                if let Some(t) = t {
                    let row = |r: usize| &rows[(i * h + r) * ow..][..ow];
                    blend_rows(isa, t, row(t.i0), row(t.i1), out_row, true);
                }
            }
        }
    }
}
