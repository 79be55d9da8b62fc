#![no_main]
//! MNIST IDX image and label files (the parsers behind `--data mnist:DIR`).
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|bytes: &[u8]| {
    nc_data::limits::set_max_memory(256 << 20);
    let path = Path::new("fuzz.idx");
    let _ = nc_data::idx::parse_idx_images(path, bytes.to_vec());
    let _ = nc_data::idx::parse_idx_labels(path, bytes.to_vec(), 10);
});
