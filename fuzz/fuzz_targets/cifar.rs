#![no_main]
//! CIFAR-10 batches and CIFAR-100 files (the parsers behind `--data cifar10:DIR`).
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|bytes: &[u8]| {
    let path = Path::new("fuzz.bin");
    let _ = nc_data::cifar::parse_cifar10_batch(path, bytes);
    let _ = nc_data::cifar::parse_cifar100_file(path, bytes);
});
