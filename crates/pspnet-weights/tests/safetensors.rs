//! safetensors reading (against the Python package's output) and round trips.

mod common;

use std::collections::BTreeMap;

use common::{assert_tensor, expected, fixture};
use pspnet_weights::{
    DType, Format, StateDict, TensorData, Value, WeightsError, load, load_safetensors, save_safetensors,
};

#[test]
fn python_safetensors_file_matches() {
    let exp = expected();
    let (sd, metadata) = load_safetensors(&fixture("tensors.safetensors")).unwrap();
    let want = exp["safetensors"].as_object().unwrap();
    assert_eq!(sd.len(), want.len());
    for (key, e) in want {
        assert_tensor(key, sd.get(key).unwrap(), e);
    }
    let want_meta: BTreeMap<String, String> = serde_json::from_value(exp["safetensors_metadata"].clone()).unwrap();
    assert_eq!(metadata, want_meta);

    let ckpt = load(&fixture("tensors.safetensors")).unwrap();
    assert_eq!(ckpt.format, Format::Safetensors);
    assert_eq!(ckpt.state_dict, sd);
    assert_eq!(ckpt.extra.get("classes").and_then(Value::as_str), Some("wall,floor,sky"));
}

fn half_tensor(dtype: DType, shape: Vec<usize>, values: &[f32]) -> TensorData {
    let bytes = values
        .iter()
        .flat_map(|&v| match dtype {
            DType::F16 => half::f16::from_f32(v).to_le_bytes(),
            _ => half::bf16::from_f32(v).to_le_bytes(),
        })
        .collect();
    TensorData { dtype, shape, bytes }
}

#[test]
fn round_trip_keeps_tensors_and_metadata() {
    let mut sd = StateDict::default();
    sd.tensors.insert(
        "conv.weight".into(),
        TensorData::from_f32(vec![2, 1, 2, 2], &[0.5, -1.0, 3.25, 1e-8, -0.0, 7.0, 2.0, 1.5]),
    );
    sd.tensors.insert("scalar".into(), TensorData::from_f32(vec![], &[42.0]));
    sd.tensors.insert("h".into(), half_tensor(DType::F16, vec![3], &[0.5, -2.0, 65504.0]));
    sd.tensors.insert("b".into(), half_tensor(DType::BF16, vec![1, 2], &[1.0, -3.0e38]));
    sd.tensors.insert("n".into(), TensorData { dtype: DType::I64, shape: vec![], bytes: 9i64.to_le_bytes().to_vec() });
    let metadata: BTreeMap<String, String> =
        [("format", "pt"), ("classes", "a,b")].into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    save_safetensors(&path, &sd, &metadata).unwrap();
    let (back, meta_back) = load_safetensors(&path).unwrap();
    assert_eq!(back, sd);
    assert_eq!(meta_back, metadata);
    assert_eq!(back.f32("h").unwrap().1, [0.5, -2.0, 65504.0]);
    assert_eq!(back.f32("b").unwrap().1, [1.0, half::bf16::from_f32(-3.0e38).to_f32()]);

    // Overwriting leaves exactly one file, and no temporary behind.
    save_safetensors(&path, &sd, &BTreeMap::new()).unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["model.safetensors"]);
    assert!(load_safetensors(&path).unwrap().1.is_empty());
}

#[test]
fn inconsistent_tensor_is_refused_and_the_old_file_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let mut good = StateDict::default();
    good.tensors.insert("w".into(), TensorData::from_f32(vec![2], &[1.0, 2.0]));
    save_safetensors(&path, &good, &BTreeMap::new()).unwrap();
    let before = std::fs::read(&path).unwrap();
    let mut bad = StateDict::default();
    bad.tensors.insert("w".into(), TensorData::from_f32(vec![3], &[1.0, 2.0]));
    let err = save_safetensors(&path, &bad, &BTreeMap::new()).unwrap_err();
    assert!(matches!(err, WeightsError::BadTensor { .. }), "{err:?}");
    assert!(err.to_string().contains("`w`"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn truncated_safetensors_is_an_error() {
    let bytes = std::fs::read(fixture("tensors.safetensors")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for cut in 0..bytes.len() {
        let path = dir.path().join("cut.safetensors");
        std::fs::write(&path, &bytes[..cut]).unwrap();
        assert!(load_safetensors(&path).is_err(), "cut at {cut}");
        assert!(load(&path).is_err(), "cut at {cut}");
    }
}
