//! `nclab analyze SHARD...` and the per-shard steps a batch scheduler runs (`--phase means`,
//! `nclab merge`, `--phase scatter --means`, `nclab merge`), end to end on a file split by
//! hand: the same numbers as `nclab analyze` on the whole file, and refusals with exit 2.

mod common;

use common::{nclab, scratch_dir};
use nc_data::array::{ArraySlice, ArrayView};
use nc_data::npz::write_npz;
use std::path::{Path, PathBuf};

/// N = 240 rows of d = 6 features near K = 4 centres, a noisy classifier (not the labels'
/// decisions); rows `rows` written to `path`.
fn write_rows(path: &Path, rows: std::ops::Range<usize>, with_classifier: bool) {
    let (k, d) = (4usize, 6usize);
    let centre = |c: usize, j: usize| ((c * 7 + j * 3) % 5) as f64 - 2.0;
    let labels: Vec<i64> = rows.clone().map(|i| ((i * 5) % k) as i64).collect();
    let features: Vec<f32> = rows
        .clone()
        .flat_map(|i| {
            let y = (i * 5) % k;
            (0..d).map(move |j| {
                (centre(y, j) + (((i * 31 + j * 17) % 23) as f64 / 23.0 - 0.5) * 3.0) as f32
            })
        })
        .collect();
    let weight: Vec<f64> = (0..k * d)
        .map(|i| centre(i / d, i % d) + ((i * 13) % 7) as f64 / 5.0)
        .collect();
    let bias = [0.1, -0.2, 0.05, 0.0];
    let (fshape, lshape, wshape, bshape) = ([labels.len(), d], [labels.len()], [k, d], [k]);
    let mut views = vec![
        (
            "features",
            ArrayView {
                shape: &fshape,
                data: ArraySlice::F32(&features),
            },
        ),
        (
            "labels",
            ArrayView {
                shape: &lshape,
                data: ArraySlice::I64(&labels),
            },
        ),
    ];
    if with_classifier {
        views.push((
            "weight",
            ArrayView {
                shape: &wshape,
                data: ArraySlice::F64(&weight),
            },
        ));
        views.push((
            "bias",
            ArrayView {
                shape: &bshape,
                data: ArraySlice::F64(&bias),
            },
        ));
    }
    write_npz(path, &views).unwrap();
}

fn ok(args: &[&str]) -> String {
    let (code, stdout, stderr) = nclab(args);
    assert_eq!(code, 0, "{args:?}: {stderr}");
    stdout
}

fn json(text: &str) -> serde_json::Map<String, serde_json::Value> {
    serde_json::from_str::<serde_json::Value>(text)
        .unwrap()
        .as_object()
        .unwrap()
        .clone()
}

/// Equal to 1e-12 relative, number by number.
fn assert_close(
    a: &serde_json::Map<String, serde_json::Value>,
    b: &serde_json::Map<String, serde_json::Value>,
) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (key, x) in a {
        match (x.as_f64(), b[key].as_f64()) {
            (Some(x), Some(y)) => assert!(
                (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
                "{key}: {x} vs {y}"
            ),
            _ => assert_eq!(x, &b[key], "{key}"),
        }
    }
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn the_batch_steps_by_hand_give_the_numbers_of_the_whole_file() {
    let dir = scratch_dir("shards-steps");
    let whole = dir.join("whole.npz");
    write_rows(&whole, 0..240, true);
    let cuts = [0, 3, 100, 101, 240];
    let shards: Vec<PathBuf> = (0..4)
        .map(|i| {
            let path = dir.join(format!("shard-{i}.npz"));
            write_rows(&path, cuts[i]..cuts[i + 1], true);
            path
        })
        .collect();
    let expected = json(&ok(&["analyze", s(&whole), "--json"]));

    // One command over all shards, given as a quoted glob.
    let pattern = dir.join("shard-*.npz");
    let together = json(&ok(&["analyze", s(&pattern), "--json"]));
    assert_close(&expected, &together);
    let table = ok(&["analyze", s(&pattern)]);
    assert!(
        table.starts_with("4 files (") && table.contains("N = 240"),
        "{table}"
    );

    // Phase 1 per shard, merge, phase 2 per shard, merge.
    for (i, shard) in shards.iter().enumerate() {
        let out = dir.join(format!("{i}.means"));
        ok(&["analyze", "--phase", "means", s(shard), "--out", s(&out)]);
    }
    let means = dir.join("all.means");
    ok(&["merge", s(&dir.join("*.means")), "--out", s(&means)]);
    for (i, shard) in shards.iter().enumerate() {
        let out = dir.join(format!("{i}.scatter"));
        ok(&[
            "analyze",
            "--phase",
            "scatter",
            s(shard),
            "--means",
            s(&means),
            "--out",
            s(&out),
        ]);
    }
    let scatter = dir.join("*.scatter");
    let merged = json(&ok(&[
        "merge",
        s(&scatter),
        "--means",
        s(&means),
        "--classifier-from",
        s(&shards[0]),
        "--json",
    ]));
    assert_close(&expected, &merged);

    // The final merge without the classifier the states hold, or with other means: refused.
    let (code, _, stderr) = nclab(&["merge", s(&scatter), "--means", s(&means)]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--classifier-from"), "{stderr}");
    let (code, _, stderr) = nclab(&[
        "merge",
        s(&scatter),
        "--means",
        s(&dir.join("1.means")),
        "--classifier-from",
        s(&shards[0]),
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("other phase-1 means") && !stderr.contains("panicked"),
        "{stderr}"
    );
    // Mixed phases.
    let (code, _, stderr) = nclab(&[
        "merge",
        s(&dir.join("0.scatter")),
        s(&dir.join("1.means")),
        "--means",
        s(&means),
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("1.means") && stderr.contains("phase"),
        "{stderr}"
    );
    // Flags of the wrong phase.
    let (code, _, stderr) = nclab(&[
        "analyze",
        "--phase",
        "scatter",
        s(&shards[0]),
        "--out",
        s(&dir.join("x")),
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--means"), "{stderr}");
    let (code, _, stderr) = nclab(&["analyze", s(&shards[0]), "--out", s(&dir.join("x"))]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--phase"), "{stderr}");
    let (code, _, stderr) = nclab(&["analyze", s(&dir.join("nothing-*.npz"))]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no file matches"), "{stderr}");
}

#[test]
fn shards_without_a_classifier_need_k_when_a_shard_lacks_classes() {
    let dir = scratch_dir("shards-k");
    let whole = dir.join("whole.npz");
    write_rows(&whole, 0..240, false);
    // Rows 0..2 hold labels 0 and 1 only (label of row i is 5i mod 4).
    let small = dir.join("small.npz");
    write_rows(&small, 0..2, false);
    let rest = dir.join("rest.npz");
    write_rows(&rest, 2..240, false);
    let expected = json(&ok(&["analyze", s(&whole), "--json"]));
    // Together, K is the largest label + 1 over all shards.
    assert_close(
        &expected,
        &json(&ok(&["analyze", s(&small), s(&rest), "--json"])),
    );
    // Alone, the small shard gives K = 2 and its state cannot merge with the rest's.
    let a = dir.join("small.means");
    let b = dir.join("rest.means");
    ok(&["analyze", "--phase", "means", s(&small), "--out", s(&a)]);
    ok(&["analyze", "--phase", "means", s(&rest), "--out", s(&b)]);
    let (code, _, stderr) = nclab(&["merge", s(&a), s(&b), "--out", s(&dir.join("m"))]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("rest.means") && stderr.contains("K=4") && stderr.contains("K=2"),
        "{stderr}"
    );
    // With --num-classes both agree, and the steps give the whole file's numbers.
    ok(&[
        "analyze",
        "--phase",
        "means",
        s(&small),
        "--out",
        s(&a),
        "--num-classes",
        "4",
    ]);
    let m = dir.join("all.means");
    ok(&["merge", s(&a), s(&b), "--out", s(&m)]);
    for (shard, name) in [(&small, "small.scatter"), (&rest, "rest.scatter")] {
        ok(&[
            "analyze",
            "--phase",
            "scatter",
            s(shard),
            "--means",
            s(&m),
            "--out",
            s(&dir.join(name)),
            "--num-classes",
            "4",
        ]);
    }
    let merged = json(&ok(&[
        "merge",
        s(&dir.join("*.scatter")),
        "--means",
        s(&m),
        "--json",
    ]));
    assert_close(&expected, &merged);
}
