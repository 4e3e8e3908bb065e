//! An image from a stranger, through the decoder the CLI uses (4 MP limit):
//! RGB pixels or a clean error, never a panic, and never more memory than
//! the allowance for the pixels its header declares.
#![no_main]

use std::io::Cursor;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pspnet_fuzz::{PIXEL_LIMIT, image_allowance, peak_bytes};

fuzz_target!(|data: &[u8]| {
    let declared = image::ImageReader::new(Cursor::new(data))
        .with_guessed_format()
        .ok()
        .and_then(|r| r.into_dimensions().ok())
        .map_or(0, |(w, h)| u64::from(w) * u64::from(h));
    let (result, peak) = peak_bytes(|| pspnet_data::decode_rgb(Path::new("fuzz.png"), data, PIXEL_LIMIT));
    assert!(peak <= image_allowance(declared, data.len()), "{peak} bytes for {declared} declared pixels");
    match result {
        Ok(image) => assert!(u64::from(image.width()) * u64::from(image.height()) <= PIXEL_LIMIT),
        Err(e) => assert!(e.to_string().starts_with("fuzz.png"), "{e}"),
    }
});
