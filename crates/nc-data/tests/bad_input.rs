//! Every kind of bad input gives an error (never a panic) whose message names the file and
//! says what is wrong.

use std::io::Write;
use std::path::{Path, PathBuf};

use nc_data::{load_feature_file, ArrayData, DataError, FeatureKeys, NpyArray};

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("bad_input")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn array(shape: &[usize], data: ArrayData) -> NpyArray {
    NpyArray::new(shape.to_vec(), data).unwrap()
}

/// A valid set: 6 samples, d = 4, K = 3.
fn valid_arrays() -> Vec<(&'static str, NpyArray)> {
    vec![
        (
            "features",
            array(&[6, 4], ArrayData::F32((0..24).map(|i| i as f32).collect())),
        ),
        (
            "labels",
            array(&[6], ArrayData::I64(vec![0, 1, 2, 0, 1, 2])),
        ),
        ("weight", array(&[3, 4], ArrayData::F64(vec![0.5; 12]))),
        ("bias", array(&[3], ArrayData::F64(vec![0.0; 3]))),
    ]
}

/// `valid_arrays` with `key` replaced by `replacement` (or removed when `None`).
fn with(key: &str, replacement: Option<NpyArray>) -> Vec<(&'static str, NpyArray)> {
    let mut arrays = valid_arrays();
    arrays.retain(|(name, _)| *name != key);
    if let Some(a) = replacement {
        arrays.push((Box::leak(key.to_string().into_boxed_str()), a));
    }
    arrays
}

fn write_npz(path: &Path, arrays: &[(&str, NpyArray)]) {
    let views: Vec<_> = arrays.iter().map(|(n, a)| (*n, a.view())).collect();
    nc_data::npz::write_npz(path, &views).unwrap();
}

fn write_safetensors(path: &Path, arrays: &[(&str, NpyArray)]) {
    let views: Vec<_> = arrays.iter().map(|(n, a)| (*n, a.view())).collect();
    nc_data::safetensors::write_safetensors(path, &views).unwrap();
}

fn load_error(path: &Path) -> String {
    let err = load_feature_file(path, &FeatureKeys::default()).expect_err("loading should fail");
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "message does not name {}: {msg}",
        path.display()
    );
    msg
}

#[test]
fn invalid_feature_arrays_are_reported_with_file_and_key() {
    let dir = scratch("features");
    type Case = (&'static str, Vec<(&'static str, NpyArray)>, &'static str);
    let cases: Vec<Case> = vec![
        ("missing-labels", with("labels", None), "missing array 'labels' (the file holds: features, weight, bias)"),
        ("missing-features", with("features", None), "missing array 'features'"),
        (
            "features-1d",
            with("features", Some(array(&[24], ArrayData::F32(vec![0.0; 24])))),
            "array 'features' has shape (24,), expected 2-D (N samples x d features)",
        ),
        (
            "features-3d",
            with("features", Some(array(&[6, 2, 2], ArrayData::F32(vec![0.0; 24])))),
            "array 'features' has shape (6, 2, 2), expected 2-D",
        ),
        (
            "features-int",
            with("features", Some(array(&[6, 4], ArrayData::I32(vec![0; 24])))),
            "array 'features' has dtype int32, expected float32 or float64",
        ),
        (
            "labels-short",
            with("labels", Some(array(&[5], ArrayData::I64(vec![0; 5])))),
            "array 'labels' has 5 entries, expected 6 (one per row of 'features')",
        ),
        (
            "labels-2d",
            with("labels", Some(array(&[6, 1], ArrayData::I64(vec![0; 6])))),
            "array 'labels' has shape (6, 1), expected 1-D with 6 entries",
        ),
        (
            "labels-float",
            with("labels", Some(array(&[6], ArrayData::F32(vec![0.0; 6])))),
            "array 'labels' has dtype float32, expected an integer dtype",
        ),
        (
            "labels-bool",
            with("labels", Some(array(&[6], ArrayData::Bool(vec![true; 6])))),
            "array 'labels' has dtype bool, expected an integer dtype",
        ),
        (
            "labels-negative",
            with("labels", Some(array(&[6], ArrayData::I32(vec![0, 1, -1, 0, 1, 2])))),
            "array 'labels' has a negative value -1 at index 2",
        ),
        (
            "labels-too-large",
            with("labels", Some(array(&[6], ArrayData::U64(vec![0, 1, 1 << 33, 0, 1, 2])))),
            "array 'labels' has value 8589934592 at index 2, larger than",
        ),
        (
            "features-no-columns",
            with("features", Some(array(&[6, 0], ArrayData::F32(vec![])))),
            "array 'features' has shape (6, 0): no feature columns (d = 0)",
        ),
        (
            "weight-columns",
            with("weight", Some(array(&[3, 5], ArrayData::F64(vec![0.0; 15])))),
            "array 'weight' has shape (3, 5), expected 2-D (K classes x d) with d = 4 columns to match 'features'",
        ),
        (
            "weight-1d",
            with("weight", Some(array(&[12], ArrayData::F64(vec![0.0; 12])))),
            "array 'weight' has shape (12,), expected 2-D",
        ),
        (
            "weight-int",
            with("weight", Some(array(&[3, 4], ArrayData::I64(vec![0; 12])))),
            "array 'weight' has dtype int64, expected float32 or float64",
        ),
        (
            "bias-length",
            with("bias", Some(array(&[2], ArrayData::F64(vec![0.0; 2])))),
            "array 'bias' has shape (2,), expected 1-D with 3 entries (one per row of 'weight')",
        ),
        (
            "bias-2d",
            with("bias", Some(array(&[3, 1], ArrayData::F64(vec![0.0; 3])))),
            "array 'bias' has shape (3, 1), expected 1-D with 3 entries",
        ),
        ("bias-without-weight", with("weight", None), "array 'weight' (the classifier weight) is missing, but the file has a bias 'bias'"),
        (
            "indices-length",
            with("indices", Some(array(&[4], ArrayData::I64(vec![0; 4])))),
            "array 'indices' has 4 entries, expected 6",
        ),
        (
            "indices-negative",
            with("indices", Some(array(&[6], ArrayData::I64(vec![0, 1, 2, 3, 4, -5])))),
            "array 'indices' has a negative value -5 at index 5",
        ),
    ];
    for (name, arrays, expected) in cases {
        for ext in ["npz", "safetensors"] {
            let path = dir.join(format!("{name}.{ext}"));
            if ext == "npz" {
                write_npz(&path, &arrays);
            } else {
                write_safetensors(&path, &arrays);
            }
            let msg = load_error(&path);
            assert!(
                msg.contains(expected),
                "{name}.{ext}: got {msg}\nexpected to contain: {expected}"
            );
        }
    }
}

#[test]
fn npy_directory_problems() {
    let dir = scratch("npy_dir");
    let features = array(&[2, 2], ArrayData::F64(vec![1.0, 2.0, 3.0, 4.0]));
    nc_data::npy::write_npy(&dir.join("features.npy"), &features.view()).unwrap();
    let msg = load_error(&dir);
    assert!(
        msg.contains("missing array 'labels' (the file holds: features)"),
        "{msg}"
    );
    // A broken labels.npy is reported under its own path.
    std::fs::write(dir.join("labels.npy"), b"\x93NUMPY\x01\x00").unwrap();
    let msg = load_feature_file(&dir, &FeatureKeys::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("labels.npy") && msg.contains("truncated"),
        "{msg}"
    );
}

#[test]
fn missing_path_and_unknown_kind() {
    let dir = scratch("paths");
    let missing = dir.join("does-not-exist.npz");
    let err = load_feature_file(&missing, &FeatureKeys::default()).unwrap_err();
    assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("does-not-exist.npz") && msg.contains("not found"),
        "{msg}"
    );
    let csv = dir.join("features.csv");
    std::fs::write(&csv, "1,2\n").unwrap();
    let msg = load_error(&csv);
    assert!(
        msg.contains("unsupported file kind") && msg.contains(".npz"),
        "{msg}"
    );
    let single = dir.join("features.npy");
    let a = array(&[1, 1], ArrayData::F32(vec![1.0]));
    nc_data::npy::write_npy(&single, &a.view()).unwrap();
    let msg = load_error(&single);
    assert!(msg.contains("a .npy file holds a single array"), "{msg}");
    for reader in [
        nc_data::npy::read_npy(&dir.join("gone.npy")).map(|_| ()),
        nc_data::npz::read_npz(&dir.join("gone.npz")).map(|_| ()),
        nc_data::safetensors::read_safetensors(&dir.join("gone.safetensors")).map(|_| ()),
    ] {
        let msg = reader.unwrap_err().to_string();
        assert!(msg.contains("gone.") && msg.contains("not found"), "{msg}");
    }
}

fn valid_npy_bytes() -> Vec<u8> {
    let mut bytes = Vec::new();
    let a = array(&[3, 4], ArrayData::F64((0..12).map(f64::from).collect()));
    nc_data::npy::write_npy_to(&mut bytes, &a.view()).unwrap();
    bytes
}

fn npy_error(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let msg = nc_data::npy::read_npy(&path).unwrap_err().to_string();
    assert!(msg.contains(name), "message does not name {name}: {msg}");
    msg
}

#[test]
fn broken_npy_files() {
    let dir = scratch("npy");
    let good = valid_npy_bytes();
    let msg = npy_error(&dir, "truncated.npy", &good[..good.len() - 5]);
    assert!(
        msg.contains("truncated")
            && msg.contains("shape (3, 4) of float64 = 96 bytes")
            && msg.contains("only 91"),
        "{msg}"
    );
    let msg = npy_error(&dir, "header-cut.npy", &good[..20]);
    assert!(
        msg.contains("truncated: the file ends inside the header"),
        "{msg}"
    );
    let msg = npy_error(&dir, "empty.npy", b"");
    assert!(
        msg.contains("truncated: the file ends inside the magic bytes"),
        "{msg}"
    );
    let mut bad_magic = good.clone();
    bad_magic[1] = b'X';
    let msg = npy_error(&dir, "magic.npy", &bad_magic);
    assert!(
        msg.contains("bad magic bytes") && msg.contains("expected \\x93NUMPY"),
        "{msg}"
    );
    let mut version = good.clone();
    version[6] = 9;
    let msg = npy_error(&dir, "version.npy", &version);
    assert!(msg.contains("unsupported format version 9.0"), "{msg}");
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"junk");
    let msg = npy_error(&dir, "trailing.npy", &trailing);
    assert!(
        msg.contains("4 unexpected bytes after the 96 bytes of data"),
        "{msg}"
    );

    // Hand-made headers: garbage dict, missing key, unsupported dtypes.
    let header = |dict: &str| {
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&((dict.len() + 1) as u16).to_le_bytes());
        out.extend_from_slice(dict.as_bytes());
        out.push(b'\n');
        out
    };
    let msg = npy_error(&dir, "garbage.npy", &header("{'descr': '<f4' 'shape': }"));
    assert!(msg.contains("cannot parse header"), "{msg}");
    let msg = npy_error(
        &dir,
        "noshape.npy",
        &header("{'descr': '<f4', 'fortran_order': False}"),
    );
    assert!(msg.contains("header has no 'shape' key"), "{msg}");
    for (name, descr) in [
        ("half.npy", "<f2"),
        ("bigendian.npy", ">f4"),
        ("complex.npy", "<c8"),
        ("text.npy", "<U3"),
    ] {
        let msg = npy_error(
            &dir,
            name,
            &header(&format!(
                "{{'descr': '{descr}', 'fortran_order': False, 'shape': (1,), }}"
            )),
        );
        assert!(
            msg.contains(&format!("unsupported dtype '{descr}'")) && msg.contains("<f4 <f8"),
            "{msg}"
        );
    }
    let msg = npy_error(
        &dir,
        "structured.npy",
        &header("{'descr': [('x', '<f4'), ('y', '<i4')], 'fortran_order': False, 'shape': (1,), }"),
    );
    assert!(msg.contains("structured"), "{msg}");
    let mut bad_bool = header("{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }");
    bad_bool.extend_from_slice(&[1, 7]);
    let msg = npy_error(&dir, "bool.npy", &bad_bool);
    assert!(msg.contains("byte value 7, expected 0 or 1"), "{msg}");
    let mut huge =
        header("{'descr': '<f8', 'fortran_order': False, 'shape': (4000000000, 4000000000), }");
    huge.extend_from_slice(&[0; 16]);
    let msg = npy_error(&dir, "huge.npy", &huge);
    assert!(
        msg.contains("truncated") || msg.contains("overflows"),
        "{msg}"
    );
}

fn npz_error(path: &Path) -> String {
    let result = nc_data::npz::read_npz(path);
    let msg = result.expect_err("reading should fail").to_string();
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(msg.contains(name), "message does not name {name}: {msg}");
    msg
}

#[test]
fn broken_npz_files() {
    let dir = scratch("npz");
    let garbage = dir.join("garbage.npz");
    std::fs::write(&garbage, b"this is not a zip file at all").unwrap();
    assert!(npz_error(&garbage).contains("not a valid .npz file"));
    let empty = dir.join("empty.npz");
    std::fs::write(&empty, b"").unwrap();
    assert!(npz_error(&empty).contains("not a valid .npz file"));

    // A valid archive cut in half (the zip directory at the end is lost).
    let whole = dir.join("whole.npz");
    write_npz(&whole, &valid_arrays());
    let bytes = std::fs::read(&whole).unwrap();
    let half = dir.join("half.npz");
    std::fs::write(&half, &bytes[..bytes.len() / 2]).unwrap();
    let msg = npz_error(&half);
    assert!(
        msg.contains("not a valid .npz file") && msg.contains("truncated or not a zip archive"),
        "{msg}"
    );
    // The same for np.savez_compressed output.
    let compressed = std::fs::read(fixture("dtypes_compressed.npz")).unwrap();
    let half = dir.join("half-compressed.npz");
    std::fs::write(&half, &compressed[..compressed.len() / 2]).unwrap();
    assert!(npz_error(&half).contains("not a valid .npz file"));

    // Flipped data bytes inside a stored member: caught by the zip CRC-32.
    let mut flipped = bytes.clone();
    let data_start = flipped.windows(6).position(|w| w == b"\x93NUMPY").unwrap() + 128;
    flipped[data_start] ^= 0xff;
    let corrupt = dir.join("flipped.npz");
    std::fs::write(&corrupt, &flipped).unwrap();
    let msg = npz_error(&corrupt);
    assert!(
        msg.contains("member 'features.npy' is corrupt") && msg.to_lowercase().contains("checksum"),
        "{msg}"
    );

    // The same flip read as a feature file, whose stored features are mapped in place.
    let msg = nc_data::load_feature_file(&corrupt, &nc_data::FeatureKeys::default())
        .expect_err("a corrupt member must not load")
        .to_string();
    assert!(
        msg.contains("flipped.npz")
            && msg.contains("member 'features.npy' is corrupt")
            && msg.contains("checksum"),
        "{msg}"
    );

    // Garbage inside the compressed stream of a savez_compressed member.
    let mut scrambled = compressed.clone();
    let first_member = scrambled
        .windows(4)
        .position(|w| w == b"PK\x03\x04")
        .unwrap();
    for b in &mut scrambled[first_member + 40..first_member + 80] {
        *b = b.wrapping_mul(31).wrapping_add(7);
    }
    let corrupt = dir.join("scrambled.npz");
    std::fs::write(&corrupt, &scrambled).unwrap();
    let msg = npz_error(&corrupt);
    assert!(
        msg.contains("not a valid .npz file") || msg.contains("unsupported dtype"),
        "{msg}"
    );

    // A member that is not a valid .npy.
    let odd = dir.join("odd-member.npz");
    let file = std::fs::File::create(&odd).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    zip.start_file("labels.npy", zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(b"hello").unwrap();
    zip.finish().unwrap();
    let msg = npz_error(&odd);
    assert!(
        msg.contains("member 'labels.npy'") && msg.contains("truncated"),
        "{msg}"
    );
}

fn safetensors_error(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let msg = nc_data::safetensors::read_safetensors(&path)
        .unwrap_err()
        .to_string();
    assert!(msg.contains(name), "message does not name {name}: {msg}");
    msg
}

fn safetensors_file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn broken_safetensors_files() {
    let dir = scratch("safetensors");
    let msg = safetensors_error(&dir, "short.safetensors", b"abc");
    assert!(
        msg.contains("too short for the 8-byte header length"),
        "{msg}"
    );
    let msg = safetensors_error(&dir, "huge-header.safetensors", &u64::MAX.to_le_bytes());
    assert!(
        msg.contains("header length field says 18446744073709551615 bytes"),
        "{msg}"
    );
    let msg = safetensors_error(
        &dir,
        "not-json.safetensors",
        &safetensors_file("{\"a\": [1, 2", b""),
    );
    assert!(msg.contains("the header is not valid JSON"), "{msg}");
    let msg = safetensors_error(&dir, "array.safetensors", &safetensors_file("[1, 2]", b""));
    assert!(msg.contains("the header is not a JSON object"), "{msg}");
    let entry = r#"{"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}"#;
    let msg = safetensors_error(
        &dir,
        "twice.safetensors",
        &safetensors_file(&format!(r#"{{"w": {entry}, "w": {entry}}}"#), &[0u8; 4]),
    );
    assert!(msg.contains("has the key 'w' twice"), "{msg}");
    let msg = safetensors_error(
        &dir,
        "past-end.safetensors",
        &safetensors_file(
            r#"{"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}"#,
            &[0; 8],
        ),
    );
    assert!(
        msg.contains("tensor 'x'") && msg.contains("outside the 8-byte data buffer"),
        "{msg}"
    );
    let msg = safetensors_error(
        &dir,
        "size-mismatch.safetensors",
        &safetensors_file(
            r#"{"x": {"dtype": "F64", "shape": [3], "data_offsets": [0, 16]}}"#,
            &[0; 16],
        ),
    );
    assert!(
        msg.contains("shape (3,) of F64 needs 24 bytes but data_offsets [0, 16] span 16"),
        "{msg}"
    );
    let msg = safetensors_error(
        &dir,
        "no-dtype.safetensors",
        &safetensors_file(r#"{"x": {"shape": [1], "data_offsets": [0, 4]}}"#, &[0; 4]),
    );
    assert!(msg.contains("missing or non-string 'dtype'"), "{msg}");
    let msg = safetensors_error(
        &dir,
        "neg-shape.safetensors",
        &safetensors_file(
            r#"{"x": {"dtype": "U8", "shape": [-1], "data_offsets": [0, 4]}}"#,
            &[0; 4],
        ),
    );
    assert!(
        msg.contains("'shape' holds something other than non-negative integers"),
        "{msg}"
    );
    let msg = safetensors_error(
        &dir,
        "bf16.safetensors",
        &safetensors_file(
            r#"{"x": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}"#,
            &[0; 4],
        ),
    );
    assert!(msg.contains("unsupported dtype 'BF16'"), "{msg}");

    // A valid file cut short.
    let whole = dir.join("whole.safetensors");
    write_safetensors(&whole, &valid_arrays());
    let bytes = std::fs::read(&whole).unwrap();
    let msg = safetensors_error(&dir, "cut.safetensors", &bytes[..bytes.len() - 10]);
    assert!(msg.contains("data buffer (file truncated?)"), "{msg}");
}

/// Runs `load_feature_file` on `path` in a thread; a read that blocks fails the test after
/// ten seconds instead of hanging it.
fn load_within_seconds(path: &Path) -> Result<nc_data::FeatureSet, DataError> {
    let (send, receive) = std::sync::mpsc::channel();
    let owned = path.to_path_buf();
    std::thread::spawn(move || {
        let _ = send.send(load_feature_file(&owned, &FeatureKeys::default()));
    });
    receive
        .recv_timeout(std::time::Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("reading {} blocked", path.display()))
}

#[cfg(unix)]
#[test]
fn fifos_are_refused_unopened() {
    let dir = scratch("fifo");
    let mkfifo = |path: &Path| {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    };
    for name in ["pipe.npz", "pipe.safetensors"] {
        let path = dir.join(name);
        mkfifo(&path);
        let err = load_within_seconds(&path).unwrap_err();
        assert!(
            matches!(err, DataError::NotRegularFile { .. }),
            "{name}: {err:?}"
        );
        assert!(err.to_string().contains("FIFO"), "{err}");
    }
    // A lone .npy is no feature set whatever it is; what matters is that nothing blocks.
    mkfifo(&dir.join("pipe.npy"));
    assert!(load_within_seconds(&dir.join("pipe.npy")).is_err());
    // The single-array readers refuse it too.
    let err = nc_data::npy::read_npy(&dir.join("pipe.npy")).unwrap_err();
    assert!(matches!(err, DataError::NotRegularFile { .. }), "{err:?}");
    // A directory of .npy files whose member is a FIFO.
    let members = dir.join("members");
    std::fs::create_dir_all(&members).unwrap();
    mkfifo(&members.join("features.npy"));
    nc_data::npy::write_npy(
        &members.join("labels.npy"),
        &array(&[2], ArrayData::I64(vec![0, 1])).view(),
    )
    .unwrap();
    let err = load_within_seconds(&members).unwrap_err();
    assert!(matches!(err, DataError::NotRegularFile { .. }), "{err:?}");
    assert!(err.to_string().contains("features.npy"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_archive_with_two_members_of_one_name_is_refused() {
    let dir = scratch("npz-twice");
    let path = dir.join("twice.npz");
    let mut arrays = valid_arrays();
    // A second features array under a name of the same length, renamed in the bytes below.
    arrays.push(("featurex", array(&[6, 4], ArrayData::F32(vec![9.0; 24]))));
    write_npz(&path, &arrays);
    let bytes = std::fs::read(&path).unwrap();
    let mut renamed = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"featurex.npy") {
            renamed.extend_from_slice(b"features.npy");
            i += 12;
        } else {
            renamed.push(bytes[i]);
            i += 1;
        }
    }
    std::fs::write(&path, renamed).unwrap();
    let err = load_feature_file(&path, &FeatureKeys::default()).unwrap_err();
    assert!(
        err.to_string().contains("two members have the same name"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The refusal says what the path is, so that a user who passed `/dev/stdin` or a socket by
/// mistake sees why.
#[cfg(unix)]
#[test]
fn devices_and_sockets_are_refused_by_what_they_are() {
    let err = nc_data::npz::read_npz(Path::new("/dev/null")).unwrap_err();
    assert!(matches!(err, DataError::NotRegularFile { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "/dev/null: is a device, not a regular file (expected a .npz file)"
    );
    let dir = scratch("socket");
    let path = dir.join("features.npz");
    let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let err = load_within_seconds(&path).unwrap_err();
    assert!(matches!(err, DataError::NotRegularFile { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!(
            "{}: is a socket, not a regular file",
            path.display()
        )),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Offsets of the headers of member `name`: (local header, central directory header).
fn member_headers(bytes: &[u8], name: &[u8]) -> (usize, usize) {
    let find = |magic: &[u8], name_offset: usize| {
        (0..bytes.len().saturating_sub(name_offset + name.len()))
            .find(|&at| {
                bytes[at..].starts_with(magic) && bytes[at + name_offset..].starts_with(name)
            })
            .unwrap_or_else(|| panic!("no header of {name:?}"))
    };
    (find(b"PK\x03\x04", 30), find(b"PK\x01\x02", 46))
}

/// The stored `features` member of a valid archive is read in place only when the zip
/// directory says it is stored as is: a member labelled deflate-compressed is decompressed
/// (as np.load does), and one whose compressed size differs from its size is read through
/// the zip reader, even though the bytes in place would be a valid array. Both archives
/// are corrupt and reported so.
#[test]
fn members_not_stored_as_is_are_never_read_in_place() {
    let dir = scratch("npz-not-as-is");
    let clean = dir.join("clean.npz");
    write_npz(&clean, &valid_arrays());
    let clean = std::fs::read(&clean).unwrap();
    let (local, central) = member_headers(&clean, b"features.npy");

    let mut relabelled = clean.clone();
    for method in [local + 8, central + 10] {
        relabelled[method..method + 2].copy_from_slice(&8u16.to_le_bytes());
    }
    let mut resized = clean.clone();
    let size = u32::from_le_bytes(clean[central + 20..central + 24].try_into().unwrap());
    resized[central + 20..central + 24].copy_from_slice(&(size + 1).to_le_bytes());

    for (name, bytes) in [("relabelled.npz", relabelled), ("resized.npz", resized)] {
        let path = dir.join(name);
        std::fs::write(&path, &bytes).unwrap();
        let mut reader = nc_data::npz::NpzReader::open(&path).unwrap();
        assert!(reader.map_floats("features").unwrap().is_none(), "{name}");
        let msg = load_error(&path);
        assert!(
            msg.contains("not a valid .npz file: member 'features.npy' is corrupt"),
            "{msg}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
