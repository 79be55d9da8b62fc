//! `nclab ufm` and `nclab landscape` end to end: the JSON keys, the trace, the figures, and
//! bad arguments giving one clear message with exit status 2.

mod common;
use common::{nclab, scratch_dir};

const PROBLEM: [&str; 12] = [
    "--classes",
    "4",
    "--per-class",
    "5",
    "--dim",
    "6",
    "--lambda-w",
    "5e-3",
    "--lambda-h",
    "5e-3",
    "--lambda-b",
    "1e-2",
];

fn with_problem<'a>(head: &[&'a str], tail: &[&'a str]) -> Vec<&'a str> {
    head.iter()
        .chain(PROBLEM.iter())
        .chain(tail)
        .copied()
        .collect()
}

#[test]
fn json_has_exactly_the_documented_keys_and_reaches_the_optimum() {
    for loss in ["ce", "ls", "fl", "mse"] {
        let lambda_b = if loss == "mse" { "0" } else { "1e-2" };
        let mut args = with_problem(&["ufm", "--loss", loss], &["--json", "--tol", "1e-12"]);
        let at = args.iter().position(|a| *a == "--lambda-b").unwrap();
        args[at + 1] = lambda_b;
        let (code, stdout, stderr) = nclab(&args);
        assert_eq!(code, 0, "{loss}: {stderr}");
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let mut keys: Vec<&str> = report
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "grad_norm",
                "iterations",
                "nc1",
                "nc2",
                "nc3",
                "nc4",
                "objective",
                "optimum",
                "relative_gap",
                "seconds"
            ]
        );
        assert!(
            report["relative_gap"].as_f64().unwrap().abs() <= 1e-9,
            "{loss}: {stdout}"
        );
        assert!(
            report["nc1"].as_f64().unwrap() <= 1e-5 && report["nc2"].as_f64().unwrap() <= 1e-5,
            "{loss}: {stdout}"
        );
        assert_eq!(report["nc4"].as_f64().unwrap(), 0.0);
    }
}

#[test]
fn origin_optimal_case_reports_null_metrics_and_mse_with_bias_decay_has_no_optimum() {
    let (code, stdout, stderr) = nclab(&[
        "ufm",
        "--loss",
        "ce",
        "--classes",
        "4",
        "--per-class",
        "5",
        "--dim",
        "6",
        "--lambda-w",
        "0.2",
        "--lambda-h",
        "0.2",
        "--lambda-b",
        "0.1",
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!((report["optimum"].as_f64().unwrap() - 4f64.ln()).abs() < 1e-15);
    assert!(
        report["nc1"].is_null() && report["nc4"].is_null(),
        "{stdout}"
    );

    let (code, stdout, _) = nclab(&with_problem(
        &["ufm", "--loss", "mse", "--max-iter", "50"],
        &["--json"],
    ));
    assert_eq!(code, 0);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        report["optimum"].is_null() && report["relative_gap"].is_null(),
        "{stdout}"
    );
}

#[test]
fn trace_has_one_row_per_iteration_plus_the_start() {
    let dir = scratch_dir("trace");
    let trace = dir.join("trace.csv");
    let (code, stdout, stderr) = nclab(&with_problem(
        &[
            "ufm",
            "--loss",
            "ls",
            "--optimizer",
            "momentum",
            "--lr",
            "0.5",
            "--max-iter",
            "25",
        ],
        &["--json", "--trace", trace.to_str().unwrap()],
    ));
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["iterations"].as_u64(), Some(25));
    let text = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "iteration,objective,grad_norm,nc1,nc2,nc3,nc4");
    assert_eq!(lines.len(), 1 + 26);
    assert!(lines[26].starts_with("25,") && lines[26].split(',').count() == 7);
    let first: f64 = lines[1].split(',').nth(1).unwrap().parse().unwrap();
    let last: f64 = lines[26].split(',').nth(1).unwrap().parse().unwrap();
    assert!(last < first);
}

#[test]
fn target_gap_stops_once_the_gap_is_reached() {
    let (code, stdout, stderr) = nclab(&with_problem(
        &["ufm", "--loss", "ce"],
        &["--json", "--target-gap", "1e-3"],
    ));
    assert_eq!(code, 0, "{stderr}");
    let early: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let (_, stdout, _) = nclab(&with_problem(&["ufm", "--loss", "ce"], &["--json"]));
    let full: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let gap = early["relative_gap"].as_f64().unwrap();
    assert!(gap <= 1e-3 && gap > 1e-12, "{gap}");
    assert!(early["iterations"].as_u64() < full["iterations"].as_u64());
    let (code, _, stderr) = nclab(&with_problem(
        &["ufm", "--loss", "mse"],
        &["--target-gap", "1e-3"],
    ));
    assert_eq!(code, 2);
    assert!(stderr.contains("--target-gap needs f*"), "{stderr}");
}

#[test]
fn bad_arguments_exit_2_with_a_clear_message() {
    let cases: [(&[&str], &str); 10] = [
        (&["--classes", "1"], "--classes must be at least 2"),
        (&["--dim", "0"], "--dim must be at least 1"),
        (&["--lambda-w", "-5e-3"], "--lambda-w must be >= 0"),
        (&["--lambda-h", "-1"], "--lambda-h must be >= 0"),
        (&["--loss", "ls", "--alpha", "1"], "alpha in [0, 1)"),
        (&["--loss", "fl", "--gamma", "-0.5"], "gamma >= 0"),
        (&["--lambda-b", "nan"], "--lambda-b must be a finite number"),
        (&["--rescale", "inf"], "--rescale must be a finite number"),
        (&["--loss", "mse", "--rescale", "-5"], "rescale > 0"),
        (&["--init-scale", "-1"], "--init-scale must be >= 0"),
    ];
    for (change, message) in cases {
        let mut args = with_problem(&["ufm", "--loss", "ce"], &[]);
        for pair in change.chunks(2) {
            match args.iter().position(|a| *a == pair[0]) {
                Some(i) => args[i + 1] = pair[1],
                None => args.extend_from_slice(pair),
            }
        }
        for command in ["ufm", "landscape"] {
            args[0] = command;
            let (code, stdout, stderr) = nclab(&args);
            assert_eq!(code, 2, "{args:?}: {stdout}");
            assert!(stderr.contains(message), "{args:?}: {stderr}");
        }
    }
    let (code, _, stderr) = nclab(&with_problem(&["ufm", "--loss", "hinge"], &[]));
    assert_eq!(code, 2);
    assert!(stderr.contains("hinge"));
    let (code, _, stderr) = nclab(&with_problem(
        &["landscape", "--loss", "ce", "--restarts", "0"],
        &[],
    ));
    assert_eq!(code, 2);
    assert!(stderr.contains("--restarts"));
}

#[test]
fn landscape_reports_restarts_curvature_and_writes_the_histogram() {
    let dir = scratch_dir("landscape");
    let stem = dir.join("restarts");
    let (code, stdout, stderr) = nclab(&with_problem(
        &["landscape", "--loss", "ce", "--restarts", "3"],
        &["--json", "--plot", stem.to_str().unwrap()],
    ));
    assert_eq!(code, 0, "{stderr}");
    let landscape: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let restarts = landscape["restarts"].as_array().unwrap();
    assert_eq!(restarts.len(), 3);
    assert!(
        restarts
            .iter()
            .all(|r| r["relative_gap"].as_f64().unwrap().abs() <= 1e-9),
        "{stdout}"
    );
    let points = landscape["critical_points"].as_array().unwrap();
    let names: Vec<&str> = points.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["origin", "merged_classes", "global"]);
    assert!(
        points[0]["curvature"]["smallest"].as_f64().unwrap() < -1e-3,
        "origin is a strict saddle here"
    );
    assert!(
        points[1]["curvature"]["smallest"].as_f64().unwrap() < -1e-3,
        "merged classes: strict saddle"
    );
    assert!(
        points[2]["curvature"]["smallest"].as_f64().unwrap() > -1e-8,
        "no negative curvature at f*"
    );
    assert!(std::fs::metadata(stem.with_extension("svg")).unwrap().len() > 0);
    assert!(std::fs::metadata(stem.with_extension("png")).unwrap().len() > 0);
}

#[test]
fn instances_too_large_to_hold_are_refused_before_solving() {
    for (classes, per_class, dim) in [
        ("1000", "1000", "1000"),
        (
            "9223372036854775807",
            "9223372036854775807",
            "9223372036854775807",
        ),
    ] {
        for command in ["ufm", "landscape"] {
            let args = [
                command,
                "--loss",
                "ce",
                "--classes",
                classes,
                "--per-class",
                per_class,
                "--dim",
                dim,
                "--lambda-w",
                "5e-4",
                "--lambda-h",
                "5e-4",
                "--lambda-b",
                "5e-4",
            ];
            let (code, _, stderr) = nclab(&args);
            assert_eq!(code, 2, "{args:?}: {stderr}");
            assert!(
                stderr.contains("above the memory limit"),
                "{args:?}: {stderr}"
            );
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
    }
}
