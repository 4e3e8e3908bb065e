//! The authors' original Caffe release: `.caffemodel` files (binary
//! protobuf `NetParameter` messages of hszhao/PSPNet's Caffe fork) and
//! deploy `.prototxt` files (the same messages in protobuf's text format).
//!
//! Both are read into a [`CaffeNet`]: its layers in order, each with its
//! name, type, blobs and the few parameters a PSPNet needs (convolution,
//! pooling, interpolation, batch-norm). Fields are read by number (the
//! fork numbers some of its own: `interp_param` is 143 and `bn_param` 152,
//! where stock Caffe has other messages; an earlier revision of the fork
//! used 163 and 137, read too), and every field this reader does not need
//! is skipped, so files saved by Caffe itself and the released files with
//! their training platform's layer types both read. What the layers mean
//! as a network is the model crate's business.

mod message;
mod text;
mod wire;

use std::path::Path;

use crate::WeightsError;

/// A Caffe network: its layers in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CaffeNet {
    /// The network's name, if it has one.
    pub name: Option<String>,
    /// The layers, in order.
    pub layers: Vec<CaffeLayer>,
}

/// One layer of a [`CaffeNet`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CaffeLayer {
    /// Its name (`conv3_1_1x1_reduce`, `conv5_4/bn`).
    pub name: String,
    /// Its type string (`Convolution`, `BN`, `Interp`, or a training
    /// platform's `ConvolutionData`, `BNData`, ...).
    pub kind: String,
    /// The blobs it reads.
    pub bottoms: Vec<String>,
    /// The blobs it writes.
    pub tops: Vec<String>,
    /// Its learned parameters, in order (a convolution: weight, then bias
    /// if it has one; a batch-norm: slope, bias, mean, variance).
    pub blobs: Vec<Blob>,
    /// Its `convolution_param`, if present.
    pub convolution: Option<ConvolutionParam>,
    /// Its `pooling_param`, if present.
    pub pooling: Option<PoolingParam>,
    /// Its `interp_param`, if present.
    pub interp: Option<InterpParam>,
    /// The `eps` of its `bn_param`, if given.
    pub bn_eps: Option<f32>,
}

/// A learned array: its shape and its values, C order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Blob {
    /// The dimensions (from `shape`, or the legacy num, channels, height, width).
    pub shape: Vec<usize>,
    /// The values; as many as the shape holds.
    pub data: Vec<f32>,
}

/// A convolution's geometry, as the layer states it (absent values are
/// Caffe's defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConvolutionParam {
    /// Output channels.
    pub num_output: Option<u32>,
    /// Whether a bias blob follows the weight (Caffe's default: true).
    pub bias_term: Option<bool>,
    /// Kernel size per axis `[h, w]`.
    pub kernel: [Option<u32>; 2],
    /// Stride per axis (default 1).
    pub stride: [Option<u32>; 2],
    /// Zero padding per axis (default 0).
    pub pad: [Option<u32>; 2],
    /// Dilation per axis (default 1).
    pub dilation: [Option<u32>; 2],
    /// Groups (default 1).
    pub group: Option<u32>,
}

/// How a pooling layer pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMethod {
    /// The maximum of each window.
    Max,
    /// The mean of each window.
    Average,
    /// Caffe's stochastic pooling (training only).
    Stochastic,
}

/// A pooling layer's geometry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolingParam {
    /// Max (Caffe's default), average or stochastic.
    pub method: PoolMethod,
    /// Window per axis.
    pub kernel: [Option<u32>; 2],
    /// Stride per axis (default 1).
    pub stride: [Option<u32>; 2],
    /// Padding per axis (default 0).
    pub pad: [Option<u32>; 2],
    /// Pool over the whole map.
    pub global: bool,
}

/// The fork's `Interp` layer: bilinear resizing with aligned corners, to a
/// size or by a factor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterpParam {
    /// Output height, if given.
    pub height: Option<i32>,
    /// Output width, if given.
    pub width: Option<i32>,
    /// `(in - 1) * zoom + 1`, if given.
    pub zoom_factor: Option<i32>,
    /// `(in - 1) / shrink + 1`, if given.
    pub shrink_factor: Option<i32>,
}

/// One value per axis from a repeated field (one value: both axes) and
/// its `_h` / `_w` overrides.
fn per_axis(repeated: &[u32], h: Option<u32>, w: Option<u32>) -> [Option<u32>; 2] {
    let [a, b] = match repeated {
        [] => [None, None],
        [v] => [Some(*v), Some(*v)],
        [a, b, ..] => [Some(*a), Some(*b)],
    };
    [h.or(a), w.or(b)]
}

/// A `convolution_param`'s fields as either format gives them, before the
/// values per axis are settled.
#[derive(Default)]
struct ConvolutionFields {
    param: ConvolutionParam,
    pad: Vec<u32>,
    kernel: Vec<u32>,
    stride: Vec<u32>,
    dilation: Vec<u32>,
    /// The older fork's `hole` (its name for dilation, both axes) and `hole_w`.
    hole: Option<u32>,
    hole_w: Option<u32>,
    /// `pad_h`, `pad_w`, `kernel_h`, `kernel_w`, `stride_h`, `stride_w`.
    hw: [Option<u32>; 6],
}

impl ConvolutionFields {
    fn finish(self) -> ConvolutionParam {
        let [pad_h, pad_w, kernel_h, kernel_w, stride_h, stride_w] = self.hw;
        ConvolutionParam {
            pad: per_axis(&self.pad, pad_h, pad_w),
            kernel: per_axis(&self.kernel, kernel_h, kernel_w),
            stride: per_axis(&self.stride, stride_h, stride_w),
            dilation: per_axis(&self.dilation, None, self.hole_w).map(|d| d.or(self.hole)),
            ..self.param
        }
    }
}

/// Reads a `.caffemodel` (binary protobuf); `path` names it in errors.
pub fn read_caffemodel(path: &Path, data: &[u8]) -> Result<CaffeNet, WeightsError> {
    message::net(data).map_err(|e| protobuf_error(path, e))
}

/// Reads a `.caffemodel` from a stream of `len` bytes (an open file), one
/// layer at a time, so that the file is never held in memory beside its
/// weights; `path` names it in errors.
pub fn read_caffemodel_from(path: &Path, reader: impl std::io::Read, len: u64) -> Result<CaffeNet, WeightsError> {
    let len = usize::try_from(len).map_err(|_| WeightsError::Protobuf {
        path: path.to_path_buf(),
        offset: 0,
        layer: None,
        reason: format!("{len} bytes do not fit this machine's memory"),
    })?;
    message::net_from(reader, len).map_err(|e| protobuf_error(path, e))
}

fn protobuf_error(path: &Path, e: message::MessageError) -> WeightsError {
    WeightsError::Protobuf { path: path.to_path_buf(), offset: e.offset as u64, layer: e.layer, reason: e.reason }
}

/// Reads a deploy `.prototxt` (protobuf text format); `path` names it in
/// errors.
pub fn read_prototxt(path: &Path, text: &str) -> Result<CaffeNet, WeightsError> {
    text::net(text).map_err(|e| WeightsError::Prototxt { path: path.to_path_buf(), line: e.line, reason: e.reason })
}
