//! PyTorch `.pt` files (fixtures made with PyTorch by tests/fixtures/torch/make_fixtures.py):
//! the same numbers as the `.npz` of the same arrays, nested state dicts and dotted keys, and
//! every refusal (pickled classes, truncated, corrupt, legacy) an error naming the file,
//! never a panic.

use std::path::{Path, PathBuf};

use nc_data::classifier::load_classifier;
use nc_data::npz::read_npz;
use nc_data::torch::{read_torch, TorchReader};
use nc_data::{load_feature_file, ArrayData, FeatureKeys, FeatureSet};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/torch")
        .join(name)
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("torch")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn assert_same_set(pt: &FeatureSet, npz: &FeatureSet) {
    assert_eq!(pt.num_samples, npz.num_samples);
    assert_eq!(pt.dim, npz.dim);
    assert_eq!(pt.features, npz.features, "{}", pt.path.display());
    assert_eq!(pt.labels, npz.labels);
    assert_eq!(pt.weight, npz.weight);
    assert_eq!(pt.num_classes_weight, npz.num_classes_weight);
    assert_eq!(pt.bias, npz.bias);
    assert_eq!(pt.indices, npz.indices);
}

#[test]
fn every_fixture_reads_as_its_npz_twin() {
    for name in [
        "features_f32",
        "features_f64",
        "features_f16",
        "features_bf16",
        "strided",
        "features_only",
    ] {
        let pt = fixture(&format!("{name}.pt"));
        let npz = fixture(&format!("{name}.npz"));
        // Every tensor, as arrays.
        assert_eq!(read_torch(&pt).unwrap(), read_npz(&npz).unwrap(), "{name}");
        // As feature sets.
        let keys = FeatureKeys::default();
        let a = load_feature_file(&pt, &keys).unwrap();
        let b = load_feature_file(&npz, &keys).unwrap();
        assert_same_set(&a, &b);
        assert_eq!(a.num_samples, 12, "{name}");
    }
}

#[test]
fn dtypes_are_kept_or_widened_to_float32() {
    let dtype = |name: &str, key: &str| {
        let mut r = TorchReader::open(&fixture(name)).unwrap();
        r.read(key).unwrap().dtype_name()
    };
    assert_eq!(dtype("features_f32.pt", "features"), "float32");
    assert_eq!(dtype("features_f64.pt", "features"), "float64");
    assert_eq!(dtype("features_f16.pt", "features"), "float32");
    assert_eq!(dtype("features_bf16.pt", "features"), "float32");
    assert_eq!(dtype("features_f32.pt", "labels"), "int64");
    assert_eq!(dtype("features_f16.pt", "labels"), "int32");
    assert_eq!(dtype("features_bf16.pt", "labels"), "uint8");
    // Plain float32/float64 features are read in place from the file.
    for name in ["features_f32.pt", "features_f64.pt"] {
        let set = load_feature_file(&fixture(name), &FeatureKeys::default()).unwrap();
        assert!(
            matches!(set.features, nc_data::FloatData::Mapped(_)),
            "{name}"
        );
    }
    // A strided view is gathered (a copy), with the same values as numpy's contiguous copy.
    let set = load_feature_file(&fixture("strided.pt"), &FeatureKeys::default()).unwrap();
    assert!(matches!(set.features, nc_data::FloatData::F32(_)));
}

#[test]
fn a_checkpoint_gives_its_classifier_under_dotted_and_nested_names() {
    let ckpt = fixture("checkpoint.pth");
    let want = read_npz(&fixture("checkpoint_classifier.npz")).unwrap();
    let as_f64 = |a: &nc_data::NpyArray| a.to_f64_vec();
    for (w, b) in [
        ("fc.weight", "fc.bias"),
        ("state_dict.fc.weight", "state_dict.fc.bias"),
    ] {
        let c = load_classifier(&ckpt, w, b, true, Some(3)).unwrap();
        assert_eq!(c.num_classes, 3);
        assert_eq!(c.dim, 3);
        assert_eq!(c.weight, as_f64(&want["weight"]));
        assert_eq!(c.bias.as_deref(), Some(&as_f64(&want["bias"])[..]));
    }
    let reader = TorchReader::open(&ckpt).unwrap();
    assert_eq!(
        reader.names(),
        [
            "state_dict.body.weight",
            "state_dict.body.bias",
            "state_dict.fc.weight",
            "state_dict.fc.bias"
        ]
    );
    // A missing name lists what the file holds; a wrong width is refused.
    let err = load_classifier(&ckpt, "weight", "bias", false, Some(3))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("checkpoint.pth")
            && err.contains("missing array 'weight'")
            && err.contains("state_dict.fc.weight"),
        "{err}"
    );
    let err = load_classifier(&ckpt, "fc.weight", "fc.bias", true, Some(5))
        .unwrap_err()
        .to_string();
    assert!(err.contains("d = 5 columns"), "{err}");
    // Non-tensors where a tensor is needed.
    let err = load_classifier(&ckpt, "epoch", "fc.bias", true, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("'epoch' is an int, not a tensor"), "{err}");
    // The same classifier from a safetensors state dict.
    let dir = scratch("safetensors_ckpt");
    let st = dir.join("ckpt.safetensors");
    let w = want["weight"].view();
    let b = want["bias"].view();
    nc_data::safetensors::write_safetensors(&st, &[("fc.weight", w), ("fc.bias", b)]).unwrap();
    let c = load_classifier(&st, "fc.weight", "fc.bias", true, Some(3)).unwrap();
    assert_eq!(c.weight, as_f64(&want["weight"]));
}

#[test]
fn non_tensors_pickled_classes_and_broken_files_are_refused_naming_the_file() {
    let keys = FeatureKeys::default();
    let message = |name: &str, keys: &FeatureKeys| {
        load_feature_file(&fixture(name), keys)
            .unwrap_err()
            .to_string()
    };
    let err = message("custom_class.pt", &keys);
    assert!(
        err.contains("custom_class.pt") && err.contains("'__main__.Config'"),
        "{err}"
    );
    let err = message("bare_tensor.pt", &keys);
    assert!(
        err.contains("bare_tensor.pt") && err.contains("holds a tensor, expected a dict"),
        "{err}"
    );
    let err = message("truncated.pt", &keys);
    assert!(
        err.contains("truncated.pt") && err.contains("truncated"),
        "{err}"
    );
    let err = message("legacy.pt", &keys);
    assert!(
        err.contains("legacy.pt") && err.contains("legacy (pre-zip)") && err.contains("re-save"),
        "{err}"
    );
    for (key, kind) in [("note", "is a str"), ("labels_list", "is a list")] {
        let keys = FeatureKeys {
            labels: key.to_string(),
            ..FeatureKeys::default()
        };
        let err = message("features_f32.pt", &keys);
        assert!(
            err.contains("features_f32.pt")
                && err.contains(&format!("'{key}' {kind}, not a tensor")),
            "{err}"
        );
    }
}

#[test]
fn every_truncation_and_byte_flip_is_an_error_or_a_valid_read_never_a_panic() {
    let dir = scratch("corrupt");
    let whole = std::fs::read(fixture("features_f32.pt")).unwrap();
    let path = dir.join("cut.pt");
    let keys = FeatureKeys::default();
    for n in (0..whole.len()).step_by(7) {
        std::fs::write(&path, &whole[..n]).unwrap();
        let err = load_feature_file(&path, &keys).unwrap_err().to_string();
        assert!(err.contains("cut.pt"), "{n}: {err}");
    }
    let path = dir.join("flipped.pt");
    for i in (0..whole.len()).step_by(3) {
        let mut bytes = whole.clone();
        bytes[i] ^= 0x5a;
        std::fs::write(&path, &bytes).unwrap();
        if let Err(err) = load_feature_file(&path, &keys) {
            assert!(err.to_string().contains("flipped.pt"), "{i}: {err}");
        }
    }
}

#[test]
fn labels_of_every_integer_width_match_and_floats_are_not_labels() {
    let mut r = TorchReader::open(&fixture("features_bf16.pt")).unwrap();
    let labels = r.read("labels").unwrap();
    assert_eq!(
        labels.data,
        ArrayData::U8((0..12).map(|i| (i % 3) as u8).collect())
    );
    let keys = FeatureKeys {
        labels: "features".into(),
        ..FeatureKeys::default()
    };
    let err = load_feature_file(&fixture("features_f32.pt"), &keys)
        .unwrap_err()
        .to_string();
    assert!(err.contains("features_f32.pt"), "{err}");
}
