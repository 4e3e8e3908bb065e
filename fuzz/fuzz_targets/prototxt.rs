//! A deploy `.prototxt` from a stranger: the text-format reader returns a
//! network or a clean error naming a line, never panics (nesting is
//! bounded).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pspnet_weights::caffe::read_prototxt;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = read_prototxt(Path::new("fuzz.prototxt"), text) {
            assert!(e.to_string().starts_with("fuzz.prototxt: line "), "{e}");
        }
    }
});
