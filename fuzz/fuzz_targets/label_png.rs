//! A label PNG from a stranger, as the dataset readers decode it (4 MP
//! limit): raw values or a clean error, never a panic, and never more
//! memory than the allowance for the pixels its header declares.
#![no_main]

use std::io::Cursor;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pspnet_fuzz::{PIXEL_LIMIT, image_allowance, peak_bytes};

fuzz_target!(|data: &[u8]| {
    let declared = png::Decoder::new(Cursor::new(data))
        .read_info()
        .map_or(0, |r| u64::from(r.info().width) * u64::from(r.info().height));
    let (result, peak) = peak_bytes(|| pspnet_data::decode_label_png(Path::new("fuzz.png"), data, PIXEL_LIMIT));
    assert!(peak <= image_allowance(declared, data.len()), "{peak} bytes for {declared} declared pixels");
    match result {
        Ok(map) => assert_eq!(map.values.len() as u64, u64::from(map.width) * u64::from(map.height)),
        Err(e) => assert!(e.to_string().starts_with("fuzz.png"), "{e}"),
    }
});
