//! A `.caffemodel` from a stranger: the reader returns a network or a clean
//! error, never panics, and reading it whole or one layer at a time from a
//! stream gives the same answer, each within the allowance for its size.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pspnet_fuzz::{checkpoint_allowance, peak_bytes};
use pspnet_weights::caffe::{read_caffemodel, read_caffemodel_from};

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.caffemodel");
    let (whole, peak) = peak_bytes(|| read_caffemodel(path, data).map_err(|e| e.to_string()));
    assert!(peak <= checkpoint_allowance(data.len()), "{peak} bytes for a {}-byte file", data.len());
    let (streamed, peak) =
        peak_bytes(|| read_caffemodel_from(path, data, data.len() as u64).map_err(|e| e.to_string()));
    assert!(peak <= checkpoint_allowance(data.len()), "{peak} bytes streaming a {}-byte file", data.len());
    assert_eq!(format!("{whole:?}"), format!("{streamed:?}"));
    if let Ok(net) = whole {
        // Every value came from the file: 4 bytes each at least.
        let values: usize = net.layers.iter().flat_map(|l| &l.blobs).map(|b| b.data.len()).sum();
        assert!(values * 4 <= data.len());
    }
});
