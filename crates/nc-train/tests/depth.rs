//! `nc_layers` (`--nc-layers`): per-layer metrics on tiny runs, checked against the metrics
//! engine run in the test on the features of each layer, and against the layers recomputed
//! from the checkpoint's weights.
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::prelude::*;
use nc_math::metrics::{compute_metrics_with, ClassMeans, Convention, NcMetrics};
use nc_train::layers::LayerSelection;
use nc_train::loss::Loss;
use nc_train::model::{Backbone, ModelKind, ModelSpec, Net};
use nc_train::source::DataSpec;
use nc_train::{train, RunOptions, TrainConfig};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nctrain-depth-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn cfg(depth: usize, layers: &str) -> TrainConfig {
    let data = DataSpec::parse("synthetic:K=3,d=8,n=20,noise=0.5,seed=4").unwrap();
    let spec = ModelSpec {
        kind: ModelKind::Mlp,
        depth,
        hidden: 12,
        batch_norm: true,
        width: 1.0,
    };
    let mut cfg = TrainConfig::paper(data, spec, Loss::CrossEntropy, 2);
    cfg.batch_size = 16;
    cfg.val_fraction = 0.2;
    cfg.milestones = vec![];
    cfg.save_features = true;
    cfg.nc_layers = LayerSelection::parse(layers).unwrap();
    cfg
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![];
    for name in [
        "config.json",
        "metrics.jsonl",
        "metrics.csv",
        "final.safetensors",
        "checkpoints/initial.safetensors",
        "features_train.npz",
        "features_test.npz",
    ] {
        let p = dir.join(name);
        if p.is_file() {
            out.push((name.to_string(), std::fs::read(&p).unwrap()));
        }
    }
    out
}

/// `--nc-layers last` (the default) writes the same bytes as a run that never set it, and
/// config.json does not mention layers.
#[test]
fn last_leaves_every_output_byte_identical() {
    let (a, b) = (tmp("last-a"), tmp("last-b"));
    let mut plain = cfg(2, "last");
    plain.nc_layers = Default::default();
    train(plain.validate().unwrap(), &a, RunOptions::default()).unwrap();
    train(
        cfg(2, "last").validate().unwrap(),
        &b,
        RunOptions::default(),
    )
    .unwrap();
    let (fa, fb) = (files(&a), files(&b));
    assert!(
        fa.len() >= 6,
        "{:?}",
        fa.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert_eq!(fa, fb);
    let config = String::from_utf8(fa[0].1.clone()).unwrap();
    assert!(!config.contains("nc_layers") && !config.contains("watched_layers"));
    let header = std::fs::read_to_string(a.join("metrics.csv")).unwrap();
    assert!(!header.contains("layer"));
    for d in [a, b] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

/// The last evaluation row of a run's metrics.jsonl.
fn last_metrics_row(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

fn npz_f32(
    arrays: &std::collections::BTreeMap<String, nc_data::NpyArray>,
    key: &str,
) -> (Vec<usize>, Vec<f64>) {
    let a = arrays.get(key).unwrap_or_else(|| panic!("no {key}"));
    (a.shape.clone(), a.to_f64_vec())
}

fn labels_of(arrays: &std::collections::BTreeMap<String, nc_data::NpyArray>) -> Vec<u32> {
    npz_f32(arrays, "labels")
        .1
        .iter()
        .map(|&x| x as u32)
        .collect()
}

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs())),
        "{what}: recorded {a}, engine {b}"
    );
}

fn check_row(row: &serde_json::Value, split: &str, i: usize, m: &NcMetrics) {
    let get = |k: &str| {
        row[format!("{split}_layer{i}_{k}")]
            .as_f64()
            .unwrap_or_else(|| panic!("{split}_layer{i}_{k} missing"))
    };
    close(get("nc1"), m.nc1, "nc1");
    close(get("nc2_means"), m.nc2_means, "nc2_means");
    close(get("equinorm_h"), m.equinorm_h, "equinorm_h");
    close(get("equiangle_h"), m.equiangle_h, "equiangle_h");
    close(get("cdnv"), m.cdnv, "cdnv");
    close(get("ncc_accuracy"), m.ncc_accuracy, "ncc_accuracy");
    close(
        get("nc1_trace_ratio"),
        m.nc1_trace_ratio.unwrap(),
        "nc1_trace_ratio",
    );
}

/// Every layer of a 3-layer MLP: the recorded per-layer metrics equal the engine on the
/// layer's features (test split with that layer's training means), layer i+1 is
/// relu(BN(W h_i + b)) of the checkpoint's weights, the last layer's entries are today's.
#[test]
fn per_layer_metrics_equal_the_engine_on_each_layers_features() {
    let out = tmp("mlp-all");
    let c = cfg(3, "all").validate().unwrap();
    assert_eq!(c.watched_layers.len(), 3);
    train(c.clone(), &out, RunOptions::default()).unwrap();
    let last = last_metrics_row(&out);
    let train_f = nc_data::npz::read_npz(&out.join("features_train.npz")).unwrap();
    let test_f = nc_data::npz::read_npz(&out.join("features_test.npz")).unwrap();
    let (ytr, yte) = (labels_of(&train_f), labels_of(&test_f));
    let conv = Convention::NCLAB;
    for i in 1..=3 {
        let (shape, h) = npz_f32(&train_f, &format!("layer{i}_features"));
        assert_eq!(shape, vec![ytr.len(), 12]);
        let m = compute_metrics_with(&h, &ytr, 12, 3, None, None, &conv).unwrap();
        check_row(&last, "train", i, &m);
        // the test split's NCC rule takes this layer's training class means
        let means = train_means(&h, &ytr, 12, 3);
        let (_, ht) = npz_f32(&test_f, &format!("layer{i}_features"));
        let mt = compute_metrics_with(&ht, &yte, 12, 3, None, Some(&means), &conv).unwrap();
        check_row(&last, "test", i, &mt);
    }
    // The last layer is today's features and means.
    assert_eq!(
        npz_f32(&train_f, "layer3_features"),
        npz_f32(&train_f, "features")
    );
    let st = nc_data::safetensors::read_safetensors(&out.join("final.safetensors")).unwrap();
    assert_eq!(
        st.get("layer3_train_class_means").unwrap().to_f64_vec(),
        st.get("train_class_means").unwrap().to_f64_vec()
    );
    for i in 1..=3 {
        assert_eq!(
            st.get(&format!("layer{i}_train_class_means"))
                .unwrap()
                .shape,
            vec![3, 12]
        );
    }
    assert_eq!(last["train_layer3_nc1"], last["train_nc1"]);
    assert_eq!(last["test_layer3_ncc_accuracy"], last["test_ncc_accuracy"]);
    // Layers 2 and 3 recomputed from layer 1 with the final weights (BatchNorm on its
    // running statistics), independently of the model's forward pass.
    let device = Device::flex();
    let net = Net::new(&c.model, [1, 1, 8], 3, &device)
        .try_load_file(out.join("checkpoints/last/model-e2.bpk"))
        .expect("checkpoint");
    let Backbone::Mlp(mlp) = &net.backbone else {
        panic!("an MLP")
    };
    let host =
        |t: Tensor<1>| -> Vec<f64> { t.into_data().convert::<f64>().try_to_vec::<f64>().unwrap() };
    let (_, mut h) = npz_f32(&train_f, "layer1_features");
    let n = ytr.len();
    for i in 2..=3 {
        let lin = &mlp.layers[i - 1];
        let w: Vec<f64> = lin
            .weight
            .val()
            .into_data()
            .convert::<f64>()
            .try_to_vec::<f64>()
            .unwrap();
        let b = host(lin.bias.as_ref().unwrap().val());
        let bn = &mlp.norms[i - 1];
        let (g, beta) = (host(bn.gamma.val()), host(bn.beta.val()));
        let (rm, rv) = (host(bn.running_mean.value()), host(bn.running_var.value()));
        let mut next = vec![0f64; n * 12];
        for s in 0..n {
            for o in 0..12 {
                let mut z = b[o];
                for j in 0..12 {
                    z += h[s * 12 + j] * w[j * 12 + o];
                }
                let z = (z - rm[o]) / (rv[o] + bn.epsilon).sqrt() * g[o] + beta[o];
                next[s * 12 + o] = z.max(0.0);
            }
        }
        let (_, got) = npz_f32(&train_f, &format!("layer{i}_features"));
        for (a, b) in got.iter().zip(&next) {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "layer {i}: {a} vs {b}"
            );
        }
        h = got;
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["nc_layers"], "all");
    assert_eq!(config["watched_layers"][1]["name"], "hidden2");
    assert_eq!(config["watched_layers"][1]["dim"], 12);
    std::fs::remove_dir_all(&out).unwrap();
}

fn train_means(h: &[f64], y: &[u32], d: usize, k: usize) -> ClassMeans {
    let mut sums = vec![0f64; k * d];
    let mut counts = vec![0f64; k];
    for (s, &c) in y.iter().enumerate() {
        counts[c as usize] += 1.0;
        for j in 0..d {
            sums[c as usize * d + j] += h[s * d + j];
        }
    }
    for c in 0..k {
        for j in 0..d {
            sums[c * d + j] /= counts[c];
        }
    }
    ClassMeans::from_means(k, d, sums).unwrap()
}

/// ResNet-18 (width 1/8) on 4 digits per class of the embedded MNIST: every stage's pooled output,
/// recomputed in the test block by block from the checkpoint, equals the saved layer
/// features, and each layer's recorded metrics equal the engine's on them.
#[test]
fn resnet_stages_equal_the_blocks_run_by_hand() {
    let out = tmp("resnet-all");
    let data = DataSpec::EmbeddedMnist;
    let spec = ModelSpec {
        kind: ModelKind::Resnet18,
        depth: 2,
        hidden: 512,
        batch_norm: false,
        width: 0.125,
    };
    let mut c = TrainConfig::paper(data, spec, Loss::CrossEntropy, 1);
    c.batch_size = 16;
    c.val_fraction = 0.0;
    c.per_class = Some(4);
    c.milestones = vec![];
    c.save_features = true;
    c.nc_layers = LayerSelection::All;
    // Raw inputs, so the test feeds the network exactly what the run did.
    c.normalize = false;
    let c = c.validate().unwrap();
    let dims: Vec<usize> = c.watched_layers.iter().map(|l| l.dim).collect();
    assert_eq!(dims, vec![8, 16, 32, 64]);
    train(c.clone(), &out, RunOptions::default()).unwrap();
    let last = last_metrics_row(&out);
    let train_f = nc_data::npz::read_npz(&out.join("features_train.npz")).unwrap();
    let ytr = labels_of(&train_f);
    let n = ytr.len();

    let device = Device::flex();
    let net = Net::new(&c.model, [1, 28, 28], 10, &device)
        .try_load_file(out.join("checkpoints/last/model-e1.bpk"))
        .expect("checkpoint");
    let Backbone::Resnet18(resnet) = &net.backbone else {
        panic!("a ResNet")
    };
    // The samples in the order of the feature file (its `indices`).
    let (train, _) = c.data.load().unwrap();
    let indices: Vec<usize> = train_f["indices"]
        .to_f64_vec()
        .iter()
        .map(|&i| i as usize)
        .collect();
    let nc_train::source::Pixels::U8(pixels) = &train.pixels else {
        panic!("byte pixels")
    };
    // Bytes scaled to [0, 1] as the batches are built (nc_train::data::make_batch).
    let scale = (1.0f64 / 255.0) as f32;
    let x: Vec<f32> = indices
        .iter()
        .flat_map(|&i| {
            pixels[i * 784..(i + 1) * 784]
                .iter()
                .map(|&p| p as f32 * scale)
        })
        .collect();
    let mut h = Tensor::<4>::from_data(TensorData::new(x, [n, 1, 28, 28]), &device);
    h = burn::tensor::activation::relu(resnet.stem_bn.forward(resnet.stem.forward(h)));
    let conv = Convention::NCLAB;
    for stage in 1..=4 {
        for block in &resnet.blocks[2 * (stage - 1)..2 * stage] {
            h = block.forward(h);
        }
        let [b, ch, hh, ww] = h.dims();
        let pooled: Vec<f64> = h
            .clone()
            .reshape([b, ch, hh * ww])
            .mean_dim(2)
            .into_data()
            .convert::<f64>()
            .try_to_vec::<f64>()
            .unwrap();
        let (shape, saved) = npz_f32(&train_f, &format!("layer{stage}_features"));
        assert_eq!(shape, vec![n, ch]);
        for (a, b) in saved.iter().zip(&pooled) {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "stage {stage}: {a} vs {b}"
            );
        }
        let m = compute_metrics_with(&saved, &ytr, ch, 10, None, None, &conv).unwrap();
        check_row(&last, "train", stage, &m);
    }
    assert_eq!(
        npz_f32(&train_f, "layer4_features"),
        npz_f32(&train_f, "features")
    );
    std::fs::remove_dir_all(&out).unwrap();
}
