//! MNIST IDX, CIFAR binaries and the embedded MNIST subset.

use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use nc_data::{embedded_mnist, load_cifar100_dir, load_cifar10_dir, load_mnist_dir, DataError};

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("images")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn embedded_mnist_matches_its_readme() {
    let (train, test) = embedded_mnist().unwrap();
    assert_eq!(train.num_samples, 8_000);
    assert_eq!(test.num_samples, 2_000);
    for set in [&train, &test] {
        assert_eq!((set.channels, set.height, set.width), (1, 28, 28));
        assert_eq!(set.images.len(), set.num_samples * 784);
        assert_eq!(set.labels.len(), set.num_samples);
        assert_eq!(set.num_classes, 10);
        assert!(set.labels.iter().all(|&l| l < 10));
        // Real digits: mostly dark background with bright strokes (MNIST's mean grey level is
        // about 0.13 x 255 = 33).
        let mean = set.images.iter().map(|&p| f64::from(p)).sum::<f64>() / set.images.len() as f64;
        assert!((20.0..50.0).contains(&mean), "mean grey level {mean}");
        assert!(set.images.contains(&255) && set.images.contains(&0));
    }
    assert_eq!(train.class_counts(), vec![800; 10]);
    assert_eq!(
        test.class_counts(),
        vec![201, 327, 191, 232, 180, 63, 214, 270, 144, 178]
    );
    // Shuffled, not sorted by class.
    assert_ne!(train.labels[..10], [0; 10]);
}

#[test]
fn mnist_directory_gives_the_same_digits_as_the_embedded_copy() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist-10k");
    let (train, test) = load_mnist_dir(&dir).unwrap();
    let (embedded_train, embedded_test) = embedded_mnist().unwrap();
    assert_eq!(train, embedded_train);
    assert_eq!(test, embedded_test);
}

fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Writes a tiny MNIST directory: 3 training and 2 test images of 2 x 3 pixels; training
/// files raw with the `train-images.idx3-ubyte` spelling, test files gzipped.
fn write_tiny_mnist(dir: &Path) {
    let train_pixels: Vec<u8> = (0..18).collect();
    let test_pixels: Vec<u8> = (100..112).collect();
    std::fs::write(
        dir.join("train-images.idx3-ubyte"),
        idx(0x803, &[3, 2, 3], &train_pixels),
    )
    .unwrap();
    std::fs::write(
        dir.join("train-labels-idx1-ubyte"),
        idx(0x801, &[3], &[7, 0, 9]),
    )
    .unwrap();
    std::fs::write(
        dir.join("t10k-images-idx3-ubyte.gz"),
        gzip(&idx(0x803, &[2, 2, 3], &test_pixels)),
    )
    .unwrap();
    std::fs::write(
        dir.join("t10k-labels-idx1-ubyte.gz"),
        gzip(&idx(0x801, &[2], &[1, 2])),
    )
    .unwrap();
}

#[test]
fn tiny_mnist_directory_raw_and_gzipped() {
    let dir = scratch("mnist_tiny");
    write_tiny_mnist(&dir);
    let (train, test) = load_mnist_dir(&dir).unwrap();
    assert_eq!(
        (train.num_samples, train.height, train.width, train.channels),
        (3, 2, 3, 1)
    );
    assert_eq!(train.labels, [7, 0, 9]);
    assert_eq!(train.image(1).unwrap(), &[6, 7, 8, 9, 10, 11]);
    assert_eq!(test.labels, [1, 2]);
    assert_eq!(test.image(1).unwrap(), &[106, 107, 108, 109, 110, 111]);
    assert_eq!(test.image(2), None);
}

fn mnist_error(dir: &Path) -> String {
    load_mnist_dir(dir).unwrap_err().to_string()
}

#[test]
fn broken_mnist_files() {
    let dir = scratch("mnist_broken");
    write_tiny_mnist(&dir);

    // Labels file where the images file should be: wrong magic.
    std::fs::write(
        dir.join("train-images.idx3-ubyte"),
        idx(0x801, &[3], &[1, 2, 3]),
    )
    .unwrap();
    let msg = mnist_error(&dir);
    assert!(
        msg.contains("train-images.idx3-ubyte")
            && msg.contains("magic number 0x00000801, expected 0x00000803"),
        "{msg}"
    );

    // Truncated images (gzipped, so the check happens after decompression).
    write_tiny_mnist(&dir);
    std::fs::write(
        dir.join("t10k-images-idx3-ubyte.gz"),
        gzip(&idx(0x803, &[2, 2, 3], &[0; 7])),
    )
    .unwrap();
    let msg = mnist_error(&dir);
    assert!(
        msg.contains("t10k-images-idx3-ubyte.gz")
            && msg
                .contains("truncated: dimensions [2, 2, 3] need 12 data bytes, but the file has 7"),
        "{msg}"
    );

    // A gzip stream cut in half.
    write_tiny_mnist(&dir);
    let gz = gzip(&idx(0x801, &[2], &[1, 2]));
    std::fs::write(dir.join("t10k-labels-idx1-ubyte.gz"), &gz[..gz.len() / 2]).unwrap();
    let msg = mnist_error(&dir);
    assert!(
        msg.contains("t10k-labels-idx1-ubyte.gz") && msg.contains("not a valid gzip file"),
        "{msg}"
    );

    // Label count differs from image count.
    write_tiny_mnist(&dir);
    std::fs::write(
        dir.join("train-labels-idx1-ubyte"),
        idx(0x801, &[2], &[1, 2]),
    )
    .unwrap();
    let msg = mnist_error(&dir);
    assert!(
        msg.contains("train-labels-idx1-ubyte") && msg.contains("has 2 labels, expected 3"),
        "{msg}"
    );

    // Label out of range.
    write_tiny_mnist(&dir);
    std::fs::write(
        dir.join("train-labels-idx1-ubyte"),
        idx(0x801, &[3], &[1, 2, 10]),
    )
    .unwrap();
    let msg = mnist_error(&dir);
    assert!(
        msg.contains("label 10 at index 2 is outside 0..10"),
        "{msg}"
    );

    // Missing file.
    write_tiny_mnist(&dir);
    std::fs::remove_file(dir.join("t10k-labels-idx1-ubyte.gz")).unwrap();
    let err = load_mnist_dir(&dir).unwrap_err();
    assert!(matches!(err, DataError::NotFound { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("t10k-labels-idx1-ubyte") && msg.contains("not found"),
        "{msg}"
    );

    let msg = mnist_error(&dir.join("no-such-dir"));
    assert!(
        msg.contains("no-such-dir") && msg.contains("not found"),
        "{msg}"
    );
}

/// One CIFAR record: label byte(s) then 3,072 pixels whose first byte is `first_pixel`.
fn cifar_record(labels: &[u8], first_pixel: u8) -> Vec<u8> {
    let mut out = labels.to_vec();
    out.push(first_pixel);
    out.extend((1..3072).map(|i| (i % 251) as u8));
    out
}

fn write_tiny_cifar10(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for batch in 1..=5u8 {
        let mut bytes = cifar_record(&[batch], batch);
        bytes.extend(cifar_record(&[9], 200 + batch));
        std::fs::write(dir.join(format!("data_batch_{batch}.bin")), bytes).unwrap();
    }
    std::fs::write(dir.join("test_batch.bin"), cifar_record(&[3], 42)).unwrap();
}

#[test]
fn cifar10_directory_and_its_sub_folder() {
    let root = scratch("cifar10");
    write_tiny_cifar10(&root.join("cifar-10-batches-bin"));
    for dir in [root.clone(), root.join("cifar-10-batches-bin")] {
        let (train, test) = load_cifar10_dir(&dir).unwrap();
        assert_eq!(
            (train.num_samples, train.channels, train.height, train.width),
            (10, 3, 32, 32)
        );
        assert_eq!(train.num_classes, 10);
        assert_eq!(train.labels, [1, 9, 2, 9, 3, 9, 4, 9, 5, 9]);
        assert_eq!(train.image(2).unwrap()[0], 2);
        assert_eq!(train.image(3).unwrap()[0], 202);
        assert_eq!(
            train.image(3).unwrap()[1024],
            (1024 % 251) as u8,
            "green plane starts at 1024"
        );
        assert_eq!(test.labels, [3]);
        assert_eq!(test.images.len(), 3072);
    }
}

#[test]
fn cifar100_uses_fine_labels() {
    let dir = scratch("cifar100").join("cifar-100-binary");
    std::fs::create_dir_all(&dir).unwrap();
    let mut train = cifar_record(&[19, 99], 1);
    train.extend(cifar_record(&[0, 5], 2));
    std::fs::write(dir.join("train.bin"), train).unwrap();
    std::fs::write(dir.join("test.bin"), cifar_record(&[3, 42], 3)).unwrap();
    let (train, test) = load_cifar100_dir(dir.parent().unwrap()).unwrap();
    assert_eq!(train.num_classes, 100);
    assert_eq!(train.labels, [99, 5]);
    assert_eq!(train.image(1).unwrap()[0], 2);
    assert_eq!(test.labels, [42]);
}

#[test]
fn broken_cifar_files() {
    let dir = scratch("cifar_broken");
    write_tiny_cifar10(&dir);
    // One byte short of a record.
    std::fs::write(dir.join("test_batch.bin"), &cifar_record(&[3], 42)[..3072]).unwrap();
    let msg = load_cifar10_dir(&dir).unwrap_err().to_string();
    assert!(
        msg.contains("test_batch.bin")
            && msg.contains(
                "length 3072 bytes is not a positive multiple of the CIFAR-10 record length 3073"
            ),
        "{msg}"
    );
    // Label 10 in CIFAR-10.
    write_tiny_cifar10(&dir);
    std::fs::write(dir.join("data_batch_4.bin"), cifar_record(&[10], 0)).unwrap();
    let msg = load_cifar10_dir(&dir).unwrap_err().to_string();
    assert!(
        msg.contains("data_batch_4.bin") && msg.contains("record 0 has label 10, expected 0..10"),
        "{msg}"
    );
    // A missing batch.
    write_tiny_cifar10(&dir);
    std::fs::remove_file(dir.join("data_batch_5.bin")).unwrap();
    let msg = load_cifar10_dir(&dir).unwrap_err().to_string();
    assert!(
        msg.contains("data_batch_5.bin") && msg.contains("not found"),
        "{msg}"
    );
    // Not a CIFAR directory at all.
    let empty = scratch("cifar_empty");
    let msg = load_cifar10_dir(&empty).unwrap_err().to_string();
    assert!(
        msg.contains("test_batch.bin") && msg.contains("cifar-10-batches-bin"),
        "{msg}"
    );
    // CIFAR-100 file with CIFAR-10 record length (3073 is not a multiple of 3074).
    let c100 = scratch("cifar100_broken");
    std::fs::write(c100.join("train.bin"), cifar_record(&[1], 0)).unwrap();
    std::fs::write(c100.join("test.bin"), cifar_record(&[1, 2], 0)).unwrap();
    let msg = load_cifar100_dir(&c100).unwrap_err().to_string();
    assert!(
        msg.contains("train.bin") && msg.contains("CIFAR-100 record length 3074"),
        "{msg}"
    );
}
