//! `nclab analyze` on PyTorch `.pt` files (the fixtures of nc-data, made with PyTorch by
//! crates/nc-data/tests/fixtures/torch/make_fixtures.py): the same metrics as the `.npz` of
//! the same arrays, `--means-from` and `--classifier-from` with `.pt` checkpoints, and every
//! refusal exit status 2 with a message naming the file.

mod common;
use common::{nclab, scratch_dir};

use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../nc-data/tests/fixtures/torch")
        .join(name)
}

fn json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["analyze", "--json"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = nclab(&all);
    assert_eq!(code, 0, "{args:?}: {stderr}");
    serde_json::from_str(&stdout).unwrap()
}

fn path(name: &str) -> String {
    fixture(name).to_str().unwrap().to_string()
}

#[test]
fn pt_files_give_the_metrics_of_their_npz_twins() {
    for name in [
        "features_f32",
        "features_f64",
        "features_f16",
        "features_bf16",
        "strided",
    ] {
        let pt = json(&[&path(&format!("{name}.pt"))]);
        let npz = json(&[&path(&format!("{name}.npz"))]);
        assert_eq!(pt, npz, "{name}");
        assert_eq!(pt["num_samples"], 12, "{name}");
    }
    // With a classifier: the classifier metrics are there.
    let pt = json(&[&path("features_f32.pt")]);
    assert!(pt["nc2"].is_f64() && pt["accuracy"].is_f64(), "{pt}");
    // --means-from a .pt file, as from its .npz twin.
    let pt = json(&[
        &path("features_f32.pt"),
        "--means-from",
        &path("features_f64.pt"),
    ]);
    let npz = json(&[
        &path("features_f32.npz"),
        "--means-from",
        &path("features_f64.npz"),
    ]);
    assert_eq!(pt, npz);
}

#[test]
fn classifier_from_a_checkpoint_equals_the_classifier_in_the_file() {
    // The reference: the features with the checkpoint's fc layer stored next to them.
    let dir = scratch_dir("torch-classifier-from");
    let mut arrays = nc_data::npz::read_npz(&fixture("features_only.npz")).unwrap();
    let classifier = nc_data::npz::read_npz(&fixture("checkpoint_classifier.npz")).unwrap();
    arrays.extend(classifier);
    let together = dir.join("together.npz");
    let views: Vec<_> = arrays.iter().map(|(n, a)| (n.as_str(), a.view())).collect();
    nc_data::npz::write_npz(&together, &views).unwrap();
    let want = json(&[together.to_str().unwrap()]);
    assert!(want["nc2"].is_f64());
    let ckpt = path("checkpoint.pth");
    for features in ["features_only.pt", "features_only.npz"] {
        // The bias follows the weight's layer (fc.bias) unless named.
        for extra in [
            &["--weight-key", "fc.weight"][..],
            &["--weight-key", "fc.weight", "--bias-key", "fc.bias"],
            &[
                "--weight-key",
                "state_dict.fc.weight",
                "--bias-key",
                "state_dict.fc.bias",
            ],
        ] {
            let mut args = vec![path(features), "--classifier-from".into(), ckpt.clone()];
            args.extend(extra.iter().map(|s| s.to_string()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            assert_eq!(json(&args), want, "{features} {extra:?}");
        }
    }
    // A .safetensors state dict works the same.
    let st = dir.join("ckpt.safetensors");
    let classifier = nc_data::npz::read_npz(&fixture("checkpoint_classifier.npz")).unwrap();
    nc_data::safetensors::write_safetensors(
        &st,
        &[
            ("fc.weight", classifier["weight"].view()),
            ("fc.bias", classifier["bias"].view()),
        ],
    )
    .unwrap();
    let got = json(&[
        &path("features_only.pt"),
        "--classifier-from",
        st.to_str().unwrap(),
        "--weight-key",
        "fc.weight",
    ]);
    assert_eq!(got, want);
}

fn expect_error(args: &[&str], file_name: &str, needles: &[&str]) {
    let mut all = vec!["analyze"];
    all.extend_from_slice(args);
    let (code, _, stderr) = nclab(&all);
    assert_eq!(code, 2, "{args:?}: exit status {code}, stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
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
fn refusals_exit_2_naming_the_file() {
    expect_error(
        &[&path("custom_class.pt")],
        "custom_class.pt",
        &["refused the pickled global '__main__.Config'"],
    );
    expect_error(&[&path("truncated.pt")], "truncated.pt", &["truncated"]);
    expect_error(&[&path("legacy.pt")], "legacy.pt", &["legacy", "re-save"]);
    expect_error(
        &[&path("bare_tensor.pt")],
        "bare_tensor.pt",
        &["expected a dict of tensors"],
    );
    expect_error(
        &[&path("features_f32.pt"), "--labels-key", "note"],
        "features_f32.pt",
        &["'note' is a str, not a tensor"],
    );
    expect_error(
        &[
            &path("features_only.pt"),
            "--classifier-from",
            &path("checkpoint.pth"),
        ],
        "checkpoint.pth",
        &["missing array 'weight'", "state_dict.fc.weight"],
    );
    expect_error(
        &[
            &path("features_only.pt"),
            "--classifier-from",
            &path("checkpoint.pth"),
            "--weight-key",
            "fc.weight",
            "--bias-key",
            "fc.nope",
        ],
        "checkpoint.pth",
        &["missing array 'fc.nope'"],
    );
    expect_error(
        &[
            &path("features_only.pt"),
            "--classifier-from",
            &path("custom_class.pt"),
        ],
        "custom_class.pt",
        &["__main__.Config"],
    );
    expect_error(
        &[
            &path("features_only.pt"),
            "--classifier-from",
            &path("make_fixtures.py"),
        ],
        "make_fixtures.py",
        &["unsupported file kind"],
    );
}
