#![no_main]
//! `.npy` files: the whole-array reader and the header reader must return, never panic.
mod common;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let path = common::input_file(bytes, "npy");
    let _ = nc_data::npy::read_npy_header(&path);
    let _ = nc_data::npy::read_npy(&path);
});
