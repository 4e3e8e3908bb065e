//! A pickle from a stranger, through the restricted unpickler of `.pth`
//! files alone (no archive, no storages): an inert value or a clean error,
//! never a panic, and never more memory than the allowance for its size.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pspnet_fuzz::{checkpoint_allowance, peak_bytes};

fuzz_target!(|data: &[u8]| {
    let (result, peak) = peak_bytes(|| pspnet_weights::read_pickle(Path::new("fuzz.pkl"), data));
    assert!(peak <= checkpoint_allowance(data.len()), "{peak} bytes for a {}-byte pickle", data.len());
    if let Err(e) = result {
        assert!(e.to_string().starts_with("fuzz.pkl"), "{e}");
    }
});
