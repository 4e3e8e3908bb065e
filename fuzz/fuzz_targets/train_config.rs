//! A training config file from a stranger (`train --config`): turned into
//! flags or refused with a clean error naming the file, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pspnet_train::config_flags;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match config_flags(Path::new("fuzz.toml"), text) {
            Ok(flags) => assert!(flags.iter().step_by(1).any(|f| f.starts_with("--")) || flags.is_empty()),
            Err(e) => assert!(e.to_string().starts_with("fuzz.toml: "), "{e}"),
        }
    }
});
