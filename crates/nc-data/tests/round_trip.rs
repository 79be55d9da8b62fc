//! Write-then-read round trips of every dtype through .npy, .npz and .safetensors, feature
//! files through save_feature_* and load_feature_file, and cross-checks of the safetensors
//! reader and writer against the reference `safetensors` crate.

use std::collections::BTreeMap;
use std::path::PathBuf;

use nc_data::{
    load_feature_file, save_feature_file, ArrayData, DType, FeatureExport, FeatureKeys, FloatData,
    FloatSlice, NpyArray,
};

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("round_trip")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A 2 x 3 x 2 array of `dtype` holding the type's extremes and a few ordinary values.
fn sample(dtype: DType) -> NpyArray {
    let n = 12;
    let ints = |lo: i128, hi: i128| -> Vec<i128> {
        let mut v = vec![lo, hi, 0, 1];
        v.extend((0..n as i128 - 4).map(|i| (lo / 3 + i * (hi / 7 - lo / 7)).clamp(lo, hi)));
        v
    };
    let data = match dtype {
        DType::Bool => ArrayData::Bool((0..n).map(|i| i % 3 == 0).collect()),
        DType::U8 => ArrayData::U8(ints(0, 255).into_iter().map(|x| x as u8).collect()),
        DType::I8 => ArrayData::I8(ints(-128, 127).into_iter().map(|x| x as i8).collect()),
        DType::U16 => ArrayData::U16(ints(0, 65535).into_iter().map(|x| x as u16).collect()),
        DType::I16 => ArrayData::I16(ints(-32768, 32767).into_iter().map(|x| x as i16).collect()),
        DType::U32 => ArrayData::U32(
            ints(0, u32::MAX.into())
                .into_iter()
                .map(|x| x as u32)
                .collect(),
        ),
        DType::I32 => ArrayData::I32(
            ints(i32::MIN.into(), i32::MAX.into())
                .into_iter()
                .map(|x| x as i32)
                .collect(),
        ),
        DType::U64 => ArrayData::U64(
            ints(0, u64::MAX.into())
                .into_iter()
                .map(|x| x as u64)
                .collect(),
        ),
        DType::I64 => ArrayData::I64(
            ints(i64::MIN.into(), i64::MAX.into())
                .into_iter()
                .map(|x| x as i64)
                .collect(),
        ),
        DType::F32 => {
            let mut v = vec![f32::MAX, f32::MIN_POSITIVE, -0.0, f32::INFINITY, 1e-45];
            v.extend((0..n - 5).map(|i| i as f32 * 0.1 - 0.35));
            ArrayData::F32(v)
        }
        DType::F64 => {
            let mut v = vec![f64::MAX, f64::MIN_POSITIVE, -0.0, f64::NEG_INFINITY, 5e-324];
            v.extend((0..n - 5).map(|i| i as f64 / 3.0 - 1.0));
            ArrayData::F64(v)
        }
    };
    NpyArray::new(vec![2, 3, 2], data).unwrap()
}

fn same_bits(a: &NpyArray, b: &NpyArray) -> bool {
    // Compare floats by bits so that -0.0 vs 0.0 would be caught.
    match (&a.data, &b.data) {
        (ArrayData::F32(x), ArrayData::F32(y)) => {
            a.shape == b.shape
                && x.iter()
                    .map(|v| v.to_bits())
                    .eq(y.iter().map(|v| v.to_bits()))
        }
        (ArrayData::F64(x), ArrayData::F64(y)) => {
            a.shape == b.shape
                && x.iter()
                    .map(|v| v.to_bits())
                    .eq(y.iter().map(|v| v.to_bits()))
        }
        _ => a == b,
    }
}

#[test]
fn npy_every_dtype() {
    let dir = scratch("npy");
    for dtype in DType::ALL {
        let array = sample(dtype);
        let path = dir.join(format!("{}.npy", dtype.name()));
        nc_data::npy::write_npy(&path, &array.view()).unwrap();
        let back = nc_data::npy::read_npy(&path).unwrap();
        assert_eq!(back.dtype(), dtype);
        assert!(same_bits(&array, &back), "{dtype}: {back:?}");
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    }
}

#[test]
fn npy_other_shapes() {
    let dir = scratch("npy_shapes");
    for shape in [vec![], vec![0], vec![5], vec![3, 0, 2], vec![1, 1, 1, 1, 3]] {
        let n: usize = shape.iter().product();
        let array = NpyArray::new(shape.clone(), ArrayData::I16((0..n as i16).collect())).unwrap();
        let path = dir.join("a.npy");
        nc_data::npy::write_npy(&path, &array.view()).unwrap();
        assert_eq!(
            nc_data::npy::read_npy(&path).unwrap(),
            array,
            "shape {shape:?}"
        );
    }
}

#[test]
fn npz_every_dtype() {
    let dir = scratch("npz");
    let arrays: Vec<(String, NpyArray)> = DType::ALL
        .iter()
        .map(|&d| (d.name().to_string(), sample(d)))
        .collect();
    let views: Vec<(&str, nc_data::ArrayView)> =
        arrays.iter().map(|(n, a)| (n.as_str(), a.view())).collect();
    let path = dir.join("all.npz");
    nc_data::npz::write_npz(&path, &views).unwrap();
    let back = nc_data::npz::read_npz(&path).unwrap();
    assert_eq!(back.len(), arrays.len());
    for (name, array) in &arrays {
        assert!(same_bits(array, &back[name]), "{name}");
    }
    // The member order is the order given.
    let reader = nc_data::npz::NpzReader::open(&path).unwrap();
    let names: Vec<&str> = arrays.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(reader.names(), names.as_slice());
}

#[test]
fn npz_writer_rejects_duplicate_and_mismatched_arrays() {
    let dir = scratch("npz_bad");
    let a = sample(DType::F32);
    let path = dir.join("dup.npz");
    let msg = nc_data::npz::write_npz(&path, &[("x", a.view()), ("x", a.view())])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("dup.npz") && msg.contains("given twice"),
        "{msg}"
    );
    let bad = nc_data::ArrayView {
        shape: &[5],
        data: a.view().data,
    };
    let msg = nc_data::npz::write_npz(&path, &[("x", bad)])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("shape (5,) needs 5 elements but 12 were given"),
        "{msg}"
    );
    assert!(!path.exists());
}

#[test]
fn safetensors_every_dtype_and_reference_crate_agrees() {
    let dir = scratch("safetensors");
    let arrays: Vec<(String, NpyArray)> = DType::ALL
        .iter()
        .map(|&d| (d.name().to_string(), sample(d)))
        .collect();
    let views: Vec<(&str, nc_data::ArrayView)> =
        arrays.iter().map(|(n, a)| (n.as_str(), a.view())).collect();
    let path = dir.join("all.safetensors");
    let metadata = BTreeMap::from([("producer".to_string(), "nclab".to_string())]);
    nc_data::safetensors::write_safetensors_with_metadata(&path, &views, &metadata).unwrap();

    let back = nc_data::safetensors::read_safetensors(&path).unwrap();
    for (name, array) in &arrays {
        assert!(same_bits(array, &back[name]), "{name}");
    }

    // The reference implementation reads our file and sees the same bytes.
    let bytes = std::fs::read(&path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(
        header
            .metadata()
            .as_ref()
            .and_then(|m| m.get("producer"))
            .map(String::as_str),
        Some("nclab")
    );
    let reference = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    for (name, array) in &arrays {
        let tensor = reference.tensor(name).unwrap();
        assert_eq!(tensor.shape(), array.shape.as_slice());
        assert_eq!(
            format!("{:?}", tensor.dtype()),
            array.dtype().safetensors_name()
        );
        let mut expected = Vec::new();
        match &array.data {
            ArrayData::Bool(v) => expected.extend(v.iter().map(|&b| u8::from(b))),
            ArrayData::U8(v) => expected.extend_from_slice(v),
            ArrayData::I8(v) => expected.extend(v.iter().flat_map(|x| x.to_le_bytes())),
            ArrayData::U16(v) => expected.extend(v.iter().flat_map(|x| x.to_le_bytes())),
            ArrayData::I16(v) => expected.extend(v.iter().flat_map(|x| x.to_le_bytes())),
            ArrayData::U32(v) => expected.extend(v.iter().flat_map(|x| x.to_le_bytes())),
            ArrayData::I32(v) => expected.extend(v.iter().flat_map(|x| x.to_le_bytes())),
            ArrayData::U64(v) => expected.extend(v.iter().flat_map(|x| x.to_le_bytes())),
            ArrayData::I64(v) => expected.extend(v.iter().flat_map(|x| x.to_le_bytes())),
            ArrayData::F32(v) => expected.extend(v.iter().flat_map(|x| x.to_le_bytes())),
            ArrayData::F64(v) => expected.extend(v.iter().flat_map(|x| x.to_le_bytes())),
        }
        assert_eq!(tensor.data(), expected.as_slice(), "{name}");
    }
}

#[test]
fn safetensors_reader_reads_reference_crate_output() {
    let dir = scratch("safetensors_ref");
    let floats: Vec<u8> = [1.25f32, -3.5, 7.0, 0.1, 2.0, -0.0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let ints: Vec<u8> = [5i64, -9].iter().flat_map(|x| x.to_le_bytes()).collect();
    let tensors = vec![
        (
            "w",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 3], &floats)
                .unwrap(),
        ),
        (
            "k",
            safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![2], &ints).unwrap(),
        ),
    ];
    let path = dir.join("ref.safetensors");
    std::fs::write(
        &path,
        safetensors::tensor::serialize(tensors, None).unwrap(),
    )
    .unwrap();
    let back = nc_data::safetensors::read_safetensors(&path).unwrap();
    assert_eq!(back["w"].shape, [2, 3]);
    assert_eq!(
        back["w"].data,
        ArrayData::F32(vec![1.25, -3.5, 7.0, 0.1, 2.0, -0.0])
    );
    assert_eq!(back["k"].data, ArrayData::I64(vec![5, -9]));
}

/// Features (f64), labels, weight, bias and indices of a 7-sample, d = 3, K = 3 set.
struct ExportFixture {
    features: Vec<f64>,
    labels: Vec<u32>,
    weight: Vec<f64>,
    bias: Vec<f64>,
    indices: Vec<u64>,
}

fn export_fixture() -> ExportFixture {
    let (n, d, k) = (7, 3, 3);
    let features: Vec<f64> = (0..n * d).map(|i| (i as f64 * 0.37).sin()).collect();
    let labels: Vec<u32> = (0..n as u32).map(|i| i % k as u32).collect();
    let weight: Vec<f64> = (0..k * d).map(|i| i as f64 / 7.0 - 0.5).collect();
    let bias = vec![0.1, -0.2, 1.0 / 3.0];
    let indices = vec![0, 5, 9, 1 << 40, 3, 2, 8];
    ExportFixture {
        features,
        labels,
        weight,
        bias,
        indices,
    }
}

#[test]
fn feature_files_round_trip() {
    let dir = scratch("features");
    let ExportFixture {
        features: features64,
        labels,
        weight,
        bias,
        indices,
    } = export_fixture();
    let features32: Vec<f32> = features64.iter().map(|&x| x as f32).collect();
    for (file, features) in [
        ("f32.npz", FloatSlice::F32(&features32)),
        ("f64.npz", FloatSlice::F64(&features64)),
        ("f32.safetensors", FloatSlice::F32(&features32)),
    ] {
        let export = FeatureExport {
            features,
            num_samples: 7,
            dim: 3,
            labels: &labels,
            weight: Some((&weight, 3)),
            bias: Some(&bias),
            indices: Some(&indices),
        };
        let path = dir.join(file);
        save_feature_file(&path, &export).unwrap();
        let set = load_feature_file(&path, &FeatureKeys::default()).unwrap();
        assert_eq!((set.num_samples, set.dim), (7, 3));
        // Features are always saved as float32.
        assert_eq!(set.features, FloatData::F32(features32.clone()), "{file}");
        assert_eq!(set.labels, labels);
        assert_eq!(set.weight.as_deref(), Some(weight.as_slice()));
        assert_eq!(set.num_classes_weight, Some(3));
        assert_eq!(set.bias.as_deref(), Some(bias.as_slice()));
        assert_eq!(set.indices.as_deref(), Some(indices.as_slice()));
        // Saving what was loaded gives the same set again.
        let again = dir.join(format!("again-{file}"));
        save_feature_file(&again, &set.as_export()).unwrap();
        let reloaded = load_feature_file(&again, &FeatureKeys::default()).unwrap();
        assert_eq!(reloaded.features, set.features);
        assert_eq!(reloaded.labels, set.labels);
    }
    // Labels are int64 and indices int64 in the file.
    let arrays = nc_data::npz::read_npz(&dir.join("f32.npz")).unwrap();
    assert_eq!(arrays["labels"].dtype(), DType::I64);
    assert_eq!(arrays["indices"].dtype(), DType::I64);
    assert_eq!(arrays["features"].dtype(), DType::F32);
    assert_eq!(arrays["weight"].shape, [3, 3]);
}

#[test]
fn feature_file_without_classifier() {
    let dir = scratch("features_minimal");
    let features = [1.0f32, 2.0, 3.0, 4.0];
    let export = FeatureExport {
        features: FloatSlice::F32(&features),
        num_samples: 2,
        dim: 2,
        labels: &[1, 0],
        weight: None,
        bias: None,
        indices: None,
    };
    let path = dir.join("min.npz");
    nc_data::save_feature_npz(&path, &export).unwrap();
    let set = load_feature_file(&path, &FeatureKeys::default()).unwrap();
    assert_eq!(set.weight, None);
    assert_eq!(set.num_classes_weight, None);
    assert_eq!(set.bias, None);
    assert_eq!(set.indices, None);
    assert_eq!(
        nc_data::npz::NpzReader::open(&path).unwrap().names(),
        ["features", "labels"]
    );
}

#[test]
fn feature_export_is_validated() {
    let dir = scratch("features_invalid");
    let features = [1.0f32; 6];
    let weight = [0.5f64; 6];
    let base = FeatureExport {
        features: FloatSlice::F32(&features),
        num_samples: 3,
        dim: 2,
        labels: &[0, 1, 0],
        weight: Some((&weight, 3)),
        bias: Some(&[0.0, 0.0, 0.0]),
        indices: None,
    };
    let path = dir.join("out.npz");
    let cases: Vec<(FeatureExport, &str)> = vec![
        (
            FeatureExport {
                num_samples: 4,
                ..base
            },
            "array 'features' has 6 values, expected 8 (N x d)",
        ),
        (
            FeatureExport {
                labels: &[0, 1],
                ..base
            },
            "array 'labels' has 2 values, expected 3",
        ),
        (
            FeatureExport {
                weight: Some((&weight, 2)),
                ..base
            },
            "array 'weight' has 6 values, expected 4 (K x d)",
        ),
        (
            FeatureExport {
                bias: Some(&[0.0]),
                ..base
            },
            "array 'bias' has 1 values, expected 3",
        ),
        (
            FeatureExport {
                weight: None,
                ..base
            },
            "array 'bias' is given without a classifier weight",
        ),
        (
            FeatureExport {
                indices: Some(&[1, 2]),
                ..base
            },
            "array 'indices' has 2 values, expected 3",
        ),
    ];
    for (export, expected) in cases {
        let msg = save_feature_file(&path, &export).unwrap_err().to_string();
        assert!(msg.contains("out.npz") && msg.contains(expected), "{msg}");
        assert!(!path.exists());
    }
    let msg = save_feature_file(&dir.join("out.csv"), &base)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("out.csv") && msg.contains(".npz or .safetensors"),
        "{msg}"
    );
}

/// Archives below 4 GiB need no zip64 extension: every member has a plain zip 2.0 local
/// header without extra fields, readable by any unzip, and the archive ends with the plain
/// end-of-directory record.
#[test]
fn small_npz_archives_are_plain_zip_without_zip64_records() {
    let dir = scratch("npz-plain-zip");
    let path = dir.join("small.npz");
    let a = sample(DType::F32);
    let b = sample(DType::I64);
    nc_data::npz::write_npz(&path, &[("a", a.view()), ("b", b.view())]).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let mut at = 0;
    for (name, array) in [("a.npy", &a), ("b.npy", &b)] {
        assert_eq!(&bytes[at..at + 4], b"PK\x03\x04", "{name}: no local header");
        assert!(
            u16_at(at + 4) <= 20,
            "{name}: needs zip version {}",
            u16_at(at + 4)
        );
        assert_eq!(u16_at(at + 28), 0, "{name}: local header has extra fields");
        let size = nc_data::npy::encoded_len(&array.view());
        assert_eq!(u32_at(at + 18) as usize, size, "{name}: compressed size");
        assert_eq!(&bytes[at + 30..at + 30 + name.len()], name.as_bytes());
        at += 30 + name.len() + size;
    }
    assert_eq!(&bytes[at..at + 4], b"PK\x01\x02", "central directory");
    let end = bytes.len() - 22;
    assert_eq!(
        &bytes[end..end + 4],
        b"PK\x05\x06",
        "end of central directory"
    );
    assert!(
        !bytes
            .windows(4)
            .any(|w| w == b"PK\x06\x06" || w == b"PK\x06\x07"),
        "zip64 end records"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn npz_reader_debug_shows_the_file_and_its_arrays() {
    let dir = scratch("npz-debug");
    let path = dir.join("two.npz");
    let a = sample(DType::F64);
    nc_data::npz::write_npz(&path, &[("means", a.view()), ("weight", a.view())]).unwrap();
    let reader = nc_data::npz::NpzReader::open(&path).unwrap();
    assert_eq!(
        format!("{reader:?}"),
        format!(
            "NpzReader {{ path: {:?}, names: [\"means\", \"weight\"] }}",
            path
        )
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
