//! The accumulators' states: serialised mid-stream and resumed, merged across shards, moved
//! across threads. Resuming must be exact (the same sums in the same order); merging is
//! exact where it adds the same partial sums in the same order as one pass, and within
//! rounding where it regroups them.

use nc_math::metrics::{
    ClassMeans, Classifier, Feature, MeanAccumulator, MetricsPlan, NcMetrics, ScatterAccumulator,
    ScatterState,
};
use nc_math::Error;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

/// Rows per batch. Each batch is summed in parallel pieces whose boundaries rayon may
/// choose at run time, except in a batch of at most one block of rows (256), which is
/// summed in one order: so two streams of such batches add the same numbers in the same
/// order, and only the state handling can make them differ.
const BATCH: usize = 100;

struct Problem {
    features: Vec<f64>,
    labels: Vec<u32>,
    classes: usize,
    dim: usize,
    /// W close to the class centres (near collapse: most decisions come from the
    /// projections, the rest from the logits) and a random W (mostly from the logits).
    aligned: Classifier,
    random: Classifier,
}

fn problem(seed: u64, classes: usize, dim: usize, rows: usize, spread: f64) -> Problem {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut normal = |scale: f64| scale * rng.sample::<f64, _>(StandardNormal);
    let centres: Vec<f64> = (0..classes * dim).map(|_| normal(3.0)).collect();
    let aligned: Vec<f64> = centres.iter().map(|&c| c + normal(0.05)).collect();
    let random: Vec<f64> = (0..classes * dim).map(|_| normal(1.0)).collect();
    let bias: Vec<f64> = (0..classes).map(|_| normal(0.1)).collect();
    let labels: Vec<u32> = (0..rows)
        .map(|i| ((i * 7 + i / 3) % classes) as u32)
        .collect();
    let features = labels
        .iter()
        .flat_map(|&y| (0..dim).map(move |i| (y as usize, i)))
        .map(|(y, i)| centres[y * dim + i] + normal(spread))
        .collect();
    Problem {
        features,
        labels,
        classes,
        dim,
        aligned: Classifier::new(classes, dim, aligned, Some(bias)).unwrap(),
        random: Classifier::new(classes, dim, random, None).unwrap(),
    }
}

/// The features as f32 values (the f32 decision route runs on them).
fn as_f32(features: &[f64]) -> Vec<f32> {
    features.iter().map(|&x| x as f32).collect()
}

fn batches<'a, T>(
    features: &'a [T],
    labels: &'a [u32],
    dim: usize,
) -> impl Iterator<Item = (&'a [T], &'a [u32])> {
    features.chunks(BATCH * dim).zip(labels.chunks(BATCH))
}

fn json<S: serde::Serialize>(state: &S) -> String {
    serde_json::to_string(state).unwrap()
}

fn means_of<T: Feature>(features: &[T], labels: &[u32], k: usize, d: usize) -> ClassMeans {
    let mut acc = MeanAccumulator::new(k, d);
    for (f, l) in batches(features, labels, d) {
        acc.add_batch(f, l).unwrap();
    }
    acc.finish().unwrap()
}

/// Phase 2 in one uninterrupted stream.
fn one_pass<T: Feature>(plan: &MetricsPlan, features: &[T], labels: &[u32]) -> ScatterAccumulator {
    let mut acc = plan.accumulator();
    for (f, l) in batches(features, labels, row_len(features, labels)) {
        acc.add_batch(f, l).unwrap();
    }
    acc
}

fn row_len<T>(features: &[T], labels: &[u32]) -> usize {
    features.len() / labels.len()
}

#[test]
fn a_phase_one_state_saved_mid_stream_resumes_exactly() {
    let p = problem(1, 5, 30, 1000, 0.5);
    let (k, d) = (p.classes, p.dim);
    let whole = means_of(&p.features, &p.labels, k, d);

    let mut acc = MeanAccumulator::new(k, d);
    let mut stream = batches(&p.features, &p.labels, d);
    for (f, l) in stream.by_ref().take(4) {
        acc.add_batch(f, l).unwrap();
    }
    let saved = json(&acc);
    drop(acc);
    let mut resumed: MeanAccumulator = serde_json::from_str(&saved).unwrap();
    for (f, l) in stream {
        resumed.add_batch(f, l).unwrap();
    }
    assert_eq!(resumed.finish().unwrap(), whole);
}

/// Stops phase 2 after `stop` batches, writes its state as JSON, rebuilds everything from
/// what was written (the phase-1 state too, so the plan is rebuilt from the same means) and
/// finishes: the metrics must be those of the uninterrupted stream, to the bit.
fn resume_after<T: Feature>(features: &[T], labels: &[u32], k: usize, clf: Option<&Classifier>) {
    let d = row_len(features, labels);
    let mut phase_one = MeanAccumulator::new(k, d);
    for (f, l) in batches(features, labels, d) {
        phase_one.add_batch(f, l).unwrap();
    }
    let saved_means = json(&phase_one);
    let plan = MetricsPlan::new(&phase_one.finish().unwrap(), clf, None).unwrap();
    let uninterrupted = one_pass(&plan, features, labels);

    let mut acc = plan.accumulator();
    let mut stream = batches(features, labels, d);
    for (f, l) in stream.by_ref().take(5) {
        acc.add_batch(f, l).unwrap();
    }
    let saved = json(acc.state());
    drop((acc, plan));

    let means = serde_json::from_str::<MeanAccumulator>(&saved_means)
        .unwrap()
        .finish()
        .unwrap();
    let plan = MetricsPlan::new(&means, clf, None).unwrap();
    let state: ScatterState = serde_json::from_str(&saved).unwrap();
    let mut resumed = ScatterAccumulator::from_state(&plan, state).unwrap();
    for (f, l) in stream {
        resumed.add_batch(f, l).unwrap();
    }
    assert_eq!(resumed.state(), uninterrupted.state());
    let (resumed, uninterrupted) = (resumed.finish().unwrap(), uninterrupted.finish().unwrap());
    assert_eq!(resumed, uninterrupted);
    if clf.is_some() {
        assert!(uninterrupted.accuracy.is_some_and(f64::is_finite));
    }
}

#[test]
fn a_phase_two_state_saved_mid_stream_resumes_exactly() {
    let p = problem(2, 6, 40, 1200, 0.3);
    let f32s = as_f32(&p.features);
    resume_after(&f32s, &p.labels, p.classes, Some(&p.aligned));
    resume_after(&f32s, &p.labels, p.classes, Some(&p.random));
    resume_after(&p.features, &p.labels, p.classes, Some(&p.aligned));
    resume_after(&p.features, &p.labels, p.classes, Some(&p.random));
    resume_after(&p.features, &p.labels, p.classes, None);
}

/// One pass adds each batch's partial sums to its running state in turn; a shard that is
/// the last batch alone holds exactly that batch's partial sums, and merging it adds them
/// the same way: so the merged state is the one pass's, to the bit.
#[test]
fn merging_a_shard_state_equals_one_pass_exactly() {
    let p = problem(3, 6, 40, 1150, 0.3);
    let f32s = as_f32(&p.features);
    let (k, d) = (p.classes, p.dim);
    for clf in [Some(&p.aligned), Some(&p.random), None] {
        let plan = MetricsPlan::new(&means_of(&f32s, &p.labels, k, d), clf, None).unwrap();
        let whole = one_pass(&plan, &f32s, &p.labels);
        let cut = (p.labels.len() - 1) / BATCH * BATCH;
        let mut first = one_pass(&plan, &f32s[..cut * d], &p.labels[..cut]);
        let last = one_pass(&plan, &f32s[cut * d..], &p.labels[cut..]);
        let shipped: ScatterState = serde_json::from_str(&json(last.state())).unwrap();
        first.merge_state(&shipped).unwrap();
        assert_eq!(first.state(), whole.state());
        assert_eq!(first.finish().unwrap(), whole.finish().unwrap());
    }
}

/// Merging shards regroups the f64 sums ((a + b) + (c + d) instead of ((a + b) + c) + d),
/// and f64 addition is not associative: the sums agree to rounding (1e-16 relative per
/// addition; 1e-12 is far below what one missing or doubled sample would change, about
/// 1/N). Counts and the fractions made of them are exact.
#[test]
fn merging_shards_in_another_grouping_equals_one_pass_to_rounding() {
    let p = problem(4, 6, 40, 1200, 0.3);
    let f32s = as_f32(&p.features);
    let (k, d) = (p.classes, p.dim);
    let plan = MetricsPlan::new(&means_of(&f32s, &p.labels, k, d), Some(&p.aligned), None).unwrap();
    let whole = one_pass(&plan, &f32s, &p.labels).finish().unwrap();
    // Three shards of uneven length, merged in another order than they stream.
    let cuts = [0, 230, 810, p.labels.len()];
    let shards: Vec<String> = cuts
        .windows(2)
        .map(|w| json(one_pass(&plan, &f32s[w[0] * d..w[1] * d], &p.labels[w[0]..w[1]]).state()))
        .collect();
    let state = |s: &String| serde_json::from_str::<ScatterState>(s).unwrap();
    let mut merged = ScatterAccumulator::from_state(&plan, state(&shards[2])).unwrap();
    merged.merge_state(&state(&shards[0])).unwrap();
    merged.merge_state(&state(&shards[1])).unwrap();
    let merged = merged.finish().unwrap();
    assert_counts_equal(&merged, &whole);
    let close = |a: f64, b: f64, what: &str| {
        assert!((a - b).abs() <= 1e-12 * b.abs(), "{what}: {a} vs {b}");
    };
    close(merged.nc1, whole.nc1, "nc1");
    close(merged.cdnv, whole.cdnv, "cdnv");
}

fn assert_counts_equal(a: &NcMetrics, b: &NcMetrics) {
    assert_eq!(a.num_samples, b.num_samples);
    assert_eq!(a.accuracy, b.accuracy);
    assert_eq!(a.nc4, b.nc4);
    assert_eq!(a.ncc_accuracy, b.ncc_accuracy);
    // The class-level metrics come from the plan alone.
    assert_eq!((a.nc2, a.nc3, a.nc2_means), (b.nc2, b.nc3, b.nc2_means));
}

#[test]
fn states_that_do_not_fit_are_errors() {
    let small = problem(5, 3, 8, 300, 0.5);
    let large = problem(6, 5, 8, 300, 0.5);
    let plan_of = |p: &Problem| {
        MetricsPlan::new(
            &means_of(&p.features, &p.labels, p.classes, p.dim),
            None,
            None,
        )
        .unwrap()
    };
    let (small_plan, large_plan) = (plan_of(&small), plan_of(&large));
    let foreign = one_pass(&large_plan, &large.features, &large.labels);
    let foreign = foreign.state().clone();
    assert!(matches!(
        ScatterAccumulator::from_state(&small_plan, foreign.clone()),
        Err(Error::Mismatch(_))
    ));
    let mut acc = small_plan.accumulator();
    assert!(matches!(acc.merge_state(&foreign), Err(Error::Mismatch(_))));
    // Accumulators of two plans do not merge, even with equal shapes; a clone of a plan is
    // the same plan.
    let other_plan = plan_of(&small);
    assert!(matches!(
        acc.merge(&other_plan.accumulator()),
        Err(Error::Mismatch(_))
    ));
    acc.merge(&small_plan.clone().accumulator()).unwrap();

    // A phase-1 state whose counts do not add up to its rows, or whose sums have the wrong
    // length, is refused when read.
    let mut means = MeanAccumulator::new(3, 2);
    means.add_batch(&[1.0, 2.0, 3.0, 4.0], &[0, 2]).unwrap();
    let saved = json(&means);
    assert!(serde_json::from_str::<MeanAccumulator>(&saved).is_ok());
    let tampered = saved.replace("\"rows_seen\":2", "\"rows_seen\":3");
    assert_ne!(tampered, saved);
    assert!(serde_json::from_str::<MeanAccumulator>(&tampered).is_err());
    let tampered = saved.replace("\"dim\":2", "\"dim\":3");
    assert_ne!(tampered, saved);
    assert!(serde_json::from_str::<MeanAccumulator>(&tampered).is_err());
}

/// An accumulator owns its plan: it outlives the caller's plan, and moves to other threads.
#[test]
fn accumulators_own_their_plan_and_move_across_threads() {
    fn owned<T: Send + Sync + 'static>(_: &T) {}
    let p = problem(7, 4, 16, 800, 0.5);
    let f32s = as_f32(&p.features);
    let (k, d) = (p.classes, p.dim);
    let plan = MetricsPlan::new(&means_of(&f32s, &p.labels, k, d), Some(&p.aligned), None).unwrap();
    let whole = one_pass(&plan, &f32s, &p.labels);
    let half = p.labels.len() / 2;
    let (first, second) = ((0, half), (half, p.labels.len()));
    let shards: Vec<ScatterAccumulator> = std::thread::scope(|scope| {
        let handles: Vec<_> = [first, second]
            .into_iter()
            .map(|(a, b)| {
                let mut acc = plan.accumulator();
                owned(&acc);
                let (f, l) = (&f32s[a * d..b * d], &p.labels[a..b]);
                scope.spawn(move || {
                    for (f, l) in batches(f, l, d) {
                        acc.add_batch(f, l).unwrap();
                    }
                    acc
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    drop(plan);
    let [mut a, b] = <[ScatterAccumulator; 2]>::try_from(shards).ok().unwrap();
    a.merge(&b).unwrap();
    let (merged, whole) = (a.finish().unwrap(), whole.finish().unwrap());
    assert_counts_equal(&merged, &whole);
    assert!((merged.nc1 - whole.nc1).abs() <= 1e-12 * whole.nc1);
}

/// A phase-1 state rebuilt from its parts (counts and sums, as a partial-state file holds
/// them) is the accumulator that produced them; parts that do not fit are refused.
#[test]
fn a_phase_one_state_rebuilt_from_its_parts_is_the_same_state() {
    let p = problem(61, 3, 4, 50, 1.0);
    let mut acc = MeanAccumulator::new(3, 4);
    acc.add_batch(&p.features, &p.labels).unwrap();
    let json = serde_json::to_value(&acc).unwrap();
    let counts: Vec<u64> = serde_json::from_value(json["counts"].clone()).unwrap();
    let sums: Vec<f64> = (0..3)
        .flat_map(|k| {
            let rows: Vec<&[f64]> = p
                .features
                .chunks(4)
                .zip(&p.labels)
                .filter(|(_, &y)| y as usize == k)
                .map(|(row, _)| row)
                .collect();
            (0..4).map(move |j| rows.iter().map(|r| r[j]).sum::<f64>())
        })
        .collect();
    let rebuilt = MeanAccumulator::from_parts(3, 4, counts.clone(), sums.clone()).unwrap();
    assert_eq!(rebuilt.finish().unwrap(), acc.clone().finish().unwrap());
    assert_eq!(counts.iter().sum::<u64>(), p.labels.len() as u64);
    // Rows carry on from the rebuilt count: a bad label in a later batch is named by it.
    let mut rebuilt = MeanAccumulator::from_parts(3, 4, counts.clone(), sums.clone()).unwrap();
    let bad = rebuilt.add_batch(&[0.0; 8], &[0, 3]);
    assert!(
        matches!(bad, Err(Error::LabelOutOfRange { row, .. }) if row == p.labels.len() + 1),
        "{bad:?}"
    );
    assert!(MeanAccumulator::from_parts(3, 4, counts[..2].to_vec(), sums.clone()).is_err());
    assert!(MeanAccumulator::from_parts(3, 4, counts.clone(), sums[..11].to_vec()).is_err());
    let mut with_nan = sums;
    with_nan[5] = f64::NAN;
    assert!(MeanAccumulator::from_parts(3, 4, counts, with_nan).is_err());
    assert!(MeanAccumulator::from_parts(2, 1, vec![u64::MAX, 1], vec![0.0; 2]).is_err());
}
