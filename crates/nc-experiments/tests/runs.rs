//! The run-directory format end to end: runs written with `run_dir`'s writers (what the
//! trainer uses) are read back by `runs` and aggregated by `aggregate`.

use nc_experiments::aggregate::Report;
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
