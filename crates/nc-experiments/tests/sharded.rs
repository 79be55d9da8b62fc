//! A feature set split across files gives the metrics of the one file holding all its rows:
//! in one process (`analyze_shards`) and through partial-state files per shard (phase 1,
//! merge, phase 2, merge), for uneven splits (an empty shard included), every storage kind
//! (stored and compressed `.npz`, `.safetensors`, a directory of `.npy`), f32 and f64; and
//! the refusals that keep shards of different sets apart.

use nc_data::array::{ArraySlice, ArrayView};
use nc_data::features::FeatureKeys;
use nc_data::npz::write_npz;
use nc_data::partial_state::{PartialState, ScatterPart};
use nc_data::safetensors::write_safetensors;
use nc_experiments::partial::{read_state_file, write_state_file};
use nc_experiments::sharded::{
    analyze_shards, finish_scatter, means_of_state_file, means_state, merge_state_files, Merged,
    ShardRequest, Shards,
};
use nc_math::metrics::{Convention, NcMetrics};
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug)]
enum Kind {
    StoredNpz,
    CompressedNpz,
    Safetensors,
    NpyDir,
}

/// A feature set: N x d features near K class centres (labels not the classifier's
/// decisions: a noisy classifier well above chance), a classifier, bias.
struct Set {
    features: Vec<f64>,
    labels: Vec<u32>,
    weight: Vec<f64>,
    bias: Vec<f64>,
    k: usize,
    d: usize,
}

fn make_set(n: usize, k: usize, d: usize, seed: u64) -> Set {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let centres: Vec<f64> = (0..k * d).map(|_| rng.random_range(-2.0..2.0)).collect();
    let labels: Vec<u32> = (0..n).map(|i| (i % k) as u32).collect();
    let features = labels
        .iter()
        .flat_map(|&y| {
            let c = centres[y as usize * d..(y as usize + 1) * d].to_vec();
            c.into_iter()
                .map(|x| x + rng.random_range(-1.5..1.5))
                .collect::<Vec<_>>()
        })
        .collect();
    let weight = centres
        .iter()
        .map(|c| c + rng.random_range(-1.0..1.0))
        .collect();
    let bias = (0..k).map(|_| rng.random_range(-0.5..0.5)).collect();
    Set {
        features,
        labels,
        weight,
        bias,
        k,
        d,
    }
}

/// Writes rows `rows` of `set` as one feature file of `kind`, the features in f32 or f64.
fn write_shard(
    dir: &Path,
    name: &str,
    set: &Set,
    rows: std::ops::Range<usize>,
    kind: Kind,
    f32s: bool,
) -> PathBuf {
    let d = set.d;
    let f64s = set.features[rows.start * d..rows.end * d].to_vec();
    let f32v: Vec<f32> = f64s.iter().map(|&x| x as f32).collect();
    let labels: Vec<i64> = set.labels[rows.clone()].iter().map(|&l| l as i64).collect();
    let fshape = [rows.len(), d];
    let lshape = [rows.len()];
    let wshape = [set.k, d];
    let bshape = [set.k];
    let features = if f32s {
        ArraySlice::F32(&f32v)
    } else {
        ArraySlice::F64(&f64s)
    };
    let arrays = [
        (
            "features",
            ArrayView {
                shape: &fshape,
                data: features,
            },
        ),
        (
            "labels",
            ArrayView {
                shape: &lshape,
                data: ArraySlice::I64(&labels),
            },
        ),
        (
            "weight",
            ArrayView {
                shape: &wshape,
                data: ArraySlice::F64(&set.weight),
            },
        ),
        (
            "bias",
            ArrayView {
                shape: &bshape,
                data: ArraySlice::F64(&set.bias),
            },
        ),
    ];
    match kind {
        Kind::StoredNpz => {
            let path = dir.join(format!("{name}.npz"));
            write_npz(&path, &arrays).unwrap();
            path
        }
        Kind::CompressedNpz => {
            let path = dir.join(format!("{name}.npz"));
            let file = std::fs::File::create(&path).unwrap();
            let mut zip = zip::ZipWriter::new(file);
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            for (key, view) in &arrays {
                zip.start_file(format!("{key}.npy"), options).unwrap();
                nc_data::npy::write_npy_to(&mut zip, view).unwrap();
            }
            zip.finish().unwrap().flush().unwrap();
            path
        }
        Kind::Safetensors => {
            let path = dir.join(format!("{name}.safetensors"));
            write_safetensors(&path, &arrays).unwrap();
            path
        }
        Kind::NpyDir => {
            let path = dir.join(name);
            std::fs::create_dir_all(&path).unwrap();
            for (key, view) in &arrays {
                nc_data::npy::write_npy(&path.join(format!("{key}.npy")), view).unwrap();
            }
            path
        }
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nc-exp-sharded-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn request(files: Vec<PathBuf>) -> ShardRequest {
    ShardRequest {
        files,
        keys: FeatureKeys::default(),
        weight_required: false,
        bias_required: false,
        num_classes: None,
        classifier: None,
        means_from: None,
        convention: Convention::NCLAB,
    }
}

/// Every number agrees to 1e-12 relative; the decision counts (accuracy, nc4, NCC accuracy
/// times N) are identical.
fn assert_same(one: &NcMetrics, many: &NcMetrics, what: &str) {
    let (a, b) = (
        serde_json::to_value(one).unwrap(),
        serde_json::to_value(many).unwrap(),
    );
    let (a, b) = (a.as_object().unwrap(), b.as_object().unwrap());
    assert_eq!(a.len(), b.len());
    for (key, x) in a {
        let y = &b[key];
        match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => assert!(
                (x - y).abs() <= 1e-12 * x.abs().max(y.abs()) + 1e-300,
                "{what}: {key} {x} vs {y}"
            ),
            _ => assert_eq!(x, y, "{what}: {key}"),
        }
    }
    let n = one.num_samples as f64;
    for (key, x, y) in [
        ("accuracy", one.accuracy, many.accuracy),
        ("nc4", one.nc4, many.nc4),
        (
            "ncc_accuracy",
            Some(one.ncc_accuracy),
            Some(many.ncc_accuracy),
        ),
    ] {
        let (x, y) = (x.unwrap() * n, y.unwrap() * n);
        assert_eq!(x.round(), y.round(), "{what}: {key} counts");
    }
    assert_eq!(one.num_samples, many.num_samples);
    assert_eq!(one.sigma_b_rank, many.sigma_b_rank);
}

/// The splits: (row ranges, storage kinds), over N = 700 rows.
fn splits() -> Vec<(Vec<std::ops::Range<usize>>, Vec<Kind>)> {
    use Kind::*;
    vec![
        (vec![0..350, 350..700], vec![StoredNpz, CompressedNpz]),
        (
            vec![0..1, 1..1, 1..400, 400..699, 699..700],
            vec![CompressedNpz, StoredNpz, Safetensors, NpyDir, CompressedNpz],
        ),
        (
            vec![0..100, 100..230, 230..700],
            vec![Safetensors, CompressedNpz, StoredNpz],
        ),
    ]
}

#[test]
fn shards_give_the_metrics_of_one_file_for_any_split_and_storage() {
    let set = make_set(700, 6, 12, 1);
    for f32s in [true, false] {
        let dir = scratch(&format!("splits-{f32s}"));
        let whole = write_shard(&dir, "whole", &set, 0..700, Kind::StoredNpz, f32s);
        let one = analyze_shards(&request(vec![whole])).unwrap();
        // A classifier above chance whose decisions are not the labels.
        let accuracy = one.accuracy.unwrap();
        assert!(accuracy > 0.5 && accuracy < 0.999, "accuracy {accuracy}");
        for (s, (ranges, kinds)) in splits().into_iter().enumerate() {
            let files: Vec<PathBuf> = ranges
                .iter()
                .zip(&kinds)
                .enumerate()
                .map(|(i, (rows, kind))| {
                    write_shard(&dir, &format!("s{s}-{i}"), &set, rows.clone(), *kind, f32s)
                })
                .collect();
            let many = analyze_shards(&request(files.clone())).unwrap();
            assert_same(&one, &many, &format!("split {s}, f32 {f32s}"));
            // Compressed members inflated a few rows at a time give the same sums.
            let shards = Shards::open(&request(files.clone()))
                .unwrap()
                .with_batch_bytes(7 * 12 * 4);
            let means = shards.means().unwrap().finish().unwrap();
            let plan =
                nc_math::metrics::MetricsPlan::new(&means, shards.classifier(), None).unwrap();
            let small_batches = nc_math::metrics::ScatterAccumulator::from_state(
                &plan,
                shards.scatter(&plan).unwrap(),
            )
            .unwrap()
            .finish()
            .unwrap();
            assert_same(
                &one,
                &small_batches,
                &format!("split {s} in small batches, f32 {f32s}"),
            );

            // The same steps per shard through partial-state files.
            let by_hand = through_state_files(&dir, &files, s);
            assert_same(&one, &by_hand, &format!("split {s} by hand, f32 {f32s}"));
        }
    }
}

/// Phase 1 per shard, merge, phase 2 per shard with the merged means, merge.
fn through_state_files(dir: &Path, files: &[PathBuf], tag: usize) -> NcMetrics {
    let mut means_files = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let mut req = request(vec![file.clone()]);
        req.num_classes = Some(6);
        let path = dir.join(format!("{tag}-{i}.means"));
        write_state_file(&path, &PartialState::Means(means_state(&req).unwrap())).unwrap();
        means_files.push(path);
    }
    let Merged::Means(acc) = merge_state_files(&means_files).unwrap() else {
        panic!("phase-1 states merged into something else");
    };
    assert_eq!(acc.rows_seen(), 700);
    let merged = dir.join(format!("{tag}.means"));
    write_state_file(
        &merged,
        &PartialState::Means(nc_experiments::partial::means_part(&acc)),
    )
    .unwrap();
    let means = means_of_state_file(&merged).unwrap();
    let mut scatter_files = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let mut req = request(vec![file.clone()]);
        req.num_classes = Some(6);
        let shards = Shards::open(&req).unwrap();
        let part = shards
            .scatter_part(&means, None, &Convention::NCLAB)
            .unwrap();
        let path = dir.join(format!("{tag}-{i}.scatter"));
        write_state_file(&path, &PartialState::Scatter(part)).unwrap();
        scatter_files.push(path);
    }
    let Merged::Scatter { id, state } = merge_state_files(&scatter_files).unwrap() else {
        panic!("phase-2 states merged into something else");
    };
    assert_eq!(state.rows_seen(), 700);
    let shards = Shards::open(&request(vec![files[0].clone()])).unwrap();
    finish_scatter(
        &scatter_files[0],
        &id,
        state,
        &means,
        shards.classifier(),
        None,
    )
    .unwrap()
}

#[test]
fn ncc_reference_means_from_a_merged_state_equal_those_from_the_file() {
    let dir = scratch("reference");
    let train = make_set(600, 5, 8, 2);
    let test = make_set(300, 5, 8, 3);
    let train_file = write_shard(&dir, "train", &train, 0..600, Kind::StoredNpz, true);
    let train_shards: Vec<PathBuf> = [0..250, 250..600]
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            write_shard(
                &dir,
                &format!("train{i}"),
                &train,
                r,
                Kind::CompressedNpz,
                true,
            )
        })
        .collect();
    let state = dir.join("train.means");
    write_state_file(
        &state,
        &PartialState::Means(means_state(&request(train_shards)).unwrap()),
    )
    .unwrap();
    let test_shards: Vec<PathBuf> = [0..120, 120..300]
        .into_iter()
        .enumerate()
        .map(|(i, r)| write_shard(&dir, &format!("test{i}"), &test, r, Kind::StoredNpz, true))
        .collect();
    let mut from_file = request(test_shards.clone());
    from_file.means_from = Some(train_file);
    let mut from_state = request(test_shards);
    from_state.means_from = Some(state);
    let (a, b) = (
        analyze_shards(&from_file).unwrap(),
        analyze_shards(&from_state).unwrap(),
    );
    assert_same(&a, &b, "reference from state");
    // And the reference changes the NCC numbers (the test set's own means differ).
    let own = analyze_shards(&request(from_file.files.clone())).unwrap();
    assert_ne!(own.ncc_accuracy, a.ncc_accuracy);
}

fn error_of<T>(result: nc_experiments::Result<T>) -> String {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn shards_that_do_not_fit_together_are_refused_with_the_file_named() {
    let dir = scratch("refusals");
    let set = make_set(200, 4, 6, 4);
    let a = write_shard(&dir, "a", &set, 0..100, Kind::StoredNpz, true);
    // Another d.
    let other_d = make_set(100, 4, 5, 5);
    let b = write_shard(&dir, "b", &other_d, 0..100, Kind::StoredNpz, true);
    let err = error_of(analyze_shards(&request(vec![a.clone(), b.clone()])));
    assert!(
        err.contains("b.npz") && err.contains("5 columns") && err.contains("d"),
        "{err}"
    );
    // Another classifier.
    let mut other_w = make_set(200, 4, 6, 4);
    other_w.weight[3] += 1e-9;
    let c = write_shard(&dir, "c", &other_w, 100..200, Kind::StoredNpz, true);
    let err = error_of(analyze_shards(&request(vec![a.clone(), c])));
    assert!(
        err.contains("c.npz") && err.contains("differs from that of") && err.contains("a.npz"),
        "{err}"
    );
    // A label beyond the classifier's rows.
    let mut big = make_set(200, 4, 6, 4);
    big.labels[7] = 4;
    let e = write_shard(&dir, "e", &big, 0..100, Kind::StoredNpz, true);
    let err = error_of(analyze_shards(&request(vec![a.clone(), e])));
    assert!(
        err.contains("e.npz") && err.contains("label 4 at row 7 is outside the classes 0..4"),
        "{err}"
    );
    // A stray huge label without a classifier, before anything K-sized exists.
    let dir2 = scratch("huge");
    let f = dir2.join("f.npz");
    let fshape = [2, 2];
    let lshape = [2];
    write_npz(
        &f,
        &[
            (
                "features",
                ArrayView {
                    shape: &fshape,
                    data: ArraySlice::F32(&[0.0, 1.0, 2.0, 3.0]),
                },
            ),
            (
                "labels",
                ArrayView {
                    shape: &lshape,
                    data: ArraySlice::I64(&[0, (1 << 31) - 1]),
                },
            ),
        ],
    )
    .unwrap();
    let err = error_of(analyze_shards(&request(vec![f])));
    assert!(
        err.contains("2147483647")
            && err.contains("2147483648 classes")
            && err.contains("only 2 samples"),
        "{err}"
    );
    // A named weight that no shard holds.
    let mut named = request(vec![a.clone()]);
    named.keys.weight = "fc.weight".into();
    named.weight_required = true;
    let err = error_of(analyze_shards(&named));
    assert!(err.contains("fc.weight"), "{err}");
    // K given that disagrees with the classifier.
    let mut wrong_k = request(vec![a.clone()]);
    wrong_k.num_classes = Some(5);
    let err = error_of(analyze_shards(&wrong_k));
    assert!(err.contains("5 classes") && err.contains("4 rows"), "{err}");
}

#[test]
fn states_of_different_sets_phases_or_conventions_do_not_merge() {
    let dir = scratch("merges");
    let set = make_set(300, 4, 6, 6);
    let a = write_shard(&dir, "a", &set, 0..150, Kind::StoredNpz, true);
    let b = write_shard(&dir, "b", &set, 150..300, Kind::CompressedNpz, true);
    let means = |files: Vec<PathBuf>, k: Option<usize>, name: &str| {
        let mut req = request(files);
        req.num_classes = k;
        req.classifier = None;
        let path = dir.join(name);
        write_state_file(&path, &PartialState::Means(means_state(&req).unwrap())).unwrap();
        path
    };
    let ma = means(vec![a.clone()], None, "a.means");
    let mb = means(vec![b.clone()], None, "b.means");
    // K differs: a set of 5 classes (other data of the same d).
    let five = make_set(100, 5, 6, 7);
    let c = write_shard(&dir, "c", &five, 0..100, Kind::StoredNpz, true);
    let mc = means(vec![c], None, "c.means");
    let err = error_of(merge_state_files(&[ma.clone(), mc.clone()]));
    assert!(
        err.contains("c.means") && err.contains("K=5") && err.contains("K=4"),
        "{err}"
    );

    // Phase 2 under two conventions, and with means other than the merged ones.
    let Merged::Means(acc) = merge_state_files(&[ma.clone(), mb.clone()]).unwrap() else {
        panic!()
    };
    let merged_means = acc.finish().unwrap();
    let scatter =
        |file: &PathBuf, convention: &str, means: &nc_math::metrics::ClassMeans, name: &str| {
            let shards = Shards::open(&request(vec![file.clone()])).unwrap();
            let part = shards
                .scatter_part(means, None, &convention.parse().unwrap())
                .unwrap();
            let path = dir.join(name);
            write_state_file(&path, &PartialState::Scatter(part)).unwrap();
            path
        };
    let sa = scatter(&a, "nclab", &merged_means, "a.scatter");
    let sb = scatter(&b, "nclab", &merged_means, "b.scatter");
    let sb_zhu = scatter(&b, "zhu2021", &merged_means, "b-zhu.scatter");
    let err = error_of(merge_state_files(&[sa.clone(), sb_zhu]));
    assert!(
        err.contains("b-zhu.scatter") && err.contains("zhu2021"),
        "{err}"
    );
    let own_means = means_of_state_file(&ma).unwrap();
    let sb_own = scatter(&b, "nclab", &own_means, "b-own.scatter");
    let err = error_of(merge_state_files(&[sa.clone(), sb_own]));
    assert!(
        err.contains("b-own.scatter") && err.contains("means"),
        "{err}"
    );
    let err = error_of(merge_state_files(&[sa.clone(), ma.clone()]));
    assert!(err.contains("a.means") && err.contains("phase-1"), "{err}");

    // The final merge checks the means and classifier it is handed against the hashes.
    let Merged::Scatter { id, state } = merge_state_files(&[sa.clone(), sb]).unwrap() else {
        panic!()
    };
    let shards = Shards::open(&request(vec![a.clone()])).unwrap();
    let err = error_of(finish_scatter(
        &sa,
        &id,
        state.clone(),
        &own_means,
        shards.classifier(),
        None,
    ));
    assert!(
        err.contains("a.scatter") && err.contains("other phase-1 means"),
        "{err}"
    );
    let err = error_of(finish_scatter(
        &sa,
        &id,
        state.clone(),
        &merged_means,
        None,
        None,
    ));
    assert!(err.contains("classifier"), "{err}");
    let whole = write_shard(&dir, "whole", &set, 0..300, Kind::StoredNpz, true);
    assert_same(
        &analyze_shards(&request(vec![whole])).unwrap(),
        &finish_scatter(&sa, &id, state, &merged_means, shards.classifier(), None).unwrap(),
        "two halves",
    );
    // A scatter state read back keeps its plan id.
    let PartialState::Scatter(ScatterPart { convention, .. }) = read_state_file(&sa).unwrap()
    else {
        panic!()
    };
    assert_eq!(convention, "nclab");
}
