//! The fuzz targets' memory contract, kept in the stable suite: a checkpoint
//! reader allocates at most `checkpoint_allowance(file size)`, measured by
//! the fuzz crate's own counting allocator. The inputs have the shape of the
//! limit breaches the fuzzers found (docs/reliability.md).

#[allow(dead_code, unreachable_pub)]
#[path = "../../../fuzz/src/lib.rs"]
mod counting;

use std::path::Path;

use counting::{checkpoint_allowance, peak_bytes};
use pspnet_weights::{load_bytes, read_pickle};

/// A pickle whose shared list is fetched from the memo `fetches` times:
/// `inner` nodes each time it is expanded, for two bytes of file.
fn memo_fan_out(inner: usize, fetches: usize) -> Vec<u8> {
    let mut p = b"\x80\x02]q\x00(".to_vec();
    p.extend(std::iter::repeat_n(b']', inner));
    p.extend_from_slice(b"e](");
    for _ in 0..fetches {
        p.extend_from_slice(b"h\x00");
    }
    p.extend_from_slice(b"e.");
    p
}

/// A legacy `torch.save` file (magic number, protocol, system info, the
/// object, an empty storage list) around `object`.
fn legacy_file(object: &[u8]) -> Vec<u8> {
    let mut file = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.".to_vec();
    file.extend_from_slice(b"\x80\x02M\xe9\x03.\x80\x02}.");
    file.extend_from_slice(object);
    file.extend_from_slice(b"\x80\x02].");
    file
}

fn assert_within_allowance(what: &str, len: usize, peak: usize) {
    let allowance = checkpoint_allowance(len);
    assert!(peak <= allowance, "{what}: {peak} bytes for a {len}-byte file (allowance {allowance})");
}

#[test]
fn memo_fan_out_is_refused_within_the_allowance() {
    // 200,000 nodes if expanded, from 4 KB: the node budget (one per byte
    // of pickle) stops it long before.
    let pickle = memo_fan_out(200, 2000);
    let (result, peak) = peak_bytes(|| read_pickle(Path::new("fan.pkl"), &pickle));
    assert!(result.is_err(), "expanded {} bytes of pickle", pickle.len());
    assert_within_allowance("read_pickle", pickle.len(), peak);

    let file = legacy_file(&pickle);
    let (result, peak) = peak_bytes(|| load_bytes(Path::new("fan.pth"), file.clone()));
    let error = result.expect_err("a legacy checkpoint of a fanned-out list");
    assert!(error.to_string().starts_with("fan.pth"), "{error}");
    assert_within_allowance("legacy checkpoint", file.len(), peak);
}

#[test]
fn a_safetensors_header_of_many_small_tensors_stays_within_the_allowance() {
    // The finding: a 16.6 KB header of small entries took 1.5 MB.
    let entries: Vec<String> = (0..400)
        .map(|i| format!("\"t{i}\":{{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[{},{}]}}", 4 * i, 4 * i + 4))
        .collect();
    let header = format!("{{{}}}", entries.join(","));
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    file.extend(std::iter::repeat_n(0u8, 4 * 400));
    let (result, peak) = peak_bytes(|| load_bytes(Path::new("many.safetensors"), file.clone()));
    assert_eq!(result.expect("400 one-value tensors").state_dict.len(), 400);
    assert_within_allowance("safetensors", file.len(), peak);
}
