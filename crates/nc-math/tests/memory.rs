//! Many classes stay bounded: K = 10,000 classes in d = 512 (docs/metrics.md, "Many
//! classes") must peak under 0.5 GB of resident memory beyond the inputs. A plan that held
//! its K x K tables whole would need 800 MB for each one.
//!
//! Peak resident memory, not a counting allocator: the matrix-product crate (gemm) gives
//! every thread a buffer of the L2 cache size it detects, which some virtual machines report
//! as about 1 GB; the buffer is allocated but only its first megabytes are ever touched.

use nc_math::metrics::{compute_metrics, Classifier};

/// A field of /proc/self/status in bytes (VmRSS: resident now, VmHWM: the most resident).
fn status_bytes(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} missing from /proc/self/status"));
    let kib: usize = line[field.len() + 1..]
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

/// A cheap deterministic pseudo-random value in [-1, 1) (xorshift), so that generating the
/// inputs costs little next to the metrics.
fn noise(state: &mut u64) -> f32 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
}

#[cfg(target_os = "linux")]
#[test]
fn ten_thousand_classes_peak_under_half_a_gigabyte_beyond_the_inputs() {
    let (k, d, per_class) = (10_000, 512, 2);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let centres: Vec<f32> = (0..k * d).map(|_| noise(&mut state)).collect();
    let labels: Vec<u32> = (0..k * per_class).map(|i| (i % k) as u32).collect();
    let features: Vec<f32> = labels
        .iter()
        .flat_map(|&y| centres[y as usize * d..(y as usize + 1) * d].to_vec())
        .map(|c| c + 0.1 * noise(&mut state))
        .collect();
    // W = the centres, except that row 1 repeats row 0: class 1's samples tie between rows
    // 0 and 1 and go to row 0 (first on ties), and the one-vs-rest margin is exactly 0, found
    // from the bounds alone (random rows would make it solve every class: a benchmark,
    // bench/analyze/README.md, not a test of memory).
    let mut weight: Vec<f64> = centres.iter().map(|&c| c as f64).collect();
    weight.copy_within(0..d, d);
    let bias = vec![0.01; k];
    let classifier = Classifier::new(k, d, weight, Some(bias)).unwrap();
    drop(centres);
    // Two threads, as on the 2-core machine: each parallel piece holds its own buffers.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    // Writing 5 to clear_refs resets the high-water mark to what is resident now.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let inputs = status_bytes("VmRSS:");
    let metrics = pool
        .install(|| compute_metrics(&features, &labels, d, k, Some(&classifier), None))
        .unwrap();
    let beyond = status_bytes("VmHWM:").saturating_sub(inputs);
    eprintln!(
        "K {k}, d {d}, N {}: resident before {:.0} MB, peak beyond that {:.0} MB",
        labels.len(),
        inputs as f64 / 1e6,
        beyond as f64 / 1e6
    );
    assert!(
        beyond < 500_000_000,
        "peak {beyond} bytes beyond the inputs"
    );
    // The numbers are those of well-separated classes, and W decides all but class 1.
    assert_eq!(metrics.num_classes, k);
    let n = labels.len();
    assert_eq!(metrics.accuracy, Some((n - per_class) as f64 / n as f64));
    assert_eq!(metrics.gnc2_margin_w, Some(0.0));
    assert_eq!(metrics.ncc_accuracy, 1.0);
    assert!(metrics.nc1_trace_ratio.unwrap() < 0.02);
}
