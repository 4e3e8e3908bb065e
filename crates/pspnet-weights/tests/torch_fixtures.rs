//! Checkpoints written by torch itself, compared with what torch reads back
//! from them (`expected.json`).

mod common;

use common::{assert_tensor, expected, fixture};
use pspnet_weights::{Checkpoint, DType, Format, Value, WeightsError, load, load_pth};

fn assert_state_dict_matches(ckpt: &Checkpoint, exp: &serde_json::Value) {
    let exp = exp.as_object().unwrap();
    let keys: Vec<&str> = ckpt.state_dict.keys().collect();
    let mut want: Vec<&str> = exp.keys().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(keys, want);
    for (key, e) in exp {
        assert_tensor(key, ckpt.state_dict.get(key).unwrap(), e);
    }
}

#[test]
fn zip_checkpoint_matches_torch() {
    let ckpt = load(&fixture("checkpoint_zip.pth")).unwrap();
    assert_eq!(ckpt.format, Format::TorchZip);
    assert_state_dict_matches(&ckpt, &expected()["checkpoint"]);
}

#[test]
fn legacy_checkpoint_matches_torch_and_zip() {
    let legacy = load(&fixture("checkpoint_legacy.pth")).unwrap();
    assert_eq!(legacy.format, Format::TorchLegacy);
    assert_state_dict_matches(&legacy, &expected()["checkpoint"]);
    let zip = load_pth(&fixture("checkpoint_zip.pth")).unwrap();
    assert_eq!(legacy.state_dict, zip.state_dict);
    assert_eq!(legacy.extra, zip.extra);
}

#[test]
fn views_are_gathered_from_their_storage() {
    let ckpt = load(&fixture("checkpoint_zip.pth")).unwrap();
    let sd = &ckpt.state_dict;
    // base = arange(12).reshape(3, 4) * 0.25, saved transposed.
    let (shape, t) = sd.f32("transposed").unwrap();
    assert_eq!(shape, [4, 3]);
    let want: Vec<f32> = (0..4).flat_map(|c| (0..3).map(move |r| (r * 4 + c) as f32 * 0.25)).collect();
    assert_eq!(t, want);
    // grid = arange(20).reshape(4, 5) - 7, saved as grid[1:, ::2].
    let (shape, s) = sd.f32("sliced").unwrap();
    assert_eq!(shape, [3, 3]);
    let want: Vec<f32> = (1..4).flat_map(|r| (0..5).step_by(2).map(move |c| (r * 5 + c) as f32 - 7.0)).collect();
    assert_eq!(s, want);
    // shared = arange(10) * 0.5 - 2: shared_a = shared[:6].view(2, 3),
    // shared_b = shared[4:].
    let a = sd.f32("shared_a").unwrap().1;
    let b = sd.f32("shared_b").unwrap().1;
    assert_eq!(a[4..], b[..2]);
    assert_eq!(b, (4..10).map(|i| i as f32 * 0.5 - 2.0).collect::<Vec<_>>());
}

#[test]
fn a_storage_read_by_several_tensors_serves_each_of_them() {
    // The zip loader moves a storage into the last tensor that reads it.
    let ckpt = load(&fixture("checkpoint_zip.pth")).unwrap();
    let sd = &ckpt.state_dict;
    let whole: Vec<f32> = (0..8).map(|i| i as f32 * 1.5 - 3.0).collect();
    assert_eq!(sd.f32("whole").unwrap().1, whole);
    assert_eq!(sd.f32("whole_tail").unwrap().1, whole[5..]);
    for key in ["tied_a", "tied_b"] {
        assert_eq!(sd.f32(key).unwrap(), (vec![2, 2], vec![0.5, -1.0, 2.0, 4.0]), "{key}");
    }
}

#[test]
fn scalar_and_integer_tensors() {
    let ckpt = load(&fixture("checkpoint_legacy.pth")).unwrap();
    let n = ckpt.state_dict.get("bn.num_batches_tracked").unwrap();
    assert_eq!(n.dtype, DType::I64);
    assert!(n.shape.is_empty());
    assert_eq!(n.numel(), 1);
    assert_eq!(i64::from_le_bytes(n.bytes[..].try_into().unwrap()), 12_345_678_901);
    let err = ckpt.state_dict.f32("bn.num_batches_tracked").unwrap_err();
    assert!(matches!(err, WeightsError::NotFloat { dtype: DType::I64, .. }));
    assert!(err.to_string().contains("bn.num_batches_tracked"), "{err}");
    let err = ckpt.state_dict.f32("no.such.key").unwrap_err();
    assert!(matches!(err, WeightsError::Missing { .. }));
    assert!(err.to_string().contains("no.such.key"), "{err}");
}

fn meta_classes(extra: &Value) -> Vec<String> {
    extra
        .get("meta")
        .and_then(|m| m.get("CLASSES"))
        .and_then(Value::as_list)
        .expect("meta.CLASSES")
        .iter()
        .map(|c| c.as_str().expect("class name").to_owned())
        .collect()
}

#[test]
fn meta_classes_and_palette_are_readable() {
    let exp = expected();
    let want: Vec<String> = serde_json::from_value(exp["classes"].clone()).unwrap();
    let palette: Vec<Vec<i64>> = serde_json::from_value(exp["palette"].clone()).unwrap();
    for name in ["checkpoint_zip.pth", "checkpoint_legacy.pth"] {
        let ckpt = load(&fixture(name)).unwrap();
        assert_eq!(meta_classes(&ckpt.extra), want, "{name}");
        let got: Vec<Vec<i64>> = ckpt
            .extra
            .get("meta")
            .unwrap()
            .get("PALETTE")
            .unwrap()
            .as_list()
            .unwrap()
            .iter()
            .map(|row| row.as_list().unwrap().iter().map(|v| v.as_i64().unwrap()).collect())
            .collect();
        assert_eq!(got, palette, "{name}");
        assert!(ckpt.extra.get("state_dict").is_none(), "state dict split off");
    }
}

#[test]
fn mmengine_training_checkpoint_loads_with_placeholders() {
    let exp = expected();
    let ckpt = load(&fixture("mmengine_like.pth")).unwrap();
    assert_state_dict_matches(&ckpt, &exp["mmengine_like"]);
    let meta = ckpt.extra.get("meta").unwrap();
    let classes = meta.get("dataset_meta").unwrap().get("classes").unwrap();
    let classes: Vec<&str> = classes.as_list().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(classes, ["wall", "floor", "sky"]);
    assert_eq!(meta.get("seed").and_then(Value::as_i64), Some(42));
    let opaque = |v: &Value| match v {
        Value::Opaque(name) => name.clone(),
        other => panic!("expected a placeholder, got {other:?}"),
    };
    assert!(opaque(meta.get("mean").unwrap()).ends_with("multiarray._reconstruct"));
    assert_eq!(opaque(meta.get("dtype").unwrap()), "numpy.dtype");
    assert!(opaque(meta.get("scale").unwrap()).ends_with("multiarray.scalar"));
    assert_eq!(opaque(meta.get("cfg").unwrap()), "argparse.Namespace");
    let hub = ckpt.extra.get("message_hub").unwrap();
    let buffer = hub.get("log_scalars").unwrap().get("train/loss").unwrap();
    assert_eq!(opaque(buffer), "mmengine.logging.history_buffer.HistoryBuffer");
    let runtime = hub.get("runtime_info").unwrap();
    assert_eq!(runtime.get("iter").and_then(Value::as_i64), Some(160));
    let counts = hub.get("counts").unwrap();
    assert_eq!(counts.get("loss"), Some(&Value::List(vec![Value::Int(1)])));
    let Value::Dict(state) = ckpt.extra.get("optimizer").unwrap().get("state").unwrap() else {
        panic!("optimizer.state is not a dict");
    };
    assert_eq!(state[0].0, Value::Int(0));
    let momentum = state[0].1.get("momentum_buffer").and_then(Value::as_tensor).unwrap();
    assert_tensor("momentum_buffer", momentum, &exp["mmengine_optimizer_momentum"]);
    let lr = ckpt.extra.get("optimizer").unwrap().get("param_groups").unwrap().as_list().unwrap()[0]
        .get("lr")
        .and_then(Value::as_f64);
    assert_eq!(lr, Some(0.01));
}

#[test]
fn malicious_checkpoint_is_refused_without_running_it() {
    let exp = expected();
    let marker = std::path::Path::new(exp["pwned_marker"].as_str().unwrap());
    let _ = std::fs::remove_file(marker);
    let err = load(&fixture("malicious.pth")).unwrap_err();
    let WeightsError::ForbiddenGlobal { module, name, .. } = &err else {
        panic!("expected ForbiddenGlobal, got {err:?}");
    };
    assert_eq!(format!("{module}.{name}"), exp["malicious_global"].as_str().unwrap());
    let message = err.to_string();
    assert!(message.contains("posix.system") || message.contains("os.system"), "{message}");
    assert!(message.contains("malicious.pth"), "{message}");
    assert!(!marker.exists(), "the pickled command ran");
}
