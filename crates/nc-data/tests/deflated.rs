//! Compressed `.npz` features streamed in row batches (`open_feature_shard`): the batches
//! hold exactly the member's bytes in order, whatever the batch size; a member that is
//! corrupt or truncated is reported with the file and member named; members that cannot be
//! streamed (stored, Fortran order) are read as before.

use nc_data::array::{ArraySlice, ArrayView};
use nc_data::features::{open_feature_shard, FeatureKeys, ShardFeatures};
use nc_data::{load_feature_file, FloatData};
use std::io::Write;
use std::path::{Path, PathBuf};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nc-data-deflated-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An `np.savez_compressed`-style archive of `features` (rows x cols, f32) and labels.
fn write_compressed(path: &Path, features: &[f32], rows: usize, cols: usize, fortran: bool) {
    let labels: Vec<i64> = (0..rows as i64).map(|i| i % 3).collect();
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("features.npy", options).unwrap();
    let shape = [rows, cols];
    let mut bytes = Vec::new();
    nc_data::npy::write_npy_to(
        &mut bytes,
        &ArrayView {
            shape: &shape,
            data: ArraySlice::F32(features),
        },
    )
    .unwrap();
    if fortran {
        // The same header with fortran_order True (same length), data transposed.
        let from = b"'fortran_order': False";
        let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
        bytes[at..at + from.len()].copy_from_slice(b"'fortran_order': True ");
    }
    zip.write_all(&bytes).unwrap();
    zip.start_file("labels.npy", options).unwrap();
    let lshape = [rows];
    nc_data::npy::write_npy_to(
        &mut zip,
        &ArrayView {
            shape: &lshape,
            data: ArraySlice::I64(&labels),
        },
    )
    .unwrap();
    zip.finish().unwrap().flush().unwrap();
}

fn values(rows: usize, cols: usize) -> Vec<f32> {
    (0..rows * cols).map(|i| (i as f32) * 0.5 - 3.0).collect()
}

#[test]
fn batches_hold_the_member_bytes_in_order_for_any_batch_size() {
    let dir = scratch("batches");
    let (rows, cols) = (101, 5);
    let data = values(rows, cols);
    let path = dir.join("f.npz");
    write_compressed(&path, &data, rows, cols, false);
    let shard = open_feature_shard(&path, &FeatureKeys::default()).unwrap();
    assert_eq!((shard.num_samples, shard.dim), (rows, cols));
    assert_eq!(shard.labels.len(), rows);
    let ShardFeatures::Deflated(deflated) = &shard.features else {
        panic!("a compressed member is streamed, not read whole")
    };
    for batch_rows in [0, 1, 7, 100, 101, 5000] {
        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        deflated
            .for_each_batch(batch_rows, |bytes, n| {
                assert_eq!(bytes.len(), n * cols * 4);
                sizes.push(n);
                seen.extend(
                    bytes
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes(b.try_into().unwrap())),
                );
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, data, "batch_rows {batch_rows}");
        let expected = batch_rows.clamp(1, rows);
        assert!(
            sizes[..sizes.len() - 1].iter().all(|&n| n == expected),
            "{sizes:?}"
        );
        assert_eq!(sizes.iter().sum::<usize>(), rows);
    }
    // The whole-file loader still reads the same values.
    let set = load_feature_file(&path, &FeatureKeys::default()).unwrap();
    assert_eq!(set.features, FloatData::F32(data));
}

#[test]
fn a_corrupt_compressed_member_is_reported_by_name() {
    let dir = scratch("corrupt");
    let (rows, cols) = (400, 8);
    let path = dir.join("f.npz");
    // Values that do not compress away, so the deflate stream is long.
    let data: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 7919) % 1013) as f32 / 7.0)
        .collect();
    write_compressed(&path, &data, rows, cols, false);
    let shard = open_feature_shard(&path, &FeatureKeys::default()).unwrap();
    let ShardFeatures::Deflated(deflated) = &shard.features else {
        panic!()
    };
    // Flip a byte in the middle of the features member's compressed data.
    let mut bytes = std::fs::read(&path).unwrap();
    let at = 200 + (bytes.len() / 4);
    bytes[at] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let err = deflated
        .for_each_batch(16, |_, _| Ok(()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("f.npz") && err.contains("features.npy"),
        "{err}"
    );
    // Cut short: the archive's directory is gone.
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = deflated
        .for_each_batch(16, |_, _| Ok(()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("f.npz"), "{err}");
}

#[test]
fn fortran_order_members_are_read_whole() {
    let dir = scratch("fortran");
    let (rows, cols) = (6, 4);
    let data = values(rows, cols);
    let path = dir.join("f.npz");
    write_compressed(&path, &data, rows, cols, true);
    let shard = open_feature_shard(&path, &FeatureKeys::default()).unwrap();
    let ShardFeatures::Held(FloatData::F32(held)) = &shard.features else {
        panic!("a Fortran-order member cannot be streamed by rows")
    };
    // Element (r, c) of a Fortran-order array is at c * rows + r of its data.
    assert_eq!(held[cols + 1], data[rows + 1]);
    assert_eq!(held[1], data[rows]);
}
