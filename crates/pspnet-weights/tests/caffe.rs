//! The Caffe readers on hand-encoded `NetParameter`s: what they read, and
//! hostile or corrupt files refused with an error naming the offset or the
//! layer, never a panic.

use std::path::Path;

use proptest::prelude::*;
use pspnet_weights::WeightsError;
use pspnet_weights::caffe::{Blob, read_caffemodel, read_caffemodel_from, read_prototxt};

/// Protobuf's varint.
fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// A field of wire type 2 (bytes, a message, a packed array).
fn bytes(field: u64, data: &[u8]) -> Vec<u8> {
    [varint(field << 3 | 2), varint(data.len() as u64), data.to_vec()].concat()
}

/// A field of wire type 0.
fn number(field: u64, v: u64) -> Vec<u8> {
    [varint(field << 3), varint(v)].concat()
}

fn floats(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A `BlobProto` with a `BlobShape`.
fn blob(shape: &[i64], values: &[f32]) -> Vec<u8> {
    let dims: Vec<u8> = shape.iter().flat_map(|&d| varint(d as u64)).collect();
    [bytes(7, &bytes(1, &dims)), bytes(5, &floats(values))].concat()
}

/// A `LayerParameter`.
fn layer(name: &str, kind: &str, rest: &[Vec<u8>]) -> Vec<u8> {
    [vec![bytes(1, name.as_bytes()), bytes(2, kind.as_bytes())], rest.to_vec()].concat().concat()
}

/// A small network as Caffe saves one: a convolution with a bias in the
/// legacy 4-D blob form, a batch-norm with its eps in the fork's field, an
/// Interp, a Split, and fields this reader skips.
fn network() -> Vec<u8> {
    let weight = blob(&[2, 3, 1, 1], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let legacy_bias =
        [number(1, 1), number(2, 2), number(3, 1), number(4, 1), bytes(5, &floats(&[0.5, -0.5]))].concat();
    let conv_param =
        [number(1, 2), number(2, 1), bytes(3, &varint(1)), number(4, 3), number(6, 2), number(18, 2)].concat();
    let conv = layer(
        "conv1_1_3x3_s2",
        "Convolution",
        &[
            bytes(3, b"data"),
            bytes(4, b"conv1"),
            number(10, 1),
            bytes(7, &weight),
            bytes(7, &legacy_bias),
            bytes(106, &conv_param),
        ],
    );
    let stats: Vec<Vec<u8>> = (0..4).map(|i| bytes(7, &blob(&[1, 2, 1, 1], &[i as f32, 1.0]))).collect();
    let eps = [vec![0x25], 1e-3f32.to_le_bytes().to_vec()].concat();
    let bn = layer("conv1_1_3x3_s2/bn", "BNData", &[stats.concat(), bytes(152, &eps)]);
    let interp = layer("pool6_interp", "Interp", &[bytes(143, &[number(1, 60), number(2, 61)].concat())]);
    let split = layer("conv5_3_split", "Split", &[bytes(3, b"conv5_3"), bytes(4, b"conv5_3_conv5_3_0_split_0")]);
    [
        bytes(1, b"pspnet"),
        bytes(999, b"skipped"),
        bytes(100, &conv),
        bytes(100, &bn),
        bytes(100, &interp),
        bytes(100, &split),
    ]
    .concat()
}

#[test]
fn reads_layers_blobs_and_parameters() {
    let net = read_caffemodel(Path::new("net.caffemodel"), &network()).unwrap();
    let data = network();
    assert_eq!(read_caffemodel_from(Path::new("net.caffemodel"), &data[..], data.len() as u64).unwrap(), net);
    assert_eq!(net.name.as_deref(), Some("pspnet"));
    let names: Vec<&str> = net.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["conv1_1_3x3_s2", "conv1_1_3x3_s2/bn", "pool6_interp", "conv5_3_split"]);
    let conv = &net.layers[0];
    assert_eq!(
        (conv.kind.as_str(), conv.bottoms.as_slice(), conv.tops.as_slice()),
        ("Convolution", &["data".to_string()][..], &["conv1".to_string()][..])
    );
    assert_eq!(conv.blobs[0], Blob { shape: vec![2, 3, 1, 1], data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0] });
    assert_eq!(conv.blobs[1], Blob { shape: vec![1, 2, 1, 1], data: vec![0.5, -0.5] });
    let p = conv.convolution.as_ref().unwrap();
    assert_eq!((p.num_output, p.bias_term, p.pad, p.kernel), (Some(2), Some(true), [Some(1); 2], [Some(3); 2]));
    assert_eq!((p.stride, p.dilation, p.group), ([Some(2); 2], [Some(2); 2], None));
    let bn = &net.layers[1];
    assert_eq!((bn.blobs.len(), bn.blobs[3].data.as_slice(), bn.bn_eps), (4, &[3.0, 1.0][..], Some(1e-3)));
    let interp = net.layers[2].interp.as_ref().unwrap();
    assert_eq!((interp.height, interp.width, interp.zoom_factor), (Some(60), Some(61), None));
    assert_eq!(net.layers[3].tops, ["conv5_3_conv5_3_0_split_0"]);
}

/// The older fork (hszhao/PSPNet at 88d0b3e): dilation is `hole` (field 17)
/// with `hole_w` (19), `bn_param` is field 137 with eps in field 8 (its field
/// 4, `moving_average`, is a bool), and `interp_param` is 163. Stock Caffe's
/// `force_nd_im2col` (also 17) set to 1 says nothing about dilation.
#[test]
fn reads_the_older_forks_field_numbers() {
    let hole =
        layer("conv5_1_3x3", "HoleConvolution", &[bytes(106, &[number(4, 3), number(3, 4), number(17, 4)].concat())]);
    let hole_w = layer("a", "HoleConvolution", &[bytes(106, &[number(17, 2), number(19, 3)].concat())]);
    let nd = layer("b", "Convolution", &[bytes(106, &number(17, 1))]);
    let eps = [number(4, 1), vec![0x45], 1e-4f32.to_le_bytes().to_vec()].concat();
    let bn = layer("conv5_1_3x3/bn", "BN", &[bytes(137, &eps)]);
    let interp = layer("conv6_interp", "Interp", &[bytes(163, &number(3, 8))]);
    let data: Vec<u8> = [hole, hole_w, nd, bn, interp].iter().flat_map(|l| bytes(100, l)).collect();
    let net = read_caffemodel(Path::new("old.caffemodel"), &data).unwrap();
    let dilation = |i: usize| net.layers[i].convolution.as_ref().unwrap().dilation;
    assert_eq!((dilation(0), dilation(1), dilation(2)), ([Some(4); 2], [Some(2), Some(3)], [None; 2]));
    assert_eq!(net.layers[3].bn_eps, Some(1e-4));
    assert_eq!(net.layers[4].interp.as_ref().unwrap().zoom_factor, Some(8));
    let text = "layer { name: \"c\" type: \"HoleConvolution\" convolution_param { kernel_size: 3 hole: 4 } }";
    let c = read_prototxt(Path::new("old.prototxt"), text).unwrap().layers[0].convolution.clone().unwrap();
    assert_eq!(c.dilation, [Some(4); 2]);
}

/// A batch-norm layer whose `bn_param` gives `eps`.
fn bn_eps(eps: f32) -> Vec<u8> {
    let param = [vec![0x25], eps.to_le_bytes().to_vec()].concat();
    bytes(100, &layer("conv5_4/bn", "BN", &[bytes(152, &param)]))
}

/// Each corruption the issue lists, with what the error must name.
#[test]
fn corrupt_files_are_refused_by_offset_or_layer() {
    let conv = |blob_bytes: Vec<u8>| bytes(100, &layer("conv6", "Convolution", &[bytes(7, &blob_bytes)]));
    let ten_byte_overflow = [vec![0x08], vec![0xff; 9], vec![0x02]].concat();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "no layer"),
        ("truncated varint", vec![0xa2], "truncated varint"),
        ("length past the end", [varint(100 << 3 | 2), varint(1000), vec![0; 3]].concat(), "runs past the end"),
        ("10-byte varint overflow", ten_byte_overflow, "overflows 64 bits"),
        ("wire type 6", vec![0x0e], "wire type 6"),
        ("wire type 7", vec![0x0f], "wire type 7"),
        ("packed floats", conv([bytes(5, &[0; 6])].concat()), "not a multiple of 4"),
        ("data against shape", conv(blob(&[2, 2], &[1.0, 2.0, 3.0])), "holds 3 values"),
        ("negative dimension", conv(blob(&[-2, 2], &[])), "negative"),
        ("2^40 elements", conv(blob(&[1 << 20, 1 << 20], &[1.0])), "holds 1 values"),
        ("product overflow", conv(blob(&[1 << 40, 1 << 40, 1 << 40], &[])), "holds 0 values"),
        ("V1 layers", bytes(2, b""), "V1"),
        ("no layer", bytes(1, b"only a name"), "no layer"),
        ("NaN eps", bn_eps(f32::NAN), "eps NaN"),
        ("negative eps", bn_eps(-1e-5), "eps -0.00001"),
    ];
    for (what, data, needle) in cases {
        let err = read_caffemodel(Path::new("bad.caffemodel"), &data).unwrap_err();
        let text = err.to_string();
        // Read from a stream, one layer at a time, the same error.
        let streamed = read_caffemodel_from(Path::new("bad.caffemodel"), &data[..], data.len() as u64).unwrap_err();
        assert_eq!(streamed.to_string(), text, "{what}");
        assert!(matches!(err, WeightsError::Protobuf { .. }), "{what}: {text}");
        assert!(text.contains("bad.caffemodel: byte ") && text.contains(needle), "{what}: {text}");
        if what.contains("floats") || what.contains("shape") || what.contains("dimension") {
            assert!(text.contains("(layer `conv6`)"), "{what}: {text}");
        }
    }
}

#[test]
fn prototxt_errors_name_the_file_and_line() {
    let err = read_prototxt(Path::new("deploy.prototxt"), "layer {\n  name: \"conv1\"\n").unwrap_err();
    assert!(matches!(err, WeightsError::Prototxt { line: 2, .. }), "{err}");
    assert!(err.to_string().starts_with("deploy.prototxt: line 2:"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary bytes are read or refused, never a panic.
    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = read_caffemodel(Path::new("random"), &data);
    }

    /// A valid file with one byte changed, or cut short, likewise.
    #[test]
    fn damaged_files_never_panic(at in 0usize..1000, byte in any::<u8>(), cut in any::<bool>()) {
        let mut data = network();
        let at = at % data.len();
        if cut { data.truncate(at) } else { data[at] = byte }
        let whole = read_caffemodel(Path::new("damaged"), &data).map_err(|e| e.to_string());
        let streamed = read_caffemodel_from(Path::new("damaged"), &data[..], data.len() as u64).map_err(|e| e.to_string());
        // Compared as printed: a damaged weight may read as NaN, which equals nothing, itself included.
        prop_assert_eq!(format!("{whole:?}"), format!("{streamed:?}"));
    }

    /// Arbitrary text is read or refused, never a panic.
    #[test]
    fn random_text_never_panics(text in "[a-z_{}:\"# \\n0-9.<>-]{0,200}") {
        let _ = read_prototxt(Path::new("random"), &text);
    }
}
