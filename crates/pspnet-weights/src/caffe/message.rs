//! The binary `NetParameter`: its layers, their blobs and parameters,
//! decoded by field number from the fork's `caffe.proto`.

use super::wire::{Fields, Stream, Value, WireError, floats, varints};
use super::{Blob, CaffeLayer, CaffeNet, ConvolutionFields, ConvolutionParam, InterpParam, PoolMethod, PoolingParam};

/// A decoding error, with the layer it happened in when known.
#[derive(Debug)]
pub(super) struct MessageError {
    pub(super) offset: usize,
    pub(super) layer: Option<String>,
    pub(super) reason: String,
}

impl From<WireError> for MessageError {
    fn from(e: WireError) -> Self {
        MessageError { offset: e.offset, layer: None, reason: e.reason }
    }
}

/// `NetParameter`: `name` = 1, `layer` = 100; the deprecated V1 `layers` = 2
/// is refused (PSPNet's files never use it).
pub(super) fn net(data: &[u8]) -> Result<CaffeNet, MessageError> {
    let mut net = CaffeNet::default();
    let mut fields = Fields::new(data, 0);
    while let Some(field) = fields.next_field() {
        if let (number, Value::Bytes(bytes, at)) = field? {
            top_level(&mut net, number, bytes, at)?;
        }
    }
    finish(net)
}

/// [`net`] read from a stream of `len` bytes, one layer at a time.
pub(super) fn net_from(reader: impl std::io::Read, len: usize) -> Result<CaffeNet, MessageError> {
    let mut net = CaffeNet::default();
    let mut stream = Stream::new(reader, len);
    while let Some((number, bytes, at)) = stream.next_bytes()? {
        top_level(&mut net, number, bytes, at)?;
    }
    finish(net)
}

/// A length-delimited field of the `NetParameter`.
fn top_level(net: &mut CaffeNet, number: u32, bytes: &[u8], at: usize) -> Result<(), MessageError> {
    match number {
        1 => net.name = Some(string(bytes, at)?),
        100 => net.layers.push(layer(bytes, at)?),
        2 => {
            let reason = "V1 `layers` (field 2) of an old Caffe; only `layer` (field 100) is read".into();
            return Err(MessageError { offset: at, layer: None, reason });
        }
        _ => {}
    }
    Ok(())
}

fn finish(net: CaffeNet) -> Result<CaffeNet, MessageError> {
    if net.layers.is_empty() {
        let reason = "no layer (field 100): not a Caffe NetParameter".into();
        return Err(MessageError { offset: 0, layer: None, reason });
    }
    Ok(net)
}

fn string(bytes: &[u8], at: usize) -> Result<String, WireError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| WireError { offset: at, reason: "a string is not UTF-8".into() })
}

/// `LayerParameter`; an error inside names the layer when its name came first.
fn layer(data: &[u8], base: usize) -> Result<CaffeLayer, MessageError> {
    let mut layer = CaffeLayer::default();
    let mut fields = Fields::new(data, base);
    let mut read = || -> Result<(), WireError> {
        while let Some(field) = fields.next_field() {
            match field? {
                (1, Value::Bytes(b, at)) => layer.name = string(b, at)?,
                (2, Value::Bytes(b, at)) => layer.kind = string(b, at)?,
                (3, Value::Bytes(b, at)) => layer.bottoms.push(string(b, at)?),
                (4, Value::Bytes(b, at)) => layer.tops.push(string(b, at)?),
                (7, Value::Bytes(b, at)) => layer.blobs.push(blob(b, at)?),
                (106, Value::Bytes(b, at)) => layer.convolution = Some(convolution(b, at)?),
                (121, Value::Bytes(b, at)) => layer.pooling = Some(pooling(b, at)?),
                (143 | 163, Value::Bytes(b, at)) => layer.interp = Some(interp(b, at)?),
                // The current fork's `bn_param` (eps = 4) and the older one's (eps = 8).
                (152, Value::Bytes(b, at)) => layer.bn_eps = bn_eps(b, at, 4)?,
                (137, Value::Bytes(b, at)) if layer.kind.starts_with("BN") => layer.bn_eps = bn_eps(b, at, 8)?,
                _ => {}
            }
        }
        Ok(())
    };
    let result = read();
    result.map_err(|e| MessageError {
        offset: e.offset,
        layer: Some(layer.name.clone()).filter(|n| !n.is_empty()),
        reason: e.reason,
    })?;
    Ok(layer)
}

/// `BlobProto`: `shape` = 7 (`BlobShape.dim` = 1, packed int64), `data` = 5
/// (packed float), or the legacy `num`, `channels`, `height`, `width` = 1-4.
fn blob(data: &[u8], base: usize) -> Result<Blob, WireError> {
    let (mut shape, mut legacy, mut values) = (None, [None; 4], Vec::new());
    let mut fields = Fields::new(data, base);
    while let Some(field) = fields.next_field() {
        match field? {
            (7, Value::Bytes(b, at)) => shape = Some(blob_shape(b, at)?),
            (5, Value::Bytes(b, at)) => values.extend(floats(b, at)?),
            (5, Value::Fixed32(bits)) => values.push(f32::from_bits(bits)),
            (n @ 1..=4, Value::Varint(v)) => legacy[n as usize - 1] = Some(dimension(v as i64, base)?),
            _ => {}
        }
    }
    let shape = match shape {
        Some(shape) => shape,
        None if legacy.iter().any(Option::is_some) => legacy.map(|d| d.unwrap_or(0)).to_vec(),
        None => vec![values.len()],
    };
    let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    if count != Some(values.len()) {
        let reason = format!("a blob of shape {shape:?} holds {} values", values.len());
        return Err(WireError { offset: base, reason });
    }
    Ok(Blob { shape, data: values })
}

/// `BlobShape.dim`, packed or not.
fn blob_shape(data: &[u8], base: usize) -> Result<Vec<usize>, WireError> {
    let mut dims = Vec::new();
    let mut fields = Fields::new(data, base);
    while let Some(field) = fields.next_field() {
        match field? {
            (1, Value::Bytes(b, at)) => dims.extend(varints(b, at)?),
            (1, Value::Varint(v)) => dims.push(v),
            _ => {}
        }
    }
    dims.into_iter().map(|d| dimension(d as i64, base)).collect()
}

/// A dimension as Caffe stores it (a signed integer), refused if negative.
fn dimension(value: i64, at: usize) -> Result<usize, WireError> {
    usize::try_from(value).map_err(|_| WireError { offset: at, reason: format!("blob dimension {value} is negative") })
}

/// Repeated `uint32`s of one field, packed or not, appended to `values`.
fn uints(value: Value<'_>, values: &mut Vec<u32>) -> Result<(), WireError> {
    let too_large = |v: u64, at| WireError { offset: at, reason: format!("{v} does not fit 32 bits") };
    match value {
        Value::Varint(v) => values.push(u32::try_from(v).map_err(|_| too_large(v, 0))?),
        Value::Bytes(b, at) => {
            for v in varints(b, at)? {
                values.push(u32::try_from(v).map_err(|_| too_large(v, at))?);
            }
        }
        _ => {}
    }
    Ok(())
}

/// A varint field as a `u32`.
fn small(v: u64, at: usize) -> Result<u32, WireError> {
    u32::try_from(v).map_err(|_| WireError { offset: at, reason: format!("{v} does not fit 32 bits") })
}

/// `ConvolutionParameter`.
fn convolution(data: &[u8], base: usize) -> Result<ConvolutionParam, WireError> {
    let mut c = ConvolutionFields::default();
    let mut fields = Fields::new(data, base);
    while let Some(field) = fields.next_field() {
        match field? {
            (1, Value::Varint(v)) => c.param.num_output = Some(small(v, base)?),
            (2, Value::Varint(v)) => c.param.bias_term = Some(v != 0),
            (3, v) => uints(v, &mut c.pad)?,
            (4, v) => uints(v, &mut c.kernel)?,
            (5, Value::Varint(v)) => c.param.group = Some(small(v, base)?),
            (6, v) => uints(v, &mut c.stride)?,
            // `dilation` (current), `hole_h` (older fork): one value each way.
            (18, v) => uints(v, &mut c.dilation)?,
            // The older fork's `hole`; in stock Caffe 17 is `force_nd_im2col`,
            // whose 0 or 1 say nothing about dilation.
            (17, Value::Varint(v)) if v > 1 => c.hole = Some(small(v, base)?),
            (19, Value::Varint(v)) => c.hole_w = Some(small(v, base)?),
            (n @ 9..=14, Value::Varint(v)) => c.hw[n as usize - 9] = Some(small(v, base)?),
            _ => {}
        }
    }
    Ok(c.finish())
}

/// `PoolingParameter`.
fn pooling(data: &[u8], base: usize) -> Result<PoolingParam, WireError> {
    let mut p =
        PoolingParam { method: PoolMethod::Max, kernel: [None; 2], stride: [None; 2], pad: [None; 2], global: false };
    let mut single = [None; 3];
    let mut hw = [None; 6];
    let mut fields = Fields::new(data, base);
    while let Some(field) = fields.next_field() {
        match field? {
            (1, Value::Varint(v)) => {
                p.method = match v {
                    0 => PoolMethod::Max,
                    1 => PoolMethod::Average,
                    2 => PoolMethod::Stochastic,
                    other => return Err(WireError { offset: base, reason: format!("pooling method {other}") }),
                }
            }
            (n @ 2..=4, Value::Varint(v)) => single[n as usize - 2] = Some(small(v, base)?),
            (n @ 5..=10, Value::Varint(v)) => hw[n as usize - 5] = Some(small(v, base)?),
            (12, Value::Varint(v)) => p.global = v != 0,
            _ => {}
        }
    }
    let [kernel, stride, pad] = single;
    let [kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w] = hw;
    p.kernel = [kernel_h.or(kernel), kernel_w.or(kernel)];
    p.stride = [stride_h.or(stride), stride_w.or(stride)];
    p.pad = [pad_h.or(pad), pad_w.or(pad)];
    Ok(p)
}

/// The fork's `InterpParameter`: `height` = 1, `width` = 2, `zoom_factor` =
/// 3, `shrink_factor` = 4 (signed).
fn interp(data: &[u8], base: usize) -> Result<InterpParam, WireError> {
    let mut p = InterpParam::default();
    let mut fields = Fields::new(data, base);
    while let Some(field) = fields.next_field() {
        if let (n @ 1..=4, Value::Varint(v)) = field? {
            let v = i32::try_from(v as i64)
                .map_err(|_| WireError { offset: base, reason: format!("interp value {v} out of range") })?;
            match n {
                1 => p.height = Some(v),
                2 => p.width = Some(v),
                3 => p.zoom_factor = Some(v),
                _ => p.shrink_factor = Some(v),
            }
        }
    }
    Ok(p)
}

/// The fork's `BNParameter.eps`, a float in field `number`: positive and
/// finite (a corrupt one would turn every output into NaN).
fn bn_eps(data: &[u8], base: usize, number: u32) -> Result<Option<f32>, WireError> {
    let mut eps = None;
    let mut fields = Fields::new(data, base);
    while let Some(field) = fields.next_field() {
        if let (n, Value::Fixed32(bits)) = field?
            && n == number
        {
            let value = f32::from_bits(bits);
            if !(value.is_finite() && value > 0.0) {
                return Err(WireError {
                    offset: base,
                    reason: format!("batch-norm eps {value} is not a positive number"),
                });
            }
            eps = Some(value);
        }
    }
    Ok(eps)
}
