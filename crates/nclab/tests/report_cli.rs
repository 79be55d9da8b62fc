//! `nclab report` on fixture run directories written by hand in the documented format.

mod common;
use common::{nclab, scratch_dir};

use std::path::Path;

/// A fixture run: its settings, NC1 falling geometrically from `nc1_start` by
/// `nc1_factor` per epoch, and, if `test_acc` is given, a summary (else it is unfinished).
struct Fixture<'a> {
    loss: &'a str,
    width: f64,
    epochs: usize,
    seed: u64,
    nc1_start: f64,
    nc1_factor: f64,
    test_acc: Option<f64>,
    /// `val_samples` of the summary.
    val_samples: usize,
}

fn fixture(loss: &str, seed: u64, nc1_factor: f64, test_acc: Option<f64>) -> Fixture<'_> {
    Fixture {
        loss,
        width: 1.0,
        epochs: 4,
        seed,
        nc1_start: 1.6,
        nc1_factor,
        test_acc,
        val_samples: 140,
    }
}

/// Writes the run directory: config, `epochs + 1` metric rows and the optional summary.
fn write_run(dir: &Path, f: &Fixture<'_>) {
    let Fixture {
        loss,
        width,
        epochs,
        seed,
        nc1_start,
        nc1_factor,
        test_acc,
        val_samples,
    } = *f;
    std::fs::create_dir_all(dir).unwrap();
    let loss_json = match loss {
        "ls" => r#"{"kind":"ls","alpha":0.05}"#.to_string(),
        "fl" => r#"{"kind":"fl","gamma":3.0}"#.to_string(),
        "mse" => r#"{"kind":"mse","rescale":15.0}"#.to_string(),
        _ => format!(r#"{{"kind":"{loss}"}}"#),
    };
    let config = format!(
        r#"{{"nclab_version":"0.1.0","data":{{"kind":"embeddedmnist"}},"per_class":100,"val_fraction":0.1,
        "model":{{"kind":"mlp","depth":2,"hidden":512,"batch_norm":false,"width":{width}}},"loss":{loss_json},
        "lr":0.1,"epochs":{epochs},"seed":{seed},"milestones":[1,2],"batch_size":128,"eval_every":1}}"#
    );
    std::fs::write(dir.join("config.json"), config).unwrap();
    let mut lines = String::new();
    for e in 0..=epochs {
        let nc1 = nc1_start * nc1_factor.powi(e as i32);
        // Test accuracy rises by 0.01 per epoch to `test_acc` at the last one (0.9 for an
        // unfinished run).
        let row_acc = test_acc.unwrap_or(0.9) - 0.01 * (epochs - e) as f64;
        lines.push_str(&format!(
            "{{\"epoch\":{e},\"lr\":0.1,\"train_loss\":1.0,\"train_acc\":{},\"val_acc\":0.9,\"test_acc\":{row_acc},\"train_nc1\":{nc1},\"test_nc1\":{},\"train_nc2\":0.5,\"train_nc3\":0.4,\"test_nc4\":null}}\n",
            0.5 + 0.5 * e as f64 / epochs as f64,
            2.0 * nc1
        ));
    }
    std::fs::write(dir.join("metrics.jsonl"), lines).unwrap();
    if let Some(acc) = test_acc {
        let summary = format!(
            r#"{{"epochs":{epochs},"best_epoch":{},"best_val_acc":0.9,"best_val_test_acc":{},"final_train_acc":1.0,"final_test_acc":{acc},"val_samples":{val_samples}}}"#,
            epochs - 1,
            acc - 0.01
        );
        std::fs::write(dir.join("summary.json"), summary).unwrap();
    }
}

fn assert_png_and_svg(stem: &Path) {
    let png = std::fs::read(stem.with_extension("png"))
        .unwrap_or_else(|e| panic!("{}: {e}", stem.display()));
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{}", stem.display());
    let svg = std::fs::read_to_string(stem.with_extension("svg")).unwrap();
    assert!(svg.contains("<svg") && svg.trim_end().ends_with("</svg>"));
}

#[test]
fn report_from_fixture_runs() {
    let root = scratch_dir("fixture");
    // Two seeds of ce and ls at width 1, 4 epochs; one unfinished fl run.
    write_run(&root.join("ce-s1"), &fixture("ce", 1, 0.7, Some(0.95)));
    write_run(&root.join("ce-s2"), &fixture("ce", 2, 0.7, Some(0.97)));
    write_run(
        &root.join("nested/ls-s1"),
        &fixture("ls", 1, 0.1, Some(0.96)),
    );
    write_run(
        &root.join("nested/ls-s2"),
        &fixture("ls", 2, 0.1, Some(0.98)),
    );
    write_run(&root.join("fl-s1"), &fixture("fl", 1, 0.5, None));
    let (code, stdout, stderr) = nclab(&["report", root.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let out = root.join("report");
    assert_png_and_svg(&out.join("nc_w1_e4"));
    assert_png_and_svg(&out.join("accuracy_w1_e4"));
    assert_png_and_svg(&out.join("heatmap_test_acc_ce"));
    assert_png_and_svg(&out.join("heatmap_diff_from_ce_ls"));
    assert_png_and_svg(&out.join("heatmap_seed_std_ls"));

    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    // 140 validation samples: the terminal-phase accuracy leads, the mean over the last five
    // evaluations (epochs 0-4 here), final - 0.02. CE: finals 0.95 and 0.97, terminal 0.93
    // and 0.95: mean 0.94, sample std sqrt(2 * 0.01^2 / 1) = 0.014142; final 0.96; best-val
    // 0.01 below final, selected at epoch 3 in both seeds.
    assert!(md.contains("the mean over the last 5 evaluations"), "{md}");
    assert!(
        md.contains("| ce | 2 | 0.9400 ± 0.0141 | 0.9600 ± 0.0141 | 0.9500 ± 0.0141 (3, 3) |"),
        "{md}"
    );
    assert!(
        md.contains("| ls | 2 | 0.9500 ± 0.0141 | 0.9700 ± 0.0141 | 0.9600 ± 0.0141 (3, 3) |"),
        "{md}"
    );
    // LS against CE: terminal 0.94, 0.96 against 0.93, 0.95: difference 0.01, both variances
    // 1e-4, so t = 0.01 / sqrt(2e-4 / 2) = 0.7071 with df = (1e-4)^2 / (2 (0.5e-4)^2) = 2,
    // where P(|T_2| >= t) = 1 - t / sqrt(2 + t^2) = 0.5528.
    assert!(
        md.contains("| 1 | 4 | ls | +0.0100 | t = 0.71, df = 2.0, p = 0.553 | within seed noise |"),
        "{md}"
    );
    // Train NC1 after 4 epochs: ls 1.6 * 0.1^4 = 1.6e-4 (10^4 x lower); ce 1.6 * 0.7^4 =
    // 0.38416 (4.2 x lower), which the findings must call partial collapse.
    assert!(md.contains("1.60e-4"), "{md}");
    assert!(md.contains("0.3842"), "{md}");
    assert!(
        md.contains("**ce**: train NC1 1.6000 -> 0.3842 (4.2x lower): collapses only partly"),
        "{md}"
    );
    assert!(
        md.contains("**ls**: train NC1 1.6000 -> 1.60e-4 (10000.0x lower): collapses;"),
        "{md}"
    );
    assert!(md.contains("fl-s1"), "the unfinished run is named: {md}");
    assert!(stdout.contains("report.md"));

    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 5, "header + 4 finished runs: {csv}");
    let header: Vec<&str> = lines[0].split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let ce_row: Vec<&str> = lines
        .iter()
        .find(|l| l.contains("ce-s2"))
        .unwrap()
        .split(',')
        .collect();
    assert_eq!(ce_row[col("best_val_test_acc")], "0.96");
    let terminal: f64 = ce_row[col("terminal_test_acc")].parse().unwrap();
    assert!((terminal - 0.95).abs() < 1e-12, "{terminal}");
    assert_eq!(ce_row[col("seed")], "2");
    let final_nc1: f64 = ce_row[col("final_train_nc1")].parse().unwrap();
    assert!((final_nc1 - 0.38416).abs() < 1e-12, "{final_nc1}");
    assert_eq!(ce_row[col("initial_train_nc1")], "1.6");
}

#[test]
fn no_runs_is_a_clear_error() {
    let root = scratch_dir("empty");
    let (code, _, stderr) = nclab(&["report", root.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no run directories"), "{stderr}");
    let (code, _, stderr) = nclab(&["report", root.join("missing").to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("not a directory"), "{stderr}");
}

#[test]
fn mismatched_settings_are_named() {
    let root = scratch_dir("mismatch");
    write_run(&root.join("a"), &fixture("ce", 1, 0.5, Some(0.9)));
    write_run(&root.join("b"), &fixture("ls", 1, 0.5, Some(0.9)));
    let config = std::fs::read_to_string(root.join("b/config.json"))
        .unwrap()
        .replace("\"lr\":0.1", "\"lr\":0.05");
    std::fs::write(root.join("b/config.json"), config).unwrap();
    let (code, _, stderr) = nclab(&["report", root.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("mismatched settings") && stderr.contains("lr"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
}

#[test]
fn runs_of_different_conventions_are_not_mixed() {
    let root = scratch_dir("conventions");
    write_run(&root.join("a"), &fixture("ce", 1, 0.5, Some(0.9)));
    write_run(&root.join("b"), &fixture("ls", 1, 0.5, Some(0.9)));
    let set = |convention: &str| {
        let path = root.join("b/config.json");
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        config["convention"] = convention.into();
        std::fs::write(&path, config.to_string()).unwrap();
    };
    // A run that names `nclab` belongs with one written before conventions had names.
    set("nclab");
    let (code, _, stderr) = nclab(&["report", root.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let md = std::fs::read_to_string(root.join("report/report.md")).unwrap();
    assert!(md.contains("under the convention `nclab`"), "{md}");
    set("papyan2020");
    let (code, _, stderr) = nclab(&["report", root.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("mismatched settings") && stderr.contains("convention"),
        "{stderr}"
    );
}

#[test]
fn half_written_runs() {
    let root = scratch_dir("half");
    write_run(&root.join("only-unfinished"), &fixture("ce", 1, 0.5, None));
    let (code, _, stderr) = nclab(&["report", root.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("no finished runs") && stderr.contains("only-unfinished"),
        "{stderr}"
    );

    // A run that cannot be read alone: nothing to report, and the reason is given.
    write_run(&root.join("broken"), &fixture("ce", 2, 0.5, Some(0.9)));
    std::fs::write(
        root.join("broken/metrics.jsonl"),
        "{\"epoch\":0,\"train_nc1\":1.0}\n{\"epoch\":1,\"tra",
    )
    .unwrap();
    let (code, _, stderr) = nclab(&["report", root.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("metrics.jsonl line 2"), "{stderr}");

    // Beside a readable finished run, the unreadable one is listed and the rest reported.
    write_run(&root.join("good"), &fixture("ls", 1, 0.5, Some(0.95)));
    let (code, stdout, stderr) = nclab(&["report", root.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("cannot be read") && stderr.contains("metrics.jsonl line 2"),
        "{stderr}"
    );
    // The good run's terminal-phase accuracy: the mean of its five rows, 0.95 - 0.02.
    assert!(stdout.contains("0.9300"), "{stdout}");
    let md = std::fs::read_to_string(root.join("report/report.md")).unwrap();
    assert!(
        md.contains("could not be read") && md.contains("metrics.jsonl line 2"),
        "{md}"
    );
    let csv = std::fs::read_to_string(root.join("report/summary.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        2,
        "header + the one readable run: {csv}"
    );

    std::fs::write(root.join("broken/config.json"), "{\"loss\":").unwrap();
    let (code, _, stderr) = nclab(&["report", root.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("broken/config.json"), "{stderr}");
}

#[test]
fn reproduce_dry_run_prints_the_plan_without_training() {
    let dir = scratch_dir("reproduce-dry-run");
    let out = dir.join("repro");
    let (code, stdout, stderr) = nclab(&["reproduce", "--dry-run", "--out", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let cells: Vec<&str> = stdout.lines().collect();
    assert_eq!(cells.len(), 24, "{stdout}");
    for loss in ["ce", "ls", "fl", "mse"] {
        for width in ["0.5", "1"] {
            for seed in 1..=3 {
                let name = format!("{loss}_w{width}_e400_s{seed}");
                assert!(
                    cells.iter().any(|c| c.contains(&name)),
                    "{name} missing: {stdout}"
                );
            }
        }
    }
    assert!(stderr.contains("24 cells"), "{stderr}");
    let (code, stdout, _) = nclab(&[
        "reproduce",
        "--dry-run",
        "--seeds",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!((code, stdout.lines().count()), (0, 8), "{stdout}");
    let (code, _, stderr) = nclab(&["reproduce", "--dry-run", "--seeds", "0"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(!out.exists(), "a dry run must not create the output folder");

    // The paper presets need the data folder, and plan the paper's grid with it.
    let (code, _, stderr) = nclab(&["reproduce", "--preset", "paper-cifar10", "--dry-run"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--data-dir"), "{stderr}");
    let (code, stdout, stderr) = nclab(&[
        "reproduce",
        "--preset",
        "paper-cifar100",
        "--data-dir",
        dir.to_str().unwrap(),
        "--dry-run",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    // 4 losses x 4 widths x 4 epoch settings x 3 seeds.
    assert_eq!(stdout.lines().count(), 192, "{stdout}");
    assert!(stdout.contains("fl_w0.25_e800_s3"), "{stdout}");
}

/// Turns a fixture run into one that watched layers 1 and 2 (`nclab train --nc-layers all`):
/// layer i's train NC1 is `i + 1` times the run's `train_nc1` at layer 1, its own at layer 2,
/// and its NCC accuracy 0.5 + 0.2 i.
fn add_layers(dir: &Path) {
    let config_path = dir.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["nc_layers"] = "all".into();
    config["watched_layers"] = serde_json::json!([
        {"index": 1, "name": "hidden1", "dim": 512},
        {"index": 2, "name": "hidden2", "dim": 512}
    ]);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let metrics_path = dir.join("metrics.jsonl");
    let mut lines = String::new();
    for line in std::fs::read_to_string(&metrics_path).unwrap().lines() {
        let mut row: serde_json::Value = serde_json::from_str(line).unwrap();
        let nc1 = row["train_nc1"].as_f64().unwrap();
        row["train_layer1_nc1"] = (2.0 * nc1).into();
        row["train_layer2_nc1"] = nc1.into();
        row["test_layer1_nc1"] = (4.0 * nc1).into();
        row["test_layer2_nc1"] = (2.0 * nc1).into();
        for (i, layer) in [(1, "layer1"), (2, "layer2")] {
            for split in ["train", "test"] {
                row[format!("{split}_{layer}_ncc_accuracy")] = (0.5 + 0.2 * i as f64).into();
            }
        }
        lines.push_str(&row.to_string());
        lines.push('\n');
    }
    std::fs::write(&metrics_path, lines).unwrap();
}

#[test]
fn runs_watching_layers_get_depth_figures_and_tables() {
    let root = scratch_dir("depth");
    for (name, loss, seed, factor) in [
        ("ce-s1", "ce", 1, 0.7),
        ("ce-s2", "ce", 2, 0.7),
        ("mse-s1", "mse", 1, 0.5),
    ] {
        let dir = root.join(name);
        write_run(&dir, &fixture(loss, seed, factor, Some(0.9)));
        add_layers(&dir);
    }
    let (code, _, stderr) = nclab(&["report", root.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let out = root.join("report");
    assert_png_and_svg(&out.join("depth_w1_e4"));
    assert_png_and_svg(&out.join("depth_epochs_w1_e4"));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("![through depth](depth_w1_e4.png)"), "{md}");
    // Epoch 4: ce's train NC1 1.6 * 0.7^4 = 0.38416, twice that at layer 1; the test split
    // twice the training one.
    assert!(md.contains("Through depth, epoch 4"), "{md}");
    assert!(
        md.contains("| ce | 1 (hidden1) | 0.7683 | 1.5366 | 0.7000 | 0.7000 |"),
        "{md}"
    );
    assert!(
        md.contains("| ce | 2 (hidden2) | 0.3842 | 0.7683 | 0.9000 | 0.9000 |"),
        "{md}"
    );
    // mse: 1.6 * 0.5^4 = 0.1 at the last layer. Epochs 0..4 evaluated: profiles at 0, 1, 3, 4.
    assert!(md.contains("| mse | 2 (hidden2) | 0.1000 |"), "{md}");
    assert!(md.contains("| mse | 0 | 3.2000 | 1.6000 |"), "{md}");
    assert!(md.contains("| mse | 3 | 0.4000 | 0.2000 |"), "{md}");
    assert!(!md.contains("| mse | 2 | "), "{md}");

    // Runs that watched no layers get none of this.
    let plain = scratch_dir("no-depth");
    write_run(&plain.join("ce-s1"), &fixture("ce", 1, 0.7, Some(0.9)));
    let (code, _, stderr) = nclab(&["report", plain.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!plain.join("report/depth_w1_e4.png").exists());
    let md = std::fs::read_to_string(plain.join("report/report.md")).unwrap();
    assert!(!md.contains("Through depth"), "{md}");
}
