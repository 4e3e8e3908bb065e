//! Hand-built and damaged inputs: every one must give an error, never a
//! panic, a stack overflow or a hang.

mod common;

use common::{fixture, tensor_pickle, torch_zip, torch_zip_compressed, write_temp};
use pspnet_weights::{WeightsError, load, load_pth};

fn load_zip_pickle(pickle: &[u8], storages: &[(&str, &[u8])]) -> Result<(), WeightsError> {
    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(dir.path(), "hand.pth", &torch_zip(pickle, storages));
    load(&path).map(|_| ())
}

fn forbidden(pickle: &[u8]) -> String {
    match load_zip_pickle(pickle, &[]) {
        Err(e @ WeightsError::ForbiddenGlobal { .. }) => e.to_string(),
        other => panic!("expected ForbiddenGlobal, got {other:?}"),
    }
}

#[test]
fn forbidden_globals_are_refused_by_name() {
    let msg = forbidden(b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00lsq\x00\x85R.");
    assert!(msg.contains("`os.system`"), "{msg}");
    let msg = forbidden(b"\x80\x02cbuiltins\neval\nX\x01\x00\x00\x001\x85R.");
    assert!(msg.contains("builtins.eval"), "{msg}");
    // Protocol 4 STACK_GLOBAL.
    let msg = forbidden(b"\x80\x04\x8c\nsubprocess\x94\x8c\x05Popen\x94\x93)R.");
    assert!(msg.contains("subprocess.Popen"), "{msg}");
    // Refused even when nested deep inside otherwise valid data.
    let msg = forbidden(b"\x80\x02}X\x01\x00\x00\x00a](K\x01cposix\nsystem\nea.");
    assert!(msg.contains("posix.system"), "{msg}");
}

#[test]
fn a_standalone_pickle_is_read_as_data_only() {
    use pspnet_weights::{Value, read_pickle};
    let path = std::path::Path::new("meta.pkl");
    // pickle.dumps({'a': 5, 'b': [1.5, None]}, protocol=2)
    let value = read_pickle(
        path,
        b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x05X\x01\x00\x00\x00bq\x02]q\x03(G?\xf8\x00\x00\x00\x00\x00\x00Neu.",
    )
    .unwrap();
    assert_eq!(value.get("a"), Some(&Value::Int(5)));
    assert_eq!(value.get("b"), Some(&Value::List(vec![Value::Float(1.5), Value::None])));
    let err = read_pickle(path, b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00lsq\x00\x85R.").unwrap_err();
    assert!(err.to_string().starts_with("meta.pkl: refusing to load"), "{err}");
    // A tensor names a storage a standalone pickle cannot have.
    let err = read_pickle(path, &tensor_pickle(4, 0, &[4], &[1])).unwrap_err();
    assert!(err.to_string().starts_with("meta.pkl"), "{err}");
}

#[test]
fn unknown_opcode_is_named_with_its_offset() {
    let err = load_zip_pickle(b"\x80\x02}\xff.", &[]).unwrap_err();
    let WeightsError::UnknownOpcode { opcode, offset, .. } = err else {
        panic!("{err:?}");
    };
    assert_eq!((opcode, offset), (0xff, 3));
}

fn assert_limit(result: Result<(), WeightsError>) {
    match result {
        Err(WeightsError::LimitExceeded { .. }) => {}
        other => panic!("expected LimitExceeded, got {other:?}"),
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    // 100000 nested MARK / EMPTY_LIST.
    let mut p = vec![0x80, 2];
    for _ in 0..100_000 {
        p.extend_from_slice(b"(]");
    }
    p.push(b'.');
    assert_limit(load_zip_pickle(&p, &[]));
    // 100000 lists appended into one another, without marks.
    let mut p = vec![0x80, 2];
    p.extend(std::iter::repeat_n(b']', 100_000));
    p.extend(std::iter::repeat_n(b'a', 99_999));
    p.push(b'.');
    assert_limit(load_zip_pickle(&p, &[]));
    // 100000 tuples, each wrapping the last.
    let mut p = vec![0x80, 2, b')'];
    p.extend(std::iter::repeat_n(0x85, 100_000));
    p.push(b'.');
    assert_limit(load_zip_pickle(&p, &[]));
}

#[test]
fn self_referencing_list_is_an_error() {
    assert_limit(load_zip_pickle(b"\x80\x02]q\x00h\x00a.", &[]));
}

#[test]
fn exponential_sharing_hits_the_node_budget() {
    // t = (); 64 times: t = (t, t) -> 2^64 nodes if expanded.
    let mut p = vec![0x80, 2, b')', b'q', 0];
    for _ in 0..64 {
        p.extend_from_slice(b"h\x00h\x00\x86q\x00");
    }
    p.push(b'.');
    assert_limit(load_zip_pickle(&p, &[]));
}

#[test]
fn hand_built_tensor_loads() {
    let data: Vec<u8> = (0..6u8).flat_map(|i| f32::from(i).to_le_bytes()).collect();
    let p = tensor_pickle(6, 1, &[2, 2], &[1, 2]);
    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(dir.path(), "ok.pth", &torch_zip(&p, &[("0", &data)]));
    let ckpt = load_pth(&path).unwrap();
    let (shape, v) = ckpt.state_dict.f32("w").unwrap();
    assert_eq!(shape, [2, 2]);
    assert_eq!(v, [1.0, 3.0, 2.0, 4.0]);
}

fn assert_storage_error(result: Result<(), WeightsError>) -> String {
    match result {
        Err(e @ WeightsError::Storage { .. }) => e.to_string(),
        other => panic!("expected a Storage error, got {other:?}"),
    }
}

#[test]
fn tensor_reaching_past_its_storage_is_an_error() {
    let data = [0u8; 16];
    // 4 elements declared, a 2x3 tensor needs 6.
    let msg = assert_storage_error(load_zip_pickle(&tensor_pickle(4, 0, &[2, 3], &[3, 1]), &[("0", &data)]));
    assert!(msg.contains("storage `0`"), "{msg}");
    // In range without the offset, out of range with it.
    assert_storage_error(load_zip_pickle(&tensor_pickle(4, 1, &[4], &[1]), &[("0", &data)]));
    // Declared 6 elements, but the archive holds only 16 bytes.
    let msg = assert_storage_error(load_zip_pickle(&tensor_pickle(6, 0, &[6], &[1]), &[("0", &data)]));
    assert!(msg.contains("16 bytes"), "{msg}");
    // Huge stride on a dimension of size 2.
    assert_storage_error(load_zip_pickle(&tensor_pickle(4, 0, &[2], &[1 << 62]), &[("0", &data)]));
}

#[test]
fn missing_storage_entry_is_an_error() {
    let err = load_zip_pickle(&tensor_pickle(4, 0, &[4], &[1]), &[]).unwrap_err();
    assert!(matches!(err, WeightsError::MissingEntry { ref entry, .. } if entry == "archive/data/0"), "{err:?}");
}

#[test]
fn element_count_overflow_is_an_error() {
    let data = [0u8; 16];
    let msg =
        assert_storage_error(load_zip_pickle(&tensor_pickle(4, 0, &[1 << 40, 1 << 40], &[0, 0]), &[("0", &data)]));
    assert!(msg.contains("too many elements"), "{msg}");
    // Fits in usize, but not once multiplied by 4 bytes.
    assert_storage_error(load_zip_pickle(&tensor_pickle(4, 0, &[1 << 31, 1 << 31], &[0, 0]), &[("0", &data)]));
    // A storage whose declared size overflows.
    assert_storage_error(load_zip_pickle(&tensor_pickle(1 << 62, 0, &[1], &[1]), &[("0", &data)]));
}

/// Every prefix of `name` (stepping by `step` bytes) fails to load cleanly.
fn assert_prefixes_fail(name: &str, step: usize) {
    let bytes = std::fs::read(fixture(name)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for cut in (0..bytes.len()).step_by(step) {
        let path = write_temp(dir.path(), "cut.pth", &bytes[..cut]);
        let result = load(&path);
        assert!(result.is_err(), "{name} cut at {cut} of {} loaded", bytes.len());
    }
}

#[test]
fn truncated_legacy_checkpoint_is_an_error() {
    assert_prefixes_fail("checkpoint_legacy.pth", 1);
}

#[test]
fn a_zip_bomb_is_refused_before_it_inflates() {
    // 4 Mi float32 zeros (16 MiB) deflate to about 16 KiB.
    let numel = 4 << 20;
    let zeros = vec![0u8; numel * 4];
    let pickle = tensor_pickle(numel as u64, 0, &[numel as u64], &[1]);
    let bomb = torch_zip_compressed(&pickle, &[("0", &zeros)], zip::CompressionMethod::Deflated);
    assert!(bomb.len() < 100_000, "{}", bomb.len());
    let dir = tempfile::tempdir().unwrap();
    let err = load(&write_temp(dir.path(), "bomb.pth", &bomb)).unwrap_err();
    let WeightsError::LimitExceeded { what, limit, .. } = &err else { panic!("{err:?}") };
    assert!(what.contains("inflated size"), "{err}");
    assert!(*limit <= 2 * bomb.len() as u64 + (256 << 10), "{err}");
    assert!(err.to_string().contains("bomb.pth/archive/data/0"), "{err}");

    // A re-zipped checkpoint of weights that do not compress loads as stored.
    let weights: Vec<u8> = (0..4096u32).flat_map(|i| (i.wrapping_mul(2_654_435_761) as f32).to_le_bytes()).collect();
    let pickle = tensor_pickle(4096, 0, &[4096], &[1]);
    let rezipped = torch_zip_compressed(&pickle, &[("0", &weights)], zip::CompressionMethod::Deflated);
    let checkpoint = load(&write_temp(dir.path(), "rezipped.pth", &rezipped)).unwrap();
    assert_eq!(checkpoint.state_dict.get("w").unwrap().bytes, weights);
}

#[test]
fn truncated_zip_checkpoint_is_an_error() {
    assert_prefixes_fail("checkpoint_zip.pth", 1);
}

#[test]
fn truncated_error_names_the_file() {
    let bytes = std::fs::read(fixture("checkpoint_legacy.pth")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(dir.path(), "short.pth", &bytes[..bytes.len() - 3]);
    let err = load(&path).unwrap_err();
    assert!(matches!(err, WeightsError::Truncated { .. }), "{err:?}");
    assert!(err.to_string().contains("short.pth"), "{err}");
    let bytes = std::fs::read(fixture("checkpoint_zip.pth")).unwrap();
    let path = write_temp(dir.path(), "short.pth", &bytes[..bytes.len() / 2]);
    let err = load(&path).unwrap_err();
    assert!(matches!(err, WeightsError::Zip { .. }), "{err:?}");
    assert!(err.to_string().contains("short.pth"), "{err}");
}

#[test]
fn unknown_format_and_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(dir.path(), "text.pth", b"hello world");
    assert!(matches!(load(&path), Err(WeightsError::UnknownFormat { .. })));
    let err = load(&dir.path().join("absent.pth")).unwrap_err();
    assert!(matches!(err, WeightsError::Io { .. }), "{err:?}");
}

#[test]
fn corrupted_storage_bytes_fail_the_zip_checksum() {
    // Flip one byte of the `whole` tensor's data (arange(8) * 1.5 - 3 as
    // little-endian f32: -3.0, -1.5, ...) inside the stored zip entry.
    let mut bytes = std::fs::read(fixture("checkpoint_zip.pth")).unwrap();
    let pattern: Vec<u8> = [-3.0f32, -1.5].iter().flat_map(|v| v.to_le_bytes()).collect();
    let at = bytes.windows(pattern.len()).position(|w| w == pattern).expect("the tensor's bytes are stored");
    bytes[at + 2] ^= 0x01;
    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(dir.path(), "flipped.pth", &bytes);
    let err = load(&path).unwrap_err();
    assert!(matches!(err, WeightsError::Zip { .. }), "{err:?}");
    assert!(err.to_string().contains("flipped.pth") && err.to_string().contains("checksum"), "{err}");
}
