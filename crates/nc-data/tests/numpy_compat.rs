//! Reads the files written by NumPy and safetensors (tests/fixtures/make_fixtures.py) and
//! checks every value against the expected.json that the same script wrote from NumPy's own
//! arrays.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nc_data::npz::NpzReader;
use nc_data::safetensors::SafetensorsReader;
use nc_data::{load_feature_file, ArrayData, DataError, FeatureKeys, FloatData, NpyArray};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixture("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("expected.json parses")
}

/// Asserts that `array` has NumPy's dtype, shape and exact values from `spec`.
fn assert_matches(array: &NpyArray, spec: &Value, what: &str) {
    assert_eq!(
        array.dtype_name(),
        spec["dtype"].as_str().unwrap(),
        "{what}: dtype"
    );
    let shape: Vec<usize> = spec["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(array.shape, shape, "{what}: shape");
    let values = spec["values"].as_array().unwrap();
    assert_eq!(array.len(), values.len(), "{what}: element count");
    for (i, v) in values.iter().enumerate() {
        let ok = match &array.data {
            ArrayData::Bool(d) => v.as_bool() == Some(d[i]),
            ArrayData::U8(d) => v.as_u64() == Some(u64::from(d[i])),
            ArrayData::U16(d) => v.as_u64() == Some(u64::from(d[i])),
            ArrayData::U32(d) => v.as_u64() == Some(u64::from(d[i])),
            ArrayData::U64(d) => v.as_u64() == Some(d[i]),
            ArrayData::I8(d) => v.as_i64() == Some(i64::from(d[i])),
            ArrayData::I16(d) => v.as_i64() == Some(i64::from(d[i])),
            ArrayData::I32(d) => v.as_i64() == Some(i64::from(d[i])),
            ArrayData::I64(d) => v.as_i64() == Some(d[i]),
            // Bit-exact: NumPy's float32 values are exact in f64, and -0.0 must stay -0.0.
            ArrayData::F32(d) => same_float(float_value(v), f64::from(d[i])),
            ArrayData::F64(d) => same_float(float_value(v), d[i]),
        };
        assert!(
            ok,
            "{what}: element {i} is {:?}, NumPy has {v}",
            element(&array.data, i)
        );
    }
}

/// A float written by the script as its Python repr() string ("0.1", "inf", "nan", "-0.0").
fn float_value(v: &Value) -> f64 {
    let text = v
        .as_str()
        .unwrap_or_else(|| panic!("float value {v} is not a string"));
    text.parse()
        .unwrap_or_else(|_| panic!("cannot parse float '{text}'"))
}

fn same_float(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

fn element(data: &ArrayData, i: usize) -> String {
    match data {
        ArrayData::Bool(d) => d[i].to_string(),
        ArrayData::U8(d) => d[i].to_string(),
        ArrayData::U16(d) => d[i].to_string(),
        ArrayData::U32(d) => d[i].to_string(),
        ArrayData::U64(d) => d[i].to_string(),
        ArrayData::I8(d) => d[i].to_string(),
        ArrayData::I16(d) => d[i].to_string(),
        ArrayData::I32(d) => d[i].to_string(),
        ArrayData::I64(d) => d[i].to_string(),
        ArrayData::F32(d) => format!("{:e}", d[i]),
        ArrayData::F64(d) => format!("{:e}", d[i]),
    }
}

fn check_all(file: &str, arrays: &BTreeMap<String, NpyArray>) {
    let expected = expected();
    let spec = expected[file].as_object().unwrap();
    assert_eq!(
        arrays.keys().collect::<Vec<_>>(),
        spec.keys().collect::<Vec<_>>(),
        "{file}: array names"
    );
    for (name, array) in arrays {
        assert_matches(array, &spec[name], &format!("{file}/{name}"));
    }
}

#[test]
fn npz_stored_every_dtype() {
    let arrays = nc_data::npz::read_npz(&fixture("dtypes.npz")).unwrap();
    assert_eq!(arrays.len(), 11);
    check_all("dtypes.npz", &arrays);
}

#[test]
fn npz_compressed_every_dtype() {
    let arrays = nc_data::npz::read_npz(&fixture("dtypes_compressed.npz")).unwrap();
    check_all("dtypes_compressed.npz", &arrays);
}

#[test]
fn npy_header_versions_scalar_and_empty() {
    let expected = expected();
    for (file, version) in [
        ("v1_f4.npy", 1),
        ("v2_i8.npy", 2),
        ("v3_u2.npy", 3),
        ("scalar_f8.npy", 1),
        ("empty_f4.npy", 1),
    ] {
        let header = nc_data::npy::read_npy_header(&fixture(file)).unwrap();
        assert_eq!(header.version, (version, 0), "{file}");
        let array = nc_data::npy::read_npy(&fixture(file)).unwrap();
        assert_matches(&array, &expected[file]["array"], file);
    }
}

#[test]
fn npy_fortran_order_is_reordered() {
    let expected = expected();
    for file in ["fortran_f8.npy", "fortran_i4_3d.npy"] {
        assert!(
            nc_data::npy::read_npy_header(&fixture(file))
                .unwrap()
                .fortran_order
        );
        let array = nc_data::npy::read_npy(&fixture(file)).unwrap();
        assert_matches(&array, &expected[file]["array"], file);
    }
}

#[test]
fn npy_special_float_values() {
    let array = nc_data::npy::read_npy(&fixture("specials_f4.npy")).unwrap();
    assert_matches(&array, &expected()["specials_f4.npy"]["array"], "specials");
    let ArrayData::F32(v) = array.data else {
        panic!("expected float32")
    };
    assert_eq!(v[0], f32::INFINITY);
    assert_eq!(v[1], f32::NEG_INFINITY);
    assert!(v[2].is_nan());
    assert!(v[3] == 0.0 && v[3].is_sign_negative());
}

#[test]
fn safetensors_every_dtype_and_metadata() {
    let arrays = nc_data::safetensors::read_safetensors(&fixture("tensors.safetensors")).unwrap();
    check_all("tensors.safetensors", &arrays);
    let reader = SafetensorsReader::open(&fixture("features.safetensors")).unwrap();
    assert_eq!(
        reader.metadata().get("source").map(String::as_str),
        Some("make_fixtures.py")
    );
}

#[test]
fn safetensors_half_precision_is_unsupported() {
    let mut reader = SafetensorsReader::open(&fixture("half.safetensors")).unwrap();
    let err = reader.read("half").unwrap_err();
    assert!(matches!(err, DataError::UnsupportedDtype { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("half.safetensors") && msg.contains("'F16'") && msg.contains("tensor 'half'"),
        "{msg}"
    );
}

#[test]
fn npz_reader_reads_members_on_demand() {
    let mut reader = NpzReader::open(&fixture("features_savez.npz")).unwrap();
    assert_eq!(reader.names(), ["features", "labels", "weight", "bias"]);
    let labels = reader.read("labels").unwrap();
    assert_matches(
        &labels,
        &expected()["features_savez.npz"]["labels"],
        "labels",
    );
}

/// Checks a loaded feature set against the arrays NumPy wrote.
fn check_feature_set(file: &str, set: &nc_data::FeatureSet, keys: &FeatureKeys) {
    let expected = expected();
    let spec = &expected[file];
    let features = &spec[&keys.features];
    let shape = features["shape"].as_array().unwrap();
    assert_eq!(set.num_samples as u64, shape[0].as_u64().unwrap());
    assert_eq!(set.dim as u64, shape[1].as_u64().unwrap());
    assert_eq!(
        set.features.dtype_name(),
        features["dtype"].as_str().unwrap()
    );
    let values: Vec<f64> = features["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(float_value)
        .collect();
    for (i, v) in values.iter().enumerate() {
        assert_eq!(
            set.features.get(i).unwrap().to_bits(),
            v.to_bits(),
            "{file}: features[{i}]"
        );
    }
    let labels: Vec<u32> = spec[&keys.labels]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(set.labels, labels, "{file}: labels");
    let floats = |key: &str| -> Option<Vec<f64>> {
        spec.get(key).map(|a| {
            a["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(float_value)
                .collect()
        })
    };
    assert_eq!(set.weight, floats(&keys.weight), "{file}: weight");
    assert_eq!(
        set.num_classes_weight,
        spec.get(&keys.weight)
            .map(|w| w["shape"][0].as_u64().unwrap() as usize)
    );
    assert_eq!(set.bias, floats(&keys.bias), "{file}: bias");
    let indices = spec.get("indices").map(|a| {
        a["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect::<Vec<u64>>()
    });
    assert_eq!(set.indices, indices, "{file}: indices");
}

#[test]
fn feature_files_from_numpy_and_safetensors() {
    let keys = FeatureKeys::default();
    for file in [
        "features_savez.npz",
        "features_compressed.npz",
        "features.safetensors",
        "features_dir",
    ] {
        let set =
            load_feature_file(&fixture(file), &keys).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(set.path, fixture(file));
        check_feature_set(file, &set, &keys);
    }
    // Precision is kept (float32 stays float32, float64 stays float64); plainly stored
    // features are read in place from the mapped file, compressed ones are copied.
    let storage = |file: &str| match load_feature_file(&fixture(file), &keys).unwrap().features {
        FloatData::Mapped(m) => format!("mapped {}", m.dtype().name()),
        other => format!("copied {}", other.dtype_name()),
    };
    assert_eq!(storage("features_savez.npz"), "mapped float32");
    assert_eq!(storage("features.safetensors"), "mapped float32");
    assert_eq!(storage("features_dir"), "mapped float32");
    assert_eq!(storage("features_compressed.npz"), "copied float64");
}

#[test]
fn fortran_order_features_are_copied_into_c_order() {
    let dir = std::env::temp_dir().join(format!("nc-data-fortran-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fixture("fortran_f8.npy"), dir.join("features.npy")).unwrap();
    std::fs::copy(fixture("features_dir/labels.npy"), dir.join("labels.npy")).unwrap();
    let set = load_feature_file(&dir, &FeatureKeys::default()).unwrap();
    assert!(matches!(set.features, FloatData::F64(_)));
    let expected: Vec<f64> = expected()["fortran_f8.npy"]["array"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(float_value)
        .collect();
    assert_eq!(set.features.to_f64_vec(), expected);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn feature_file_with_custom_keys() {
    let keys = FeatureKeys {
        features: "h".into(),
        labels: "y".into(),
        ..FeatureKeys::default()
    };
    let set = load_feature_file(&fixture("features_custom_keys.npz"), &keys).unwrap();
    check_feature_set("features_custom_keys.npz", &set, &keys);
    let err = load_feature_file(
        &fixture("features_custom_keys.npz"),
        &FeatureKeys::default(),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("features_custom_keys.npz")
            && msg.contains("missing array 'features'")
            && msg.contains("h, y"),
        "{msg}"
    );
}
