//! `nclab compare` on constructed run directories: a rotated, rescaled copy of a run is the
//! same network (distance 0, CKA 1, identical predictions); an unrelated one is not.

mod common;
use common::{nclab, scratch_dir};

use nc_data::npz::write_npz;
use nc_data::safetensors::write_safetensors;
use nc_data::{ArraySlice, ArrayView};
use std::path::Path;

/// Deterministic values in [-1, 1).
fn values(seed: u64, len: usize) -> Vec<f64> {
    let mut state = seed.wrapping_add(0x9E3779B97F4A7C15);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

const K: usize = 3;
const D: usize = 4;
const N: usize = 30;

/// A network's outputs: features (N x D), labels, classifier, class means.
struct Net {
    features: Vec<f64>,
    labels: Vec<i64>,
    weight: Vec<f64>,
    bias: Vec<f64>,
}

fn base_net(seed: u64) -> Net {
    let centres = values(seed, K * D);
    let noise = values(seed + 1, N * D);
    let labels: Vec<i64> = (0..N).map(|i| (i % K) as i64).collect();
    let features = (0..N)
        .flat_map(|i| (0..D).map(move |j| (i, j)))
        .map(|(i, j)| 3.0 * centres[(i % K) * D + j] + 0.3 * noise[i * D + j])
        .collect();
    Net {
        features,
        labels,
        weight: values(seed + 2, K * D),
        bias: values(seed + 3, K),
    }
}

/// The same network seen through a rotation R of feature space, scaled by 2:
/// h' = 2 R h, W' = W R^T / 2 (so logits are unchanged).
fn rotated(net: &Net) -> Net {
    // A rotation in the (0, 1) plane and a reflection of axis 3.
    let (c, s) = (0.6f64, 0.8f64);
    let rot =
        |v: &[f64]| -> Vec<f64> { vec![c * v[0] - s * v[1], s * v[0] + c * v[1], v[2], -v[3]] };
    let features = net
        .features
        .chunks(D)
        .flat_map(|h| rot(h).into_iter().map(|x| 2.0 * x))
        .collect();
    let weight = net
        .weight
        .chunks(D)
        .flat_map(|w| rot(w).into_iter().map(|x| x / 2.0))
        .collect();
    Net {
        features,
        labels: net.labels.clone(),
        weight,
        bias: net.bias.clone(),
    }
}

fn class_means(net: &Net) -> Vec<f64> {
    let mut means = vec![0.0; K * D];
    let mut counts = [0usize; K];
    for (h, &y) in net.features.chunks(D).zip(&net.labels) {
        counts[y as usize] += 1;
        for j in 0..D {
            means[y as usize * D + j] += h[j];
        }
    }
    for k in 0..K {
        for j in 0..D {
            means[k * D + j] /= counts[k] as f64;
        }
    }
    means
}

fn write_run(dir: &Path, net: &Net) {
    write_run_with_layers(dir, net, &[]);
}

/// A run that watched layers 1..=L: `layers[i - 1]` gives layer i's features (and so its
/// class means), as `nclab train --nc-layers` writes them.
fn write_run_with_layers(dir: &Path, net: &Net, layers: &[&Net]) {
    std::fs::create_dir_all(dir).unwrap();
    let means = class_means(net);
    let initial = values(99, K * D);
    let layer_means: Vec<Vec<f64>> = layers.iter().map(|l| class_means(l)).collect();
    let layer_names: Vec<[String; 3]> = (1..=layers.len())
        .map(|i| {
            [
                format!("layer{i}_train_class_means"),
                format!("layer{i}_initial_train_class_means"),
                format!("layer{i}_features"),
            ]
        })
        .collect();
    let mut tensors = vec![
        (
            "weight",
            ArrayView {
                shape: &[K, D],
                data: ArraySlice::F64(&net.weight),
            },
        ),
        (
            "bias",
            ArrayView {
                shape: &[K],
                data: ArraySlice::F64(&net.bias),
            },
        ),
        (
            "train_class_means",
            ArrayView {
                shape: &[K, D],
                data: ArraySlice::F64(&means),
            },
        ),
        (
            "test_class_means",
            ArrayView {
                shape: &[K, D],
                data: ArraySlice::F64(&means),
            },
        ),
        // The untrained network's class means: here an unrelated random configuration.
        (
            "initial_train_class_means",
            ArrayView {
                shape: &[K, D],
                data: ArraySlice::F64(&initial),
            },
        ),
    ];
    for (names, means) in layer_names.iter().zip(&layer_means) {
        for (name, data) in [(&names[0], means), (&names[1], &initial)] {
            tensors.push((
                name.as_str(),
                ArrayView {
                    shape: &[K, D],
                    data: ArraySlice::F64(data),
                },
            ));
        }
    }
    write_safetensors(&dir.join("final.safetensors"), &tensors).unwrap();
    if !layers.is_empty() {
        let watched: Vec<String> = (1..=layers.len())
            .map(|i| format!(r#"{{"index":{i},"name":"hidden{i}","dim":{D}}}"#))
            .collect();
        let config = format!(
            r#"{{"data": {{"kind": "embeddedmnist"}}, "loss": {{"kind": "ce"}}, "nc_layers": "all", "watched_layers": [{}]}}"#,
            watched.join(",")
        );
        std::fs::write(dir.join("config.json"), config).unwrap();
    }
    // Stored in a different sample order in each run: matching must go through `indices`.
    let order: Vec<usize> = if dir.to_string_lossy().ends_with('b') {
        (0..N).rev().collect()
    } else {
        (0..N).collect()
    };
    let features: Vec<f32> = order
        .iter()
        .flat_map(|&i| net.features[i * D..(i + 1) * D].iter().map(|&x| x as f32))
        .collect();
    let labels: Vec<i64> = order.iter().map(|&i| net.labels[i]).collect();
    let indices: Vec<i64> = order.iter().map(|&i| i as i64).collect();
    let layer_features: Vec<Vec<f32>> = layers
        .iter()
        .map(|l| {
            order
                .iter()
                .flat_map(|&i| l.features[i * D..(i + 1) * D].iter().map(|&x| x as f32))
                .collect()
        })
        .collect();
    for split in ["train", "test"] {
        let mut arrays = vec![
            (
                "features",
                ArrayView {
                    shape: &[N, D],
                    data: ArraySlice::F32(&features),
                },
            ),
            (
                "labels",
                ArrayView {
                    shape: &[N],
                    data: ArraySlice::I64(&labels),
                },
            ),
            (
                "indices",
                ArrayView {
                    shape: &[N],
                    data: ArraySlice::I64(&indices),
                },
            ),
            (
                "weight",
                ArrayView {
                    shape: &[K, D],
                    data: ArraySlice::F64(&net.weight),
                },
            ),
            (
                "bias",
                ArrayView {
                    shape: &[K],
                    data: ArraySlice::F64(&net.bias),
                },
            ),
        ];
        for (names, f) in layer_names.iter().zip(&layer_features) {
            arrays.push((
                names[2].as_str(),
                ArrayView {
                    shape: &[N, D],
                    data: ArraySlice::F32(f),
                },
            ));
        }
        write_npz(&dir.join(format!("features_{split}.npz")), &arrays).unwrap();
    }
}

#[test]
fn layers_are_compared_one_by_one() {
    let root = scratch_dir("layers");
    let a = base_net(1);
    let b = rotated(&a);
    // Layer 1 of the two runs are unrelated networks; layer 2 (the last) is each run's own
    // features, the same network up to rotation and scale.
    let (early_a, early_b) = (base_net(7), base_net(8));
    write_run_with_layers(&root.join("a"), &a, &[&early_a, &a]);
    write_run_with_layers(&root.join("b"), &b, &[&early_b, &b]);
    let out = root.join("out");
    let (code, stdout, stderr) = nclab(&[
        "compare",
        root.join("a").to_str().unwrap(),
        root.join("b").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    let layers = json["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "{json}");
    assert_eq!(layers[0]["name"], "hidden1");
    let at = |layer: usize, key: &str| layers[layer][key][0][1].as_f64().unwrap();
    // The last layer's numbers are those of the run's own features.
    assert_eq!(
        at(1, "means_procrustes"),
        json["means_procrustes"][0][1].as_f64().unwrap()
    );
    assert_eq!(
        at(1, "train_cka"),
        json["train_cka"][0][1].as_f64().unwrap()
    );
    assert!(at(1, "means_procrustes") < 1e-3, "{json}");
    assert!(at(0, "means_procrustes") > 0.05, "{json}");
    assert!(at(0, "train_cka") < 0.999, "{json}");
    // Each against itself: distance 0 (to the square root of rounding).
    assert!(layers[0]["means_procrustes"][0][0].as_f64().unwrap() < 1e-6);
    assert!(layers[0]["untrained_means_procrustes"][0].as_f64().unwrap() > 0.05);
    assert!(
        stdout.contains("differ most at layer 1 (hidden1"),
        "{stdout}"
    );
    let csv = std::fs::read_to_string(out.join("compare_layers.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2 * 4, "{csv}");
    assert!(
        csv.starts_with("layer,name,run_a,run_b,means_procrustes,train_cka\n1,hidden1,a,a,"),
        "{csv}"
    );
    let png = std::fs::read(out.join("compare_layers.png")).unwrap();
    assert_eq!(&png[..4], b"\x89PNG");

    // With a run that watched no layers: nothing per layer, and no per-layer files.
    write_run(&root.join("c"), &base_net(50));
    let (code, stdout, stderr) = nclab(&[
        "compare",
        root.join("a").to_str().unwrap(),
        root.join("c").to_str().unwrap(),
        "--out",
        root.join("out2").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains("Through depth"), "{stdout}");
    assert!(!root.join("out2/compare_layers.csv").exists());

    // A run that says it watched a layer but lacks its class means is named.
    std::fs::write(
        root.join("c/config.json"),
        r#"{"loss": {"kind": "ce"}, "watched_layers": [{"index":1,"name":"hidden1","dim":4}]}"#,
    )
    .unwrap();
    let (code, _, stderr) = nclab(&[
        "compare",
        root.join("a").to_str().unwrap(),
        root.join("c").to_str().unwrap(),
        "--out",
        root.join("out3").to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("layer1_train_class_means"), "{stderr}");
}

#[test]
fn rotated_copy_is_the_same_network() {
    let root = scratch_dir("rotated");
    let a = base_net(1);
    write_run(&root.join("a"), &a);
    write_run(&root.join("b"), &rotated(&a));
    write_run(&root.join("c"), &base_net(50));
    let out = root.join("out");
    let (code, stdout, stderr) = nclab(&[
        "compare",
        root.join("a").to_str().unwrap(),
        root.join("b").to_str().unwrap(),
        root.join("c").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("means_procrustes"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    let at = |key: &str, i: usize, j: usize| json[key][i][j].as_f64().unwrap();
    // Features are stored as f32: agreement to about 1e-7 relative, distances to its square root.
    assert!(at("means_procrustes", 0, 1) < 1e-3, "{json}");
    assert!(at("classifier_procrustes", 0, 1) < 1e-6, "{json}");
    assert!((at("train_cka", 0, 1) - 1.0).abs() < 1e-6, "{json}");
    assert_eq!(at("test_prediction_agreement", 0, 1), 1.0);
    assert_eq!(at("per_class_accuracy_gap", 0, 1), 0.0);
    assert!(
        at("means_procrustes", 0, 2) > 0.05,
        "an unrelated run must be farther: {json}"
    );
    assert!(at("train_cka", 0, 2) < 0.999, "{json}");
    assert_eq!(at("means_procrustes", 2, 0), at("means_procrustes", 0, 2));
    let baseline = json["untrained_means_procrustes"].as_array().unwrap();
    assert_eq!(baseline.len(), 3);
    assert!(
        baseline[0].as_f64().unwrap() > at("means_procrustes", 0, 1) + 0.05,
        "{json}"
    );
    assert!(stdout.contains("untrained baseline"), "{stdout}");
    for name in ["means_procrustes", "train_cka"] {
        let png = std::fs::read(out.join(format!("compare_{name}.png"))).unwrap();
        assert_eq!(&png[..4], b"\x89PNG");
        assert!(
            std::fs::read_to_string(out.join(format!("compare_{name}.svg")))
                .unwrap()
                .contains("<svg")
        );
    }
    let csv = std::fs::read_to_string(out.join("compare.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 9);
    assert!(!stderr.contains("warning"), "{stderr}");

    // Runs trained on different data are compared, with a warning.
    let config = |data: &str| format!(r#"{{"data": {data}, "loss": {{"kind": "ce"}}}}"#);
    std::fs::write(
        root.join("a/config.json"),
        config(r#"{"kind": "embeddedmnist"}"#),
    )
    .unwrap();
    std::fs::write(
        root.join("b/config.json"),
        config(r#"{"kind": "embeddedmnist"}"#),
    )
    .unwrap();
    let pair = |out: &Path| {
        nclab(&[
            "compare",
            root.join("a").to_str().unwrap(),
            root.join("b").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let (code, _, stderr) = pair(&root.join("same"));
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    std::fs::write(
        root.join("b/config.json"),
        config(r#"{"kind": "cifar10", "dir": "/data"}"#),
    )
    .unwrap();
    let (code, _, stderr) = pair(&root.join("different"));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("warning")
            && stderr.contains("different data")
            && stderr.contains("cifar10"),
        "{stderr}"
    );
}

#[test]
fn bad_runs_are_named() {
    let root = scratch_dir("bad");
    write_run(&root.join("a"), &base_net(1));
    std::fs::create_dir_all(root.join("empty")).unwrap();
    let (code, _, stderr) = nclab(&[
        "compare",
        root.join("a").to_str().unwrap(),
        root.join("empty").to_str().unwrap(),
        "--out",
        root.join("o").to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("empty") && stderr.contains("final.safetensors"),
        "{stderr}"
    );
    let (code, _, _) = nclab(&["compare", root.join("a").to_str().unwrap()]);
    assert_eq!(code, 2, "one run is not a comparison");
}

#[test]
fn runs_of_different_conventions_are_not_compared() {
    let root = scratch_dir("conventions");
    let (a, b) = (root.join("a"), root.join("b"));
    write_run(&a, &base_net(1));
    write_run(&b, &rotated(&base_net(1)));
    let compare = || {
        nclab(&[
            "compare",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--out",
            root.join("o").to_str().unwrap(),
        ])
    };
    // A run without a config names no convention: `nclab`'s, like one that says so.
    std::fs::write(b.join("config.json"), r#"{"convention":"nclab"}"#).unwrap();
    let (code, _, stderr) = compare();
    assert_eq!(code, 0, "{stderr}");
    std::fs::write(b.join("config.json"), r#"{"convention":"zhou2022"}"#).unwrap();
    let (code, _, stderr) = compare();
    assert_eq!(code, 2);
    assert!(
        stderr.contains("zhou2022")
            && stderr.contains("nclab")
            && stderr.contains("one convention"),
        "{stderr}"
    );
}
