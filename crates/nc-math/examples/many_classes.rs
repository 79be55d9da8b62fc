//! Load-and-compute of the metrics on raw feature files, for bench/analyze/many_classes.sh:
//! `cargo run --release -p nc-math --example many_classes -- DIR` reads DIR/features.f32
//! (N x d little-endian f32), labels.u32, weight.f64 (K x d), bias.f64 (K) and shape.txt
//! ("K d N"), prints the metrics JSON on stdout and the load and compute seconds on stderr.

use nc_math::metrics::{compute_metrics, Classifier};
use std::time::Instant;

fn read(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Little-endian f32 values of a file, read a megabyte at a time (so the load holds the
/// values once, not the bytes beside them).
fn read_f32(path: &std::path::Path) -> Vec<f32> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let len = file.metadata().unwrap().len() as usize;
    let mut values = Vec::with_capacity(len / 4);
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let got = file.read(&mut buffer).unwrap();
        if got == 0 {
            break;
        }
        assert_eq!(got % 4, 0, "short read inside an f32");
        let chunks = buffer[..got].chunks_exact(4);
        values.extend(chunks.map(|b| f32::from_le_bytes(b.try_into().unwrap())));
    }
    values
}

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("usage: many_classes DIR"));
    let start = Instant::now();
    let shape = String::from_utf8(read(&dir.join("shape.txt"))).unwrap();
    let [k, d, n]: [usize; 3] = shape
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .expect("shape.txt holds K d N");
    let f64s = |bytes: Vec<u8>| -> Vec<f64> {
        bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect()
    };
    let features = read_f32(&dir.join("features.f32"));
    let labels: Vec<u32> = read(&dir.join("labels.u32"))
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(
        (features.len(), labels.len()),
        (n * d, n),
        "file sizes and shape.txt disagree"
    );
    let classifier = Classifier::new(
        k,
        d,
        f64s(read(&dir.join("weight.f64"))),
        Some(f64s(read(&dir.join("bias.f64")))),
    )
    .unwrap();
    let loaded = start.elapsed().as_secs_f64();
    let metrics = compute_metrics(&features, &labels, d, k, Some(&classifier), None).unwrap();
    let computed = start.elapsed().as_secs_f64() - loaded;
    eprintln!("load_s {loaded:.3} compute_s {computed:.3}");
    println!("{}", serde_json::to_string(&metrics).unwrap());
}
