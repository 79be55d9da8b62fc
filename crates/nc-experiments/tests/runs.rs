//! The run-directory format end to end: runs written with `run_dir`'s writers (what the
//! trainer uses) are read back by `runs` and aggregated by `aggregate`.

use nc_experiments::aggregate::{Headline, Report};
use nc_experiments::run_dir::{
    csv_columns, write_json, write_metrics, MetricsRow, RunDir, Summary,
};
use nc_experiments::runs::read_run;
use nc_experiments::Error;
use nc_math::loss::{Loss, LossKind};
use std::path::{Path, PathBuf};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nc-exp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a run: NC1 = nc1_start * factor^epoch, and a summary when `test_acc` is given.
fn write_run(dir: &Path, loss: Loss, seed: u64, lr: f64, factor: f64, test_acc: Option<f64>) {
    let run = RunDir::create(dir).unwrap();
    let config = serde_json::json!({
        "nclab_version": "0.1.0",
        "loss": loss,
        "model": {"kind": "mlp", "depth": 2, "hidden": 512, "batch_norm": false, "width": 1.0},
        "epochs": 4,
        "seed": seed,
        "lr": lr,
    });
    write_json(&run.config(), &config).unwrap();
    let rows: Vec<MetricsRow> = (0..=4)
        .map(|e| {
            let values = csv_columns()
                .into_iter()
                .map(|c| {
                    let v = match c.as_str() {
                        "epoch" => Some(e as f64),
                        "train_nc1" => Some(2.0 * factor.powi(e)),
                        "test_nc1" => Some(3.0 * factor.powi(e)),
                        "train_acc" => Some(0.5 + 0.125 * e as f64),
                        _ => None,
                    };
                    (c, v)
                })
                .collect();
            MetricsRow { values, raw: None }
        })
        .collect();
    write_metrics(&run, &rows).unwrap();
    if let Some(acc) = test_acc {
        let summary = Summary {
            epochs: 4,
            best_epoch: 3,
            val_samples: Some(140),
            best_val_acc: Some(0.9),
            best_val_test_acc: acc,
            final_train_acc: 1.0,
            final_test_acc: acc,
            final_train_loss: 0.01,
            final_train_nc1: Some(2.0 * factor.powi(4)),
            initial_train_nc1: Some(2.0),
            seconds_per_step: 0.001,
            backend: "flex".into(),
        };
        write_json(&run.summary(), &summary).unwrap();
    }
}

#[test]
fn a_written_run_reads_back_typed() {
    let root = scratch("read");
    let dir = root.join("ls");
    write_run(
        &dir,
        Loss::LabelSmoothing { alpha: 0.1 },
        7,
        0.1,
        0.5,
        Some(0.93),
    );
    let run = read_run(&dir).unwrap();
    assert_eq!(run.loss, Loss::LabelSmoothing { alpha: 0.1 });
    assert_eq!((run.width, run.epochs, run.seed), (1.0, 4, 7));
    assert_eq!(run.rows.len(), 5);
    assert_eq!(run.first("train_nc1"), Some(2.0));
    assert_eq!(run.last("train_nc1"), Some(2.0 * 0.5f64.powi(4)));
    // Columns written as null are absent from the row.
    assert_eq!(run.last("train_nc2"), None);
    let summary = run.summary.unwrap();
    assert_eq!(summary.best_val_test_acc, 0.93);
    assert_eq!(summary.backend, "flex");
    // The swept settings are not part of what must agree across a sweep.
    assert!(run.fixed_settings.get("seed").is_none());
    assert!(run.fixed_settings.get("lr").is_some());
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_report_aggregates_over_seeds_and_lists_unfinished_runs() {
    let root = scratch("report");
    write_run(
        &root.join("ce-s1"),
        Loss::CrossEntropy,
        1,
        0.1,
        0.9,
        Some(0.90),
    );
    write_run(
        &root.join("ce-s2"),
        Loss::CrossEntropy,
        2,
        0.1,
        0.9,
        Some(0.94),
    );
    write_run(
        &root.join("mse-s1"),
        Loss::Mse { rescale: 15.0 },
        1,
        0.1,
        0.1,
        Some(0.95),
    );
    write_run(
        &root.join("fl-s1"),
        Loss::Focal { gamma: 3.0 },
        1,
        0.1,
        0.1,
        None,
    );
    let report = Report::scan(&root).unwrap();
    assert_eq!(report.unfinished, vec![root.join("fl-s1")]);
    assert_eq!(report.finished().count(), 3);
    let ce = report.cell(LossKind::Ce, 1.0, 4).unwrap();
    assert_eq!(ce.seeds, 2);
    assert!((ce.test_acc.0 - 0.92).abs() < 1e-12);
    // Sample std of {0.90, 0.94}: 0.04 / sqrt(2).
    assert!((ce.test_acc.1.unwrap() - 0.04 / 2f64.sqrt()).abs() < 1e-12);
    assert_eq!(ce.initial_train_nc1, Some(2.0));
    assert!((ce.final_train_nc1.unwrap() - 2.0 * 0.9f64.powi(4)).abs() < 1e-15);
    let mse = report.cell(LossKind::Mse, 1.0, 4).unwrap();
    assert_eq!(mse.test_acc, (0.95, None));
    let findings = report.findings_markdown();
    assert!(
        findings.contains("**ce**: train NC1 2.0000 -> 1.3122 (1.5x lower): collapses only partly"),
        "{findings}"
    );
    assert!(
        findings.contains("**mse**: train NC1 2.0000 -> 2.00e-4 (10000.0x lower): collapses;"),
        "{findings}"
    );
    assert!(
        findings.contains("from 0.9200 (ce) to 0.9500 (mse), a spread of 0.0300"),
        "{findings}"
    );
    let csv = report.summary_csv();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(
        csv.lines()
            .nth(1)
            .unwrap()
            .contains("ce-s1,ce,1,4,1,3,0.9,0.9,1,0.9"),
        "{csv}"
    );
    // Means over seeds at each epoch.
    let setting = &report.settings[0];
    let curve = setting.losses[0].mean_curve("test_nc1");
    assert_eq!(curve.len(), 5);
    assert_eq!(curve[0], (0.0, 3.0));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn runs_that_differ_beyond_the_swept_settings_are_refused() {
    let root = scratch("mismatch");
    write_run(&root.join("a"), Loss::CrossEntropy, 1, 0.1, 0.9, Some(0.9));
    write_run(&root.join("b"), Loss::CrossEntropy, 2, 0.05, 0.9, Some(0.9));
    let err = Report::scan(&root).unwrap_err();
    assert!(matches!(err, Error::MismatchedRuns { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("mismatched settings") && text.contains("lr"),
        "{text}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_torn_metrics_line_names_the_file_and_line() {
    let root = scratch("torn");
    let dir = root.join("a");
    write_run(&dir, Loss::CrossEntropy, 1, 0.1, 0.9, Some(0.9));
    std::fs::write(
        dir.join("metrics.jsonl"),
        "{\"epoch\":0,\"train_nc1\":1.0}\n{\"epoch\":1,\"tra",
    )
    .unwrap();
    let err = read_run(&dir).unwrap_err();
    assert!(matches!(err, Error::InvalidLine { line: 2, .. }), "{err:?}");
    assert!(err.to_string().contains("metrics.jsonl line 2"), "{err}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn reopening_a_run_removes_the_temporary_files_killed_writers_left() {
    let root = scratch("stale");
    let dir = root.join("run");
    write_run(&dir, Loss::CrossEntropy, 1, 0.1, 0.9, None);
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = [
        dir.join(format!(".final.safetensors.{dead}.tmp")),
        dir.join(format!(".summary.json.{dead}.tmp")),
        dir.join(format!("checkpoints/.state.json.{dead}.tmp")),
    ];
    for p in &stale {
        std::fs::write(p, b"half").unwrap();
    }
    RunDir::open(&dir).unwrap();
    for p in &stale {
        assert!(!p.exists(), "{} left behind", p.display());
    }
    assert!(dir.join("metrics.jsonl").is_file());
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_creation_killed_before_its_first_file_can_be_created_again() {
    let root = scratch("unstarted");
    let dir = root.join("run");
    RunDir::create(&dir).unwrap();
    std::fs::write(dir.join(".write-test"), b"ok").unwrap();
    // The skeleton alone: created again.
    RunDir::create(&dir).unwrap();
    // Anything more is somebody's data.
    std::fs::write(dir.join("checkpoints/last/model-e1.bpk"), b"x").unwrap();
    assert!(matches!(
        RunDir::create(&dir),
        Err(nc_experiments::Error::RunDirNotEmpty { .. })
    ));
    std::fs::remove_file(dir.join("checkpoints/last/model-e1.bpk")).unwrap();
    std::fs::write(dir.join("notes.txt"), b"mine").unwrap();
    assert!(matches!(
        RunDir::create(&dir),
        Err(nc_experiments::Error::RunDirNotEmpty { .. })
    ));
    std::fs::remove_dir_all(&root).unwrap();
}

/// Sets `val_samples` (None: as files written before it was recorded) and the
/// best-validation test accuracy of a written run's summary.
fn edit_summary(dir: &Path, val_samples: Option<usize>, best_val_test_acc: f64) {
    let path = RunDir::at(dir).summary();
    let mut summary: Summary =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    summary.val_samples = val_samples;
    summary.best_val_test_acc = best_val_test_acc;
    std::fs::write(&path, serde_json::to_string(&summary).unwrap()).unwrap();
}

#[test]
fn best_validation_leads_only_with_a_large_validation_split() {
    let root = scratch("headline");
    for (seed, acc) in [(1, 0.90), (2, 0.94)] {
        write_run(
            &root.join(format!("ce-s{seed}")),
            Loss::CrossEntropy,
            seed,
            0.1,
            0.9,
            Some(acc),
        );
    }
    // 140 validation samples (write_run's): the terminal-phase accuracy (here the final one:
    // the rows hold no test accuracy) leads.
    let report = Report::scan(&root).unwrap();
    assert_eq!(report.headline, Headline::Terminal);
    assert!(report.headline_reason.contains("140 validation samples"));
    // 1,000 and more in every run: the best-validation checkpoint's accuracy leads.
    edit_summary(&root.join("ce-s1"), Some(5000), 0.80);
    edit_summary(&root.join("ce-s2"), Some(1000), 0.82);
    let report = Report::scan(&root).unwrap();
    assert_eq!(report.headline, Headline::BestValidation);
    let ce = report.cell(LossKind::Ce, 1.0, 4).unwrap();
    assert!((ce.test_acc.0 - 0.81).abs() < 1e-12, "{:?}", ce.test_acc);
    assert_eq!(ce.headline_values, [0.80, 0.82]);
    assert!((ce.final_test_acc.0 - 0.92).abs() < 1e-12);
    // One run just below the threshold, or one that does not say: terminal again.
    edit_summary(&root.join("ce-s2"), Some(999), 0.82);
    assert_eq!(Report::scan(&root).unwrap().headline, Headline::Terminal);
    edit_summary(&root.join("ce-s2"), None, 0.82);
    let report = Report::scan(&root).unwrap();
    assert_eq!(report.headline, Headline::Terminal);
    assert!(report.headline_reason.contains("do not record"));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn losses_are_tested_against_ce_over_seeds() {
    let root = scratch("welch");
    // Final accuracies (the headline here: no validation size is large, no accuracy rows)
    // and NC1 factors per seed: CE 0.90, 0.92, 0.94; MSE 0.95, 0.96, 0.97.
    for (seed, ce, mse) in [(1, 0.90, 0.95), (2, 0.92, 0.96), (3, 0.94, 0.97)] {
        let nc1 = 0.5 + 0.1 * seed as f64;
        write_run(
            &root.join(format!("ce-s{seed}")),
            Loss::CrossEntropy,
            seed,
            0.1,
            nc1,
            Some(ce),
        );
        write_run(
            &root.join(format!("mse-s{seed}")),
            Loss::Mse { rescale: 15.0 },
            seed,
            0.1,
            nc1 / 2.0,
            Some(mse),
        );
    }
    let report = Report::scan(&root).unwrap();
    let tests = report.versus_ce();
    assert_eq!(tests.len(), 1);
    let mse = &tests[0];
    assert_eq!(mse.loss, LossKind::Mse);
    assert!((mse.acc_diff - 0.04).abs() < 1e-12);
    // scipy 1.17.1, ttest_ind([0.95, 0.96, 0.97], [0.90, 0.92, 0.94], equal_var=False):
    // statistic 3.0983866769659403, df 2.9411764705882404, pvalue 0.05478676604107601. Four
    // points apart and still within the noise of three seeds.
    let acc = mse.acc_test.unwrap();
    assert!((acc.t - 3.0983866769659403).abs() < 1e-9, "{acc:?}");
    assert!((acc.df - 2.9411764705882404).abs() < 1e-9, "{acc:?}");
    assert!((acc.p - 0.05478676604107601).abs() < 1e-9, "{acc:?}");
    // log10 NC1 after 4 epochs: 4 log10(factor) + log10 2; MSE's factor is half CE's in
    // every seed, so its log NC1 is exactly 4 log10(1/2) lower with the same spread.
    let diff = mse.log_nc1_diff.unwrap();
    assert!((diff - 4.0 * 0.5f64.log10()).abs() < 1e-12, "{diff}");
    // scipy: ttest_ind of 4 log10(f/2) + log10 2 against 4 log10(f) + log10 2 over
    // f = 0.6, 0.7, 0.8: statistic -5.89680500336587, df 4.0, pvalue 0.004137052244004878.
    let nc1 = mse.log_nc1_test.unwrap();
    assert!((nc1.t + 5.89680500336587).abs() < 1e-9, "{nc1:?}");
    assert!((nc1.df - 4.0).abs() < 1e-9, "{nc1:?}");
    assert!((nc1.p - 0.004137052244004878).abs() < 1e-9, "{nc1:?}");
    let md = report.seed_tests_markdown();
    assert!(
        md.contains(
            "| 1 | 4 | mse | +0.0400 | t = 3.10, df = 2.9, p = 0.055 | within seed noise | -1.20 | t = -5.90, df = 4.0, p = 0.004 | differs |"
        ),
        "{md}"
    );
    assert!(md.contains("three seeds"), "{md}");
    let text = report.verdict_table();
    assert!(text.contains("against CE over seeds"), "{text}");
    std::fs::remove_dir_all(&root).unwrap();
}

/// Sets a written run's width and the layers its config says it watched, all of dimension
/// 512 x width.
fn watch_layers(dir: &Path, width: f64, names: &[&str]) {
    let path = RunDir::at(dir).config();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config["model"]["width"] = width.into();
    config["watched_layers"] = names
        .iter()
        .enumerate()
        .map(|(i, name)| serde_json::json!({"index": i + 1, "name": name, "dim": (512.0 * width) as usize}))
        .collect();
    std::fs::write(&path, config.to_string()).unwrap();
}

#[test]
fn runs_of_different_widths_watching_the_same_layers_belong_together() {
    let root = scratch("layers");
    write_run(
        &root.join("narrow"),
        Loss::CrossEntropy,
        1,
        0.1,
        0.9,
        Some(0.9),
    );
    write_run(
        &root.join("wide"),
        Loss::CrossEntropy,
        1,
        0.1,
        0.9,
        Some(0.9),
    );
    // The layer dimensions differ with the width (256 against 512): one sweep.
    watch_layers(&root.join("narrow"), 0.5, &["hidden1", "hidden2"]);
    watch_layers(&root.join("wide"), 1.0, &["hidden1", "hidden2"]);
    let report = Report::scan(&root).unwrap();
    assert_eq!(report.settings.len(), 2);
    // Different layers are different settings.
    watch_layers(&root.join("wide"), 1.0, &["hidden1", "stage2"]);
    let err = Report::scan(&root).unwrap_err();
    assert!(err.to_string().contains("watched_layers"), "{err}");
    std::fs::remove_dir_all(&root).unwrap();
}
