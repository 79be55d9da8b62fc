#![no_main]
//! `.safetensors` files: every tensor, and the feature-file path.
mod common;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let path = common::input_file(bytes, "safetensors");
    let _ = nc_data::safetensors::read_safetensors(&path);
    let _ = nc_data::load_feature_file(&path, &nc_data::FeatureKeys::default());
});
