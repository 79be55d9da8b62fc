#![no_main]
//! `.npz` archives as `nclab analyze` reads them (stored members in place, deflated ones
//! inflated), and every member through the archive reader.
mod common;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let path = common::input_file(bytes, "npz");
    let _ = nc_data::load_feature_file(&path, &nc_data::FeatureKeys::default());
    if let Ok(mut archive) = nc_data::npz::NpzReader::open(&path) {
        let names: Vec<String> = archive.names().to_vec();
        for name in names {
            let _ = archive.read(&name);
        }
    }
});
