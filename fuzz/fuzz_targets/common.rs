//! Shared by the fuzz targets: the readers take paths, so each input is written to a file
//! of this process in /dev/shm (or the temp dir), with a small memory ceiling so that an
//! input declaring a huge array is refused instead of exhausting the fuzzer's memory.

use std::path::PathBuf;

pub fn input_file(bytes: &[u8], extension: &str) -> PathBuf {
    nc_data::limits::set_max_memory(256 << 20);
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let path = dir.join(format!("nc-fuzz-{}.{extension}", std::process::id()));
    std::fs::write(&path, bytes).expect("the fuzz input can be written");
    path
}
