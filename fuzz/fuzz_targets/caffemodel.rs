//! A `.caffemodel` from a stranger: the reader returns a network or a clean
//! error, never panics, and reading it whole or one layer at a time from a
//! stream gives the same answer. Run under `-malloc_limit_mb` so that no
//! allocation outgrows what the file could justify.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pspnet_weights::caffe::{read_caffemodel, read_caffemodel_from};

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.caffemodel");
    let whole = read_caffemodel(path, data).map_err(|e| e.to_string());
    let streamed = read_caffemodel_from(path, data, data.len() as u64).map_err(|e| e.to_string());
    assert_eq!(format!("{whole:?}"), format!("{streamed:?}"));
    if let Ok(net) = whole {
        // Every value came from the file: 4 bytes each at least.
        let values: usize = net.layers.iter().flat_map(|l| &l.blobs).map(|b| b.data.len()).sum();
        assert!(values * 4 <= data.len());
    }
});
