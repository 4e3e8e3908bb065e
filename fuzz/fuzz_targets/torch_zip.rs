//! A `torch.save` zip checkpoint from a stranger: a state dict or a clean
//! error, never a panic, and never more memory than the allowance for its
//! size (zip entries that declare or inflate to more are refused).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pspnet_fuzz::{checkpoint_allowance, peak_bytes};

fuzz_target!(|data: &[u8]| {
    if !data.starts_with(b"PK\x03\x04") {
        return;
    }
    let (result, peak) = peak_bytes(|| pspnet_weights::load_bytes(Path::new("fuzz.pth"), data.to_vec()));
    assert!(peak <= checkpoint_allowance(data.len()), "{peak} bytes for a {}-byte file", data.len());
    if let Err(e) = result {
        assert!(e.to_string().starts_with("fuzz.pth"), "{e}");
    }
});
