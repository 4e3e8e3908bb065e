//! Helpers shared by the integration tests.

#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::path::{Path, PathBuf};

use pspnet_weights::TensorData;

/// Path of a committed fixture.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// `expected.json`, written by xtask/python/weights_fixtures.py from what
/// torch itself reads back.
pub fn expected() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("valid JSON")
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Asserts that `t` has exactly the dtype, shape, bytes and (for floating
/// tensors) f32 values torch reported.
pub fn assert_tensor(key: &str, t: &TensorData, exp: &serde_json::Value) {
    assert_eq!(t.dtype.name(), exp["dtype"].as_str().unwrap(), "{key}: dtype");
    let shape: Vec<usize> = exp["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    assert_eq!(t.shape, shape, "{key}: shape");
    assert_eq!(hex(&t.bytes), exp["bytes_hex"].as_str().unwrap(), "{key}: bytes");
    match exp.get("values") {
        Some(values) => {
            let want: Vec<u32> =
                values.as_array().unwrap().iter().map(|v| (v.as_f64().unwrap() as f32).to_bits()).collect();
            let got: Vec<u32> = t.to_f32().unwrap().iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, want, "{key}: f32 values");
        }
        None => assert!(t.to_f32().is_err(), "{key}: integer tensor converted to f32"),
    }
}

/// Writes `bytes` to a fresh file in `dir` and returns its path.
pub fn write_temp(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(bytes).unwrap();
    path
}

/// A torch-style zip checkpoint holding `pickle` as `archive/data.pkl` and
/// the given storages as `archive/data/<key>`.
pub fn torch_zip(pickle: &[u8], storages: &[(&str, &[u8])]) -> Vec<u8> {
    torch_zip_compressed(pickle, storages, zip::CompressionMethod::Stored)
}

/// [`torch_zip`] with its entries compressed by `method`.
pub fn torch_zip_compressed(pickle: &[u8], storages: &[(&str, &[u8])], method: zip::CompressionMethod) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut out);
        let options = zip::write::SimpleFileOptions::default().compression_method(method);
        zip.start_file("archive/data.pkl", options).unwrap();
        zip.write_all(pickle).unwrap();
        zip.start_file("archive/byteorder", options).unwrap();
        zip.write_all(b"little").unwrap();
        for (key, bytes) in storages {
            zip.start_file(format!("archive/data/{key}"), options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
    }
    out.into_inner()
}

/// Pickle bytes for `{'state_dict': {'w': <tensor>}}` whose tensor views a
/// float32 storage `'0'` of `storage_numel` elements with the given size,
/// stride and offset (all encoded as 8-byte LONG1 integers).
pub fn tensor_pickle(storage_numel: u64, offset: u64, size: &[u64], stride: &[u64]) -> Vec<u8> {
    fn long(out: &mut Vec<u8>, v: u64) {
        out.extend_from_slice(&[0x8a, 9]);
        out.extend_from_slice(&v.to_le_bytes());
        out.push(0);
    }
    let mut p = vec![0x80, 2, b'}', b'X'];
    p.extend_from_slice(&10u32.to_le_bytes());
    p.extend_from_slice(b"state_dict");
    p.extend_from_slice(b"}X");
    p.extend_from_slice(&1u32.to_le_bytes());
    p.push(b'w');
    p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
    p.extend_from_slice(b"(X");
    p.extend_from_slice(&7u32.to_le_bytes());
    p.extend_from_slice(b"storagectorch\nFloatStorage\nX");
    p.extend_from_slice(&1u32.to_le_bytes());
    p.extend_from_slice(b"0X");
    p.extend_from_slice(&3u32.to_le_bytes());
    p.extend_from_slice(b"cpu");
    long(&mut p, storage_numel);
    p.extend_from_slice(b"tQ");
    long(&mut p, offset);
    p.push(b'(');
    for &d in size {
        long(&mut p, d);
    }
    p.extend_from_slice(b"t(");
    for &s in stride {
        long(&mut p, s);
    }
    p.extend_from_slice(b"t\x89ccollections\nOrderedDict\n)RtRss.");
    p
}
