//! The seeded Gaussian-mixture generator and its command-line spec.

use nc_data::{DataError, SyntheticSpec};

#[test]
fn parses_the_command_line_form() {
    let spec: SyntheticSpec = "K=10,d=32,n=500".parse().unwrap();
    assert_eq!(
        spec,
        SyntheticSpec {
            num_classes: 10,
            dim: 32,
            per_class: 500,
            noise: 0.5,
            seed: 0
        }
    );
    let spec = SyntheticSpec::parse(" K=3, d=2 ,n=4,noise=0.25,seed=99 ").unwrap();
    assert_eq!(
        (
            spec.num_classes,
            spec.dim,
            spec.per_class,
            spec.noise,
            spec.seed
        ),
        (3, 2, 4, 0.25, 99)
    );
    // Display gives a spec that parses back to the same value.
    assert_eq!(SyntheticSpec::parse(&spec.to_string()).unwrap(), spec);
}

#[test]
fn rejects_bad_specs_with_a_reason() {
    for (text, expected) in [
        (
            "K=10,d=32,n=500,sigma=1",
            "unknown key 'sigma' (known keys: K, d, n, noise, seed)",
        ),
        ("K=10,d=32", "missing 'n' (samples per class)"),
        ("d=32,n=5", "missing 'K' (number of classes)"),
        (
            "K=10,d=32,n=five",
            "n=five: expected a non-negative integer",
        ),
        ("K=10,d=-3,n=5", "d=-3: expected a non-negative integer"),
        ("K=10,d=32,n=5,noise=abc", "noise=abc: expected a number"),
        (
            "K=10,d=32,n=5,noise=-1",
            "noise=-1 must be a finite number >= 0",
        ),
        ("K=10,d=32,n=5,noise=inf", "must be a finite number"),
        ("K=10,K=3,d=32,n=5", "key 'K' is given twice"),
        ("K=1,d=32,n=5", "at least 2 classes"),
        ("K=10,d=0,n=5", "d=0"),
        ("K=10,d=3,n=0", "n=0"),
        ("K=10,d3,n=5", "'d3' is not of the form key=value"),
        ("", "missing 'K'"),
    ] {
        let err = SyntheticSpec::parse(text).unwrap_err();
        assert!(matches!(err, DataError::InvalidSyntheticSpec { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("'{text}'")) && msg.contains(expected),
            "{text}: {msg}"
        );
    }
}

#[test]
fn same_seed_same_data_and_different_seeds_differ() {
    let spec = SyntheticSpec::parse("K=4,d=5,n=30,noise=0.3,seed=7").unwrap();
    let a = spec.generate().unwrap();
    let b = spec.generate().unwrap();
    assert_eq!(a, b);
    let other = SyntheticSpec {
        seed: 8,
        ..spec.clone()
    }
    .generate()
    .unwrap();
    assert_ne!(a.centres, other.centres);
    assert_ne!(a.train.features, other.train.features);
    // Train and test share centres but not noise.
    assert_ne!(a.train.features, a.test.features);
}

#[test]
fn shapes_labels_and_statistics() {
    let spec = SyntheticSpec::parse("K=3,d=4,n=2000,noise=0.5,seed=1").unwrap();
    let data = spec.generate().unwrap();
    assert_eq!(data.centres.len(), 12);
    for split in [&data.train, &data.test] {
        assert_eq!(
            (split.num_samples, split.dim, split.num_classes),
            (6000, 4, 3)
        );
        assert_eq!(split.features.len(), 6000 * 4);
        assert_eq!(split.labels.len(), 6000);
        // Labels cycle 0, 1, 2, 0, ... so each class has n samples.
        assert!(split
            .labels
            .iter()
            .enumerate()
            .all(|(i, &l)| l as usize == i % 3));
        // Per class and coordinate: the sample mean is near the centre (standard error
        // 0.5 / sqrt(2000) = 0.011) and the standard deviation near the noise level.
        for k in 0..3 {
            for j in 0..4 {
                let values: Vec<f64> = (0..6000)
                    .filter(|i| i % 3 == k)
                    .map(|i| f64::from(split.features[i * 4 + j]))
                    .collect();
                let mean = values.iter().sum::<f64>() / values.len() as f64;
                let var =
                    values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
                assert!(
                    (mean - data.centres[k * 4 + j]).abs() < 0.06,
                    "class {k} coord {j}: mean {mean}"
                );
                assert!(
                    (var.sqrt() - 0.5).abs() < 0.05,
                    "class {k} coord {j}: std {}",
                    var.sqrt()
                );
            }
        }
    }
    // Centres are standard normal draws: not all tiny, not huge.
    assert!(data.centres.iter().all(|c| c.abs() < 6.0));
    assert!(data.centres.iter().any(|c| c.abs() > 0.1));
}

#[test]
fn zero_noise_puts_every_sample_on_its_centre() {
    let data = SyntheticSpec::parse("K=2,d=3,n=4,noise=0")
        .unwrap()
        .generate()
        .unwrap();
    for (i, &label) in data.train.labels.iter().enumerate() {
        let row = &data.train.features[i * 3..(i + 1) * 3];
        let centre = &data.centres[label as usize * 3..(label as usize + 1) * 3];
        for (x, c) in row.iter().zip(centre) {
            assert_eq!(*x, *c as f32);
        }
    }
}

#[test]
fn synthetic_split_saves_as_a_feature_file() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("synthetic");
    std::fs::create_dir_all(&dir).unwrap();
    let data = SyntheticSpec::parse("K=3,d=2,n=5,seed=4")
        .unwrap()
        .generate()
        .unwrap();
    let path = dir.join("train.npz");
    nc_data::save_feature_npz(&path, &data.train.as_export()).unwrap();
    let set = nc_data::load_feature_file(&path, &Default::default()).unwrap();
    assert_eq!(
        set.features,
        nc_data::FloatData::F32(data.train.features.clone())
    );
    assert_eq!(set.labels, data.train.labels);
}
