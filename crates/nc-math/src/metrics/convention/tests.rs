use super::*;

#[test]
fn presets_and_switches_round_trip_through_their_text() {
    for preset in Preset::ALL {
        let convention = preset.convention();
        assert_eq!(convention.label(), preset.name());
        assert_eq!(preset.name().parse::<Convention>().unwrap(), convention);
        assert_eq!(convention.preset(), Some(preset));
    }
    // Every value of every switch, set on the default, reads back from its label.
    for name in Convention::switch_names() {
        let values: Vec<String> = match name {
            "nc1-scale" => Nc1Scale::ALL.iter().map(|v| v.name().into()).collect(),
            "global-mean" => GlobalMean::ALL.iter().map(|v| v.name().into()).collect(),
            "weight" => WeightCentring::ALL
                .iter()
                .map(|v| v.name().into())
                .collect(),
            "pinv" => PinvCutoff::ALL.iter().map(|v| v.name().into()).collect(),
            "nc3" => Nc3Form::ALL.iter().map(|v| v.name().into()).collect(),
            "equinorm" => Equinorm::ALL.iter().map(|v| v.name().into()).collect(),
            "equiangle" => Equiangle::ALL.iter().map(|v| v.name().into()).collect(),
            "nc4" => Nc4Form::ALL.iter().map(|v| v.name().into()).collect(),
            "nc4-bias" => Nc4Bias::ALL.iter().map(|v| v.name().into()).collect(),
            "cdnv-variance" => CdnvVariance::ALL.iter().map(|v| v.name().into()).collect(),
            other => panic!("switch {other} is not in this test"),
        };
        assert!(values.len() >= 2, "{name}");
        for value in values {
            let mut convention = Convention::NCLAB;
            convention.set(name, &value).unwrap();
            assert_eq!(convention.get(name), Some(value.as_str()));
            let label = convention.label();
            assert_eq!(label.parse::<Convention>().unwrap(), convention, "{label}");
            let json = serde_json::to_string(&convention).unwrap();
            assert_eq!(json, format!("\"{label}\""));
            assert_eq!(
                serde_json::from_str::<Convention>(&json).unwrap(),
                convention
            );
        }
    }
    // A mix is named after the closest preset.
    let mut mix = Preset::Zhu2021.convention();
    mix.cdnv_variance = CdnvVariance::Sample;
    assert_eq!(mix.label(), "zhu2021+cdnv-variance=sample");
    assert_eq!(
        "nclab+weight=raw, pinv=dim-eps-f32"
            .parse::<Convention>()
            .unwrap(),
        Preset::Zhu2021.convention()
    );
}

#[test]
fn bad_conventions_are_refused_with_the_expected_names() {
    let cases = [
        ("papyan", "unknown convention 'papyan' (expected one of nclab, zhou2022"),
        ("nclab+nc3", "expected name=value after '+', got 'nc3'"),
        ("nclab+nc5=gram", "unknown convention switch 'nc5' (expected one of nc1-scale, global-mean"),
        ("nclab+nc3=frobenius", "convention switch nc3: unknown value 'frobenius' (expected one of gram, duality, duality-squared)"),
    ];
    for (text, expected) in cases {
        let err = text.parse::<Convention>().unwrap_err().to_string();
        assert!(err.contains(expected), "{text}: {err}");
    }
}

#[test]
fn pinv_rules_keep_the_directions_their_libraries_keep() {
    // s^2 relative to the largest: 1, 1e-3, 1e-5, 1e-14, 1e-17, 0.
    let s: Vec<f64> = [1.0f64, 1e-3, 1e-5, 1e-14, 1e-17, 0.0]
        .map(f64::sqrt)
        .to_vec();
    let mut shuffled = s.clone();
    shuffled.swap(0, 3); // index order must not matter
    let kept = |rule, dim, k| kept_directions(&s, rule, dim, k);
    // nclab: s_j > 1e-8 s_1, i.e. s^2 > 1e-16: all but the last two.
    assert_eq!(kept(PinvCutoff::Nclab, 512, 6), [0, 1, 2, 3]);
    // d eps_f32 at d = 512 is 6.1e-5: keeps 1 and 1e-3; at d = 8, 9.5e-7 keeps 1e-5 too.
    assert_eq!(kept(PinvCutoff::DimEpsF32, 512, 6), [0, 1]);
    assert_eq!(kept(PinvCutoff::DimEpsF32, 8, 6), [0, 1, 2]);
    // d eps_f64 at d = 512 is 1.1e-13: 1e-14 falls below; at d = 8 (1.8e-15) it stays.
    assert_eq!(kept(PinvCutoff::DimEpsF64, 512, 6), [0, 1, 2]);
    assert_eq!(kept(PinvCutoff::DimEpsF64, 8, 6), [0, 1, 2, 3]);
    assert_eq!(kept(PinvCutoff::Rcond15, 512, 6), [0, 1, 2, 3]);
    // The K-1 largest, however small: with K = 6, five of the six, the 1e-17 one too.
    assert_eq!(kept(PinvCutoff::TopKMinus1, 512, 6), [0, 1, 2, 3, 4]);
    assert_eq!(kept(PinvCutoff::TopKMinus1, 512, 3), [0, 1]);
    let mut from_shuffled = kept_directions(&shuffled, PinvCutoff::TopKMinus1, 512, 3);
    from_shuffled.sort_unstable();
    assert_eq!(from_shuffled, [1, 3]); // the two largest wherever they are
                                       // A threshold is strict: exactly at it, a direction is dropped (512 eps_f32 = 2^-14).
    let at = [1.0, 2f64.powi(-7)];
    assert_eq!(kept_directions(&at, PinvCutoff::DimEpsF32, 512, 2).len(), 1);
}

/// The preset table of docs/metrics.md, row by row, in switch order.
#[test]
fn presets_choose_what_the_documented_table_says() {
    let table = [
        (
            "nclab",
            [
                "per-class",
                "samples",
                "centred",
                "nclab",
                "gram",
                "cv",
                "absolute",
                "mismatch",
                "with",
                "population",
            ],
        ),
        (
            "zhou2022",
            [
                "per-class",
                "samples",
                "centred",
                "dim-eps-f32",
                "gram",
                "cv",
                "absolute",
                "mismatch",
                "with",
                "population",
            ],
        ),
        (
            "zhu2021",
            [
                "per-class",
                "samples",
                "raw",
                "dim-eps-f32",
                "gram",
                "cv",
                "absolute",
                "mismatch",
                "with",
                "population",
            ],
        ),
        (
            "papyan2020",
            [
                "total",
                "class-means",
                "raw",
                "top-k-minus-1",
                "duality-squared",
                "cv-sample",
                "absolute",
                "mismatch",
                "with",
                "population",
            ],
        ),
        (
            "rhubarbwu",
            [
                "per-class",
                "class-means",
                "raw",
                "dim-eps-f32",
                "gram",
                "cv",
                "absolute",
                "agreement",
                "without",
                "population",
            ],
        ),
        (
            "nctoolbox",
            [
                "per-class",
                "samples",
                "raw",
                "rcond-1e-15",
                "duality",
                "log-ratio",
                "signed",
                "agreement",
                "with",
                "sample",
            ],
        ),
    ];
    assert_eq!(table.len(), Preset::ALL.len());
    for (name, values) in table {
        let convention = name.parse::<Convention>().unwrap();
        let got: Vec<&str> = Convention::switch_names()
            .map(|s| convention.get(s).unwrap())
            .collect();
        assert_eq!(got, values, "{name}");
    }
}
