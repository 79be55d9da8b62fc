//! What watching layers costs (docs/train.md, "Through depth"): the median wall time of one
//! evaluation of a training split (forward passes, class means, the scatter pass, every NC
//! metric) with the last layer only (`--nc-layers last`) and with every layer (`all`), for
//! the default job's MLP (784-512-512-512-10 with BatchNorm, 1,420 MNIST digits) and for
//! ResNet-18 (CIFAR stem, 3 x 32 x 32 synthetic images).
//!
//! `cargo run --release -p nc-train --example eval_layers -- [--repeats 5] [--resnet-width 0.25] [--resnet-samples 512]`
use std::time::Instant;

use nc_math::metrics::Convention;
use nc_train::data::Normalization;
use nc_train::eval::{evaluate, EvalRequest};
use nc_train::loss::Loss;
use nc_train::model::{ModelKind, ModelSpec, Net};
use nc_train::source::{Pixels, Samples};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median seconds of `repeats` evaluations of all of `samples`, watching `watch_all` or not.
fn eval_seconds(spec: &ModelSpec, samples: &Samples, watch_all: bool, repeats: usize) -> f64 {
    let device = nc_train::device::device_for(nc_train::device::parse_device("cpu").unwrap())
        .expect("the CPU device");
    let model = Net::seeded(spec, samples.shape, samples.num_classes, &device, 1);
    let [c, _, _] = samples.shape;
    let norm = Normalization {
        mean: vec![0.0; c],
        std: vec![1.0; c],
        scale: match samples.pixels {
            Pixels::U8(_) => 1.0 / 255.0,
            Pixels::F32(_) => 1.0,
        },
    };
    let indices: Vec<usize> = (0..samples.len()).collect();
    let layers = if watch_all { spec.layers() } else { vec![] };
    let request = EvalRequest {
        samples,
        indices: &indices,
        norm: &norm,
        loss: Loss::CrossEntropy,
        batch_size: nc_train::paper::EVAL_BATCH_SIZE,
        metrics: true,
        reference_means: None,
        convention: Convention::NCLAB,
        keep_features: false,
        memory_limit: 1 << 30,
        layers: &layers,
        last_layer: spec.layers().len(),
        reference_layers: &[],
    };
    let mut times = Vec::new();
    for _ in 0..repeats + 1 {
        let start = Instant::now();
        let out = evaluate(&model, &device, &request).expect("evaluation");
        assert_eq!(out.layers.len(), layers.len());
        times.push(start.elapsed().as_secs_f64());
    }
    // The first evaluation warms the allocator and the kernels' caches.
    median(times[1..].to_vec())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse::<f64>().expect("a number"))
    };
    let repeats = get("--repeats").unwrap_or(5.0) as usize;
    let resnet_width = get("--resnet-width").unwrap_or(0.25);
    let resnet_samples = get("--resnet-samples").unwrap_or(512.0) as usize;

    // The default job's network and training split size (nc_experiments::presets).
    let mlp = ModelSpec {
        kind: ModelKind::Mlp,
        depth: 3,
        hidden: 512,
        batch_norm: true,
        width: 1.0,
    };
    let (train, _) = nc_train::source::embedded_mnist().expect("the embedded MNIST");
    let take = 1420.min(train.len());
    let pixels = match &train.pixels {
        Pixels::U8(p) => Pixels::U8(p[..take * 784].to_vec()),
        Pixels::F32(p) => Pixels::F32(p[..take * 784].to_vec()),
    };
    let digits = Samples {
        pixels,
        labels: train.labels[..take].to_vec(),
        shape: train.shape,
        num_classes: train.num_classes,
    };

    let resnet = ModelSpec {
        kind: ModelKind::Resnet18,
        depth: 2,
        hidden: 512,
        batch_norm: false,
        width: resnet_width,
    };
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let images = Samples {
        pixels: Pixels::F32(
            (0..resnet_samples * 3 * 32 * 32)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 40) as f32 / (1u64 << 24) as f32
                })
                .collect(),
        ),
        labels: (0..resnet_samples as u32).map(|i| i % 10).collect(),
        shape: [3, 32, 32],
        num_classes: 10,
    };

    println!("model,samples,layers_watched,last_s,all_s,ratio");
    for (name, spec, samples) in [
        ("mlp_3x512_bn", &mlp, &digits),
        (&*format!("resnet18_w{resnet_width}"), &resnet, &images),
    ] {
        let last = eval_seconds(spec, samples, false, repeats);
        let all = eval_seconds(spec, samples, true, repeats);
        println!(
            "{name},{},{},{last:.4},{all:.4},{:.2}",
            samples.len(),
            spec.layers().len(),
            all / last
        );
    }
}
