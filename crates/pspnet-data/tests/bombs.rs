//! Decompression bombs: a small file that declares a huge image is refused
//! from its header, before its pixels are inflated or allocated. Measured
//! with the fuzz targets' counting allocator.

#[allow(dead_code, unreachable_pub)]
#[path = "../../../fuzz/src/lib.rs"]
mod counting;

use std::path::Path;

use counting::peak_bytes;
use pspnet_data::{DataError, decode_label_png, decode_rgb};

/// The start of a 65535 x 65535 grayscale PNG (4.3 GB of pixels): its
/// header and the first bytes of its image data.
fn bomb() -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, 65535, 65535);
    encoder.set_color(png::ColorType::Grayscale);
    let mut writer = encoder.write_header().unwrap();
    // zlib's header, then a stored block's start: a stream that goes on.
    writer.write_chunk(png::chunk::IDAT, &[0x78, 0x9c, 0x00, 0xff, 0xff]).unwrap();
    drop(writer);
    bytes
}

#[test]
fn a_png_declaring_billions_of_pixels_is_refused_before_allocating() {
    let bytes = bomb();
    let (result, peak) = peak_bytes(|| decode_rgb(Path::new("bomb.png"), &bytes, 4_000_000));
    assert!(matches!(result, Err(DataError::TooManyPixels { width: 65535, height: 65535, .. })), "{result:?}");
    assert!(peak < 1 << 20, "the image path allocated {peak} bytes for a {}-byte bomb", bytes.len());

    let (result, peak) = peak_bytes(|| decode_label_png(Path::new("bomb.png"), &bytes, 4_000_000));
    let error = result.unwrap_err().to_string();
    assert!(error.contains("bomb.png: 65535x65535 = 4294836225 pixels is over the limit of 4000000"), "{error}");
    assert!(peak < 1 << 20, "the label path allocated {peak} bytes for a {}-byte bomb", bytes.len());
}
