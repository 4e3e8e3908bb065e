//! The PyTorch zip writer read back by the engine's own reader (which takes
//! only the globals PyTorch's `weights_only` loader allows), tensors and
//! the objects around them intact.

use pspnet_weights::{DType, TensorData, Value, load_pth, save_pth};

fn tensor(dtype: DType, shape: Vec<usize>, bytes: Vec<u8>) -> Value {
    Value::Tensor(TensorData { dtype, shape, bytes })
}

#[test]
fn written_checkpoints_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.pth");
    let weight: Vec<u8> = [1.5f32, -2.0, 3.25, 0.0, 7.0, 8.5].iter().flat_map(|v| v.to_le_bytes()).collect();
    let state = Value::Dict(vec![
        (Value::Str("conv.weight".into()), tensor(DType::F32, vec![2, 3, 1, 1], weight.clone())),
        (Value::Str("bn.num_batches_tracked".into()), tensor(DType::I64, vec![], 12i64.to_le_bytes().to_vec())),
    ]);
    let meta = Value::Dict(vec![
        (Value::Str("CLASSES".into()), Value::Tuple(vec![Value::Str("road".into()), Value::Str("sky".into())])),
        (
            Value::Str("PALETTE".into()),
            Value::List(vec![Value::List(vec![Value::Int(1), Value::Int(2), Value::Int(3)])]),
        ),
    ]);
    let root = Value::Dict(vec![
        (Value::Str("meta".into()), meta),
        (Value::Str("state_dict".into()), state),
        (Value::Str("epoch".into()), Value::Int(1 << 40)),
    ]);
    save_pth(&path, &root).unwrap();
    let checkpoint = load_pth(&path).unwrap();
    let conv = checkpoint.state_dict.get("conv.weight").unwrap();
    assert_eq!((conv.dtype, conv.shape.as_slice(), &conv.bytes), (DType::F32, &[2, 3, 1, 1][..], &weight));
    let steps = checkpoint.state_dict.get("bn.num_batches_tracked").unwrap();
    assert_eq!((steps.dtype, steps.shape.len(), &steps.bytes[..]), (DType::I64, 0, &12i64.to_le_bytes()[..]));
    let classes = checkpoint.extra.get("meta").and_then(|m| m.get("CLASSES")).and_then(Value::as_list).unwrap();
    assert_eq!(classes.iter().filter_map(Value::as_str).collect::<Vec<_>>(), ["road", "sky"]);
    assert_eq!(checkpoint.extra.get("epoch"), Some(&Value::Int(1 << 40)));
    let bad = Value::Dict(vec![(Value::Str("x".into()), tensor(DType::F16, vec![1], vec![0, 0]))]);
    let err = save_pth(&dir.path().join("bad.pth"), &bad).unwrap_err();
    assert!(err.to_string().contains("cannot write a f16 tensor"), "{err}");
    assert!(!dir.path().join("bad.pth").exists());
}
