//! Property tests: random bytes and damaged fixtures never panic.

mod common;

use common::fixture;
use proptest::prelude::*;
use pspnet_weights::load;

fn load_bytes(bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fuzz.pth");
    std::fs::write(&path, bytes).unwrap();
    let _ = load(&path);
}

fn fixture_bytes() -> Vec<Vec<u8>> {
    ["checkpoint_zip.pth", "checkpoint_legacy.pth", "mmengine_like.pth", "tensors.safetensors"]
        .iter()
        .map(|n| std::fs::read(fixture(n)).unwrap())
        .collect()
}

/// Headers that steer random bytes into each reader.
const PREFIXES: [&[u8]; 4] = [b"", b"PK\x03\x04", b"\x80\x02", b"\x10\x00\x00\x00\x00\x00\x00\x00{"];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(prefix in 0usize..4, body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = PREFIXES[prefix].to_vec();
        bytes.extend(body);
        load_bytes(&bytes);
    }

    #[test]
    fn damaged_fixtures_never_panic(
        which in 0usize..4,
        cut in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
    ) {
        let mut bytes = fixture_bytes().swap_remove(which);
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let keep = cut.index(bytes.len() + 1);
        bytes.truncate(keep);
        load_bytes(&bytes);
    }
}
