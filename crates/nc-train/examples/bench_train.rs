//! Benchmark of nc-train (see bench/train/README.md):
//! (a) time per training step (forward, backward, global-norm clipping, SGD) at batch 128 for
//!     the MLP 784-512-512-10 and ResNet-18 width 0.25 on 3x32x32 input;
//! (b) wall time of one MLP epoch on MNIST-10k including batch building and one full NC
//!     evaluation of the training and test sets.
//!
//! `cargo run --release -p nc-train --example bench_train -- [--steps 30] [--mnist DIR] [--device cpu|cuda:N] [--json OUT]`
use std::time::Instant;

use burn::optim::GradientsParams;
use burn::prelude::*;
use nc_train::loss::{batch_loss, one_hot, Loss};
use nc_train::model::{ModelKind, ModelSpec, Net};
use nc_train::optim::{build_sgd, clip_global_norm, SgdSettings};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn step_time(dev: &Device, spec: &ModelSpec, shape: [usize; 3], steps: usize) -> f64 {
    let ad = dev.clone().autodiff();
    ad.seed(0);
    let mut model = Net::new(spec, shape, 10, &ad);
    let mut optim = build_sgd(
        &model,
        &SgdSettings {
            momentum: nc_train::paper::MOMENTUM,
            weight_decay: nc_train::paper::WEIGHT_DECAY,
            no_decay_on: vec![],
        },
    );
    let [c, h, w] = shape;
    let b = nc_train::paper::BATCH_SIZE;
    let x: Vec<f32> = (0..b * c * h * w)
        .map(|i| ((i * 7919) % 255) as f32 / 255.0)
        .collect();
    let y: Vec<u32> = (0..b as u32).map(|i| i % 10).collect();
    let mut times = Vec::new();
    for s in 0..steps + 3 {
        let t = Instant::now();
        let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), [b, c, h, w]), &ad);
        let oh = Tensor::<2>::from_data(TensorData::new(one_hot(&y, 10), [b, 10]), &ad);
        let (_, z) = model.forward(xt);
        let loss = batch_loss(Loss::CrossEntropy, z, oh);
        let g = GradientsParams::from_grads(loss.backward(), &model);
        let (g, _) = clip_global_norm(&model, g, nc_train::paper::CLIP_GRAD_NORM);
        model = optim.step(0.01, model, g);
        // Synchronise so the step is really finished.
        let _: f32 = model.head.weight.val().sum().into_scalar();
        if s >= 3 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    median(times)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let steps: usize = get("--steps").map(|s| s.parse().unwrap()).unwrap_or(30);
    let mlp = ModelSpec {
        kind: ModelKind::Mlp,
        depth: 2,
        hidden: 512,
        batch_norm: false,
        width: 1.0,
    };
    let res = ModelSpec {
        kind: ModelKind::Resnet18,
        depth: 2,
        hidden: 512,
        batch_norm: false,
        width: 0.25,
    };
    let device = get("--device").unwrap_or_else(|| "cpu".into());
    let dev = match nc_train::device::parse_device(&device).and_then(nc_train::device::device_for) {
        Ok(dev) => dev,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let t_mlp = step_time(&dev, &mlp, [1, 28, 28], steps);
    println!("mlp_step_ms {:.2}", t_mlp * 1e3);
    let t_res = step_time(&dev, &res, [3, 32, 32], steps.min(10));
    println!("resnet18_w0.25_step_ms {:.1}", t_res * 1e3);

    // (b) one epoch on MNIST-10k + one NC evaluation, through the real trainer.
    let data = match get("--mnist") {
        Some(d) => nc_train::source::DataSpec::Mnist { dir: d.into() },
        None => nc_train::source::DataSpec::EmbeddedMnist,
    };
    let mut cfg = nc_train::TrainConfig::paper(data, mlp, Loss::CrossEntropy, 1);
    cfg.val_fraction = 0.0;
    cfg.normalize = false;
    cfg.device = device;
    let out = std::env::temp_dir().join(format!("nc-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let t = Instant::now();
    let cfg = cfg.validate().unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2);
    });
    let s = nc_train::train(cfg, &out, nc_train::RunOptions::default()).unwrap();
    let total = t.elapsed().as_secs_f64();
    // train() evaluates at epoch 0 and at epoch 1 (whose evaluation the final files reuse), so
    // this is one epoch plus two full evaluations and the run-directory writes.
    println!(
        "mnist_epoch_plus_eval_s {:.3} (whole train(): 1 epoch, 2 evaluations; {:.2} ms/step)",
        total,
        s.seconds_per_step * 1e3
    );
    if let Some(j) = get("--json") {
        let v = serde_json::json!({"mlp_step_ms": t_mlp * 1e3, "resnet18_w025_step_ms": t_res * 1e3, "mnist_train_call_s": total, "mnist_ms_per_step": s.seconds_per_step * 1e3});
        std::fs::write(j, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    }
    let _ = std::fs::remove_dir_all(&out);
}
