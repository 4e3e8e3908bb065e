//! A class file from a stranger (`segment --classes`, `train --classes`):
//! names and colours parsed or refused with a clean error naming the file,
//! never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pspnet_data::{parse_class_names, parse_palette};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let path = Path::new("fuzz.json");
        if let Ok(names) = parse_class_names(path, text) {
            assert!(!names.is_empty());
        }
        if let Err(e) = parse_palette(path, text) {
            assert!(e.to_string().starts_with("fuzz.json: "), "{e}");
        }
    }
});
