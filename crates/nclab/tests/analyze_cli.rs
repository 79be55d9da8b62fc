//! `nclab analyze` end to end: output keys, and every kind of bad input giving one clear
//! message that names the file, exit status 2, and no panic.

mod common;
use common::{nclab, scratch_dir};

use nc_data::npz::write_npz;
use nc_data::safetensors::write_safetensors;
use nc_data::{ArraySlice, ArrayView};
use std::path::Path;

/// Four samples in 2-D, two classes, a 2 x 2 classifier.
struct Arrays {
    features: (Vec<usize>, Vec<f32>),
    labels: (Vec<usize>, Vec<i64>),
    weight: Option<(Vec<usize>, Vec<f64>)>,
    bias: Option<(Vec<usize>, Vec<f64>)>,
}

fn good() -> Arrays {
    Arrays {
        features: (vec![4, 2], vec![-1.0, 0.1, -1.2, -0.1, 1.0, 0.2, 1.1, -0.2]),
        labels: (vec![4], vec![0, 0, 1, 1]),
        weight: Some((vec![2, 2], vec![-1.0, 0.0, 1.0, 0.0])),
        bias: Some((vec![2], vec![0.0, 0.0])),
    }
}

fn write(path: &Path, a: &Arrays) {
    let mut views = vec![
        (
            "features",
            ArrayView {
                shape: &a.features.0,
                data: ArraySlice::F32(&a.features.1),
            },
        ),
        (
            "labels",
            ArrayView {
                shape: &a.labels.0,
                data: ArraySlice::I64(&a.labels.1),
            },
        ),
    ];
    if let Some((shape, data)) = &a.weight {
        views.push((
            "weight",
            ArrayView {
                shape,
                data: ArraySlice::F64(data),
            },
        ));
    }
    if let Some((shape, data)) = &a.bias {
        views.push((
            "bias",
            ArrayView {
                shape,
                data: ArraySlice::F64(data),
            },
        ));
    }
    if path.extension().is_some_and(|e| e == "safetensors") {
        write_safetensors(path, &views).unwrap();
    } else {
        write_npz(path, &views).unwrap();
    }
}

/// Runs analyze on a file made from `arrays` and expects exit 2 with all `needles` in stderr.
fn expect_rejected(name: &str, arrays: &Arrays, needles: &[&str]) {
    let dir = scratch_dir(name);
    let path = dir.join(format!("{name}.npz"));
    write(&path, arrays);
    expect_error(&[path.to_str().unwrap()], &path, needles);
}

fn expect_error(args: &[&str], path: &Path, needles: &[&str]) {
    let mut all = vec!["analyze"];
    all.extend_from_slice(args);
    let (code, _, stderr) = nclab(&all);
    assert_eq!(code, 2, "{args:?}: exit status {code}, stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let file_name = path.file_name().unwrap().to_str().unwrap();
    assert!(
        stderr.contains(file_name),
        "message should name {file_name}: {stderr}"
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "message should mention '{needle}': {stderr}"
        );
    }
}

#[test]
fn json_has_exactly_the_spec_keys() {
    let dir = scratch_dir("keys");
    for ext in ["npz", "safetensors"] {
        let path = dir.join(format!("good.{ext}"));
        write(&path, &good());
        let (code, stdout, stderr) = nclab(&["analyze", path.to_str().unwrap(), "--json"]);
        assert_eq!(code, 0, "{stderr}");
        let value: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        // The documented keys (docs/metrics.md), alphabetically.
        let expected = "accuracy bias_relation cdnv convention dim equiangle_h equiangle_w \
                        equinorm_h equinorm_w gnc2_log_h gnc2_log_w gnc2_margin_w gnc2_riesz_h gnc2_riesz_w \
                        gnc3 nc1 nc1_trace_ratio nc2 nc2_means nc3 nc4 ncc_accuracy \
                        num_classes num_samples sigma_b_rank";
        assert_eq!(keys.join(" "), expected);
        assert_eq!(value["convention"], "nclab");
        assert_eq!(value["num_samples"], 4);
        assert_eq!(value["accuracy"], 1.0);
        // Hand-computed: class 0 at (-1.1, 0) +/- (0.1, 0.1), class 1 at (1.05, 0) +/- (0.05, 0.2);
        // only the first coordinate separates them, so NC1 sees the within-class spread along it.
        let nc1 = value["nc1"].as_f64().unwrap();
        let within_x = (0.01 + 0.01 + 0.0025 + 0.0025) / 4.0;
        let between_x = (1.075f64.powi(2) + 1.075f64.powi(2)) / 2.0;
        assert!(
            (nc1 - within_x / between_x / 2.0).abs() < 1e-6,
            "nc1 = {nc1}"
        );
    }
}

#[test]
fn a_convention_changes_its_formulas_and_is_recorded() {
    let dir = scratch_dir("convention");
    let path = dir.join("good.npz");
    write(&path, &good());
    let file = path.to_str().unwrap();
    let json = |extra: &[&str]| {
        let mut args = vec!["analyze", file, "--json"];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = nclab(&args);
        assert_eq!(code, 0, "{stderr}");
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap()
    };
    let spec = json(&[]);
    // A preset, the same preset spelled as switches, and a switch on top of a preset.
    let total = json(&["--convention", "papyan2020"]);
    assert_eq!(total["convention"], "papyan2020");
    let nc1 = |v: &serde_json::Value| v["nc1"].as_f64().unwrap();
    // K = 2 with equal counts: the mean of class means is the sample mean, so NC1 is the
    // specification's times K.
    assert!(
        (nc1(&total) - 2.0 * nc1(&spec)).abs() < 1e-12 * nc1(&spec),
        "{total}"
    );
    let switched = json(&["--nc1-scale", "total", "--nc4", "agreement"]);
    assert_eq!(
        switched["convention"],
        "nclab+nc1-scale=total,nc4=agreement"
    );
    assert!((nc1(&switched) - nc1(&total)).abs() < 1e-12 * nc1(&total));
    assert_eq!(
        switched["nc4"].as_f64().unwrap(),
        1.0 - spec["nc4"].as_f64().unwrap()
    );
    let mixed = json(&["--convention", "zhu2021", "--cdnv-variance", "sample"]);
    assert_eq!(mixed["convention"], "zhu2021+cdnv-variance=sample");
    let (code, table, _) = nclab(&["analyze", file, "--convention", "rhubarbwu"]);
    assert_eq!(code, 0);
    assert!(table.contains("convention: rhubarbwu"), "{table}");
    // Unknown names are refused by the argument parser (exit 2) with the choices.
    let (code, _, stderr) = nclab(&["analyze", file, "--convention", "papyan"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("unknown convention 'papyan' (expected one of nclab, zhou2022"),
        "{stderr}"
    );
    let (code, _, stderr) = nclab(&["analyze", file, "--nc3", "frobenius"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("gram") && stderr.contains("duality-squared"),
        "{stderr}"
    );
}

#[test]
fn without_weight_classifier_metrics_are_null_and_table_says_na() {
    let dir = scratch_dir("noweight");
    let path = dir.join("plain.npz");
    write(
        &path,
        &Arrays {
            weight: None,
            bias: None,
            ..good()
        },
    );
    let (code, stdout, _) = nclab(&["analyze", path.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    let value: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    for key in [
        "nc2",
        "nc3",
        "nc4",
        "bias_relation",
        "accuracy",
        "equinorm_w",
        "equiangle_w",
    ] {
        assert!(value[key].is_null(), "{key} should be null: {stdout}");
    }
    let (code, table, _) = nclab(&["analyze", path.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        table
            .lines()
            .any(|l| l.trim_start().starts_with("nc2") && l.contains("n/a")),
        "{table}"
    );
}

#[test]
fn means_from_another_file_drives_the_ncc_rule() {
    let dir = scratch_dir("meansfrom");
    let test_path = dir.join("test.npz");
    write(&test_path, &good());
    // "Training" means swapped between the classes: every test sample is nearer the wrong one.
    let swapped = Arrays {
        labels: (vec![4], vec![1, 1, 0, 0]),
        ..good()
    };
    let train_path = dir.join("train.npz");
    write(&train_path, &swapped);
    let (code, stdout, stderr) = nclab(&[
        "analyze",
        test_path.to_str().unwrap(),
        "--means-from",
        train_path.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let value: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(value["ncc_accuracy"], 0.0);
    assert_eq!(value["nc4"], 1.0);
    assert_eq!(value["accuracy"], 1.0);
}

#[test]
fn renamed_keys() {
    let dir = scratch_dir("keys-renamed");
    let path = dir.join("renamed.npz");
    let a = good();
    write_npz(
        &path,
        &[
            (
                "h",
                ArrayView {
                    shape: &a.features.0,
                    data: ArraySlice::F32(&a.features.1),
                },
            ),
            (
                "y",
                ArrayView {
                    shape: &a.labels.0,
                    data: ArraySlice::I64(&a.labels.1),
                },
            ),
        ],
    )
    .unwrap();
    let (code, _, stderr) = nclab(&[
        "analyze",
        path.to_str().unwrap(),
        "--features-key",
        "h",
        "--labels-key",
        "y",
    ]);
    assert_eq!(code, 0, "{stderr}");
    expect_error(&[path.to_str().unwrap()], &path, &["features"]);
    // A classifier name given explicitly must exist (the default names are optional).
    for flag in ["--weight-key", "--bias-key"] {
        expect_error(
            &[
                path.to_str().unwrap(),
                "--features-key",
                "h",
                "--labels-key",
                "y",
                flag,
                "fc_wieght",
            ],
            &path,
            &["fc_wieght", flag],
        );
    }
}

#[test]
fn missing_array() {
    let dir = scratch_dir("missing");
    let path = dir.join("missing.npz");
    let a = good();
    write_npz(
        &path,
        &[(
            "features",
            ArrayView {
                shape: &a.features.0,
                data: ArraySlice::F32(&a.features.1),
            },
        )],
    )
    .unwrap();
    expect_error(&[path.to_str().unwrap()], &path, &["labels"]);
}

#[test]
fn features_not_two_dimensional() {
    expect_rejected(
        "flat",
        &Arrays {
            features: (vec![8], good().features.1),
            ..good()
        },
        &["features"],
    );
}

#[test]
fn labels_length_differs() {
    expect_rejected(
        "short-labels",
        &Arrays {
            labels: (vec![3], vec![0, 1, 1]),
            ..good()
        },
        &["labels", "4"],
    );
}

#[test]
fn weight_shape_wrong() {
    expect_rejected(
        "weight-shape",
        &Arrays {
            weight: Some((vec![2, 3], vec![0.5; 6])),
            ..good()
        },
        &["weight"],
    );
}

#[test]
fn bias_length_wrong() {
    expect_rejected(
        "bias-len",
        &Arrays {
            bias: Some((vec![3], vec![0.0; 3])),
            ..good()
        },
        &["bias"],
    );
}

#[test]
fn nan_or_inf_anywhere() {
    let mut features = good().features.1;
    features[3] = f32::NAN;
    expect_rejected(
        "nan",
        &Arrays {
            features: (vec![4, 2], features),
            ..good()
        },
        &["non-finite", "row 1"],
    );
    expect_rejected(
        "inf-weight",
        &Arrays {
            weight: Some((vec![2, 2], vec![0.0, f64::INFINITY, 1.0, 0.0])),
            ..good()
        },
        &["weight", "non-finite"],
    );
    expect_rejected(
        "inf-bias",
        &Arrays {
            bias: Some((vec![2], vec![f64::NEG_INFINITY, 0.0])),
            ..good()
        },
        &["bias"],
    );
}

#[test]
fn negative_or_too_large_label() {
    expect_rejected(
        "negative",
        &Arrays {
            labels: (vec![4], vec![0, -1, 1, 1]),
            ..good()
        },
        &["labels", "-1"],
    );
    expect_rejected(
        "too-large",
        &Arrays {
            labels: (vec![4], vec![0, 0, 1, 2]),
            ..good()
        },
        &["label 2", "0..2"],
    );
}

#[test]
fn class_without_samples() {
    let weight = Some((vec![3, 2], vec![0.0, 1.0, 1.0, 0.0, -1.0, 0.0]));
    let bias = Some((vec![3], vec![0.0; 3]));
    expect_rejected(
        "empty-class",
        &Arrays {
            weight,
            bias,
            ..good()
        },
        &["class 2 has no samples"],
    );
}

#[test]
fn fewer_than_two_classes() {
    expect_rejected(
        "one-class",
        &Arrays {
            labels: (vec![4], vec![0, 0, 0, 0]),
            weight: None,
            bias: None,
            ..good()
        },
        &["at least 2 classes"],
    );
}

#[test]
fn truncated_or_corrupt_files() {
    let dir = scratch_dir("corrupt");
    let good_path = dir.join("good.npz");
    write(&good_path, &good());
    let bytes = std::fs::read(&good_path).unwrap();
    let truncated = dir.join("truncated.npz");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    expect_error(&[truncated.to_str().unwrap()], &truncated, &[]);
    let garbage = dir.join("garbage.npz");
    std::fs::write(&garbage, b"this is not a zip archive").unwrap();
    expect_error(&[garbage.to_str().unwrap()], &garbage, &[]);

    let st = dir.join("cut.safetensors");
    write(&st, &good());
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() - 7]).unwrap();
    expect_error(&[st.to_str().unwrap()], &st, &[]);

    let npy_dir = dir.join("npydir");
    std::fs::create_dir_all(&npy_dir).unwrap();
    std::fs::write(npy_dir.join("features.npy"), b"\x93NUMPY\x01\x00garbage").unwrap();
    std::fs::write(npy_dir.join("labels.npy"), b"\x93NUMPY").unwrap();
    expect_error(
        &[npy_dir.to_str().unwrap()],
        &npy_dir.join("features.npy"),
        &[],
    );
}

#[test]
fn path_that_does_not_exist() {
    let path = std::env::temp_dir().join("nclab-definitely-not-here.npz");
    expect_error(&[path.to_str().unwrap()], &path, &["not found"]);
}
