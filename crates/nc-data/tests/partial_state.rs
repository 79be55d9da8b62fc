//! The partial-state format (src/partial_state.rs): canonical bytes that round-trip, that the
//! reference safetensors implementation reads, a golden file for Python's tests, and every
//! refusal.

use nc_data::partial_state::{
    check_convention_text, decode, sha256_f64, MeansPart, PartialState, ScatterPart,
    MAX_CONVENTION_BYTES,
};
use std::path::Path;

fn means_state() -> PartialState {
    PartialState::Means(MeansPart {
        num_classes: 3,
        dim: 2,
        counts: vec![2, 1, 1],
        sums: vec![1.0, 2.0, -3.5, 0.25, 1e300, -0.0],
    })
}

fn scatter_state() -> PartialState {
    PartialState::Scatter(ScatterPart {
        num_classes: 3,
        dim: 2,
        convention: "nclab".into(),
        means_sha256: sha256_f64(&[1.0, 2.0]),
        classifier_sha256: Some(sha256_f64(&[0.5])),
        reference_sha256: None,
        class_counts: vec![2, 1, 1],
        projected_sq: vec![0.125, 3.0],
        deviation_sq: vec![1.0, 0.0, 2.5],
        counters: [3, 4, 1, 2],
    })
}

#[test]
fn sha256_is_of_the_little_endian_bytes() {
    // Values from Python: hashlib.sha256(b"") and hashlib.sha256(struct.pack("<2d", 1.0, -0.5)).
    assert_eq!(
        sha256_f64(&[]),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        sha256_f64(&[1.0, -0.5]),
        "b75ba3b875def5d2f34361fcc7cbea9b45aa3f9ef590f96ad71c90a955800533"
    );
}

#[test]
fn both_phases_round_trip_canonically() {
    for state in [means_state(), scatter_state()] {
        let bytes = state.encode();
        assert_eq!(
            bytes.len() % 8,
            0,
            "header padded, all data 8-byte elements"
        );
        let back = decode(&bytes).unwrap();
        assert_eq!(back, state);
        assert_eq!(back.encode(), bytes);
    }
    // -0.0 keeps its sign bit: the sums are stored as their exact bits.
    let PartialState::Means(m) = decode(&means_state().encode()).unwrap() else {
        panic!("phase 1 expected")
    };
    assert!(m.sums[5].is_sign_negative());
}

#[test]
fn the_reference_safetensors_implementation_reads_the_bytes() {
    let bytes = scatter_state().encode();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    assert_eq!(meta["format"], "nclab-partial-state");
    assert_eq!(meta["version"], "1");
    assert_eq!(meta["phase"], "2");
    assert_eq!(meta["convention"], "nclab");
    assert_eq!(meta["rank"], "2");
    assert_eq!(meta["reference_sha256"], "none");
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let counters = tensors.tensor("counters").unwrap();
    assert_eq!(counters.dtype(), safetensors::Dtype::U64);
    assert_eq!(counters.shape(), &[4]);
    let projected = tensors.tensor("projected_sq").unwrap();
    assert_eq!(
        projected.data(),
        [0.125f64, 3.0].map(f64::to_le_bytes).concat()
    );
}

/// crates/nc-data/tests/fixtures/partial_state_phase1.safetensors: the phase-1 state of the
/// features [[0, 1], [2, 3], [4, 5], [6, 7]] with labels [0, 1, 0, 2] (K = 3, d = 2), which
/// crates/nc-py/tests/test_state.py rebuilds in Python and compares byte for byte. Set
/// NCLAB_WRITE_FIXTURES=1 to write it anew.
#[test]
fn golden_phase1_file() {
    let state = PartialState::Means(MeansPart {
        num_classes: 3,
        dim: 2,
        counts: vec![2, 1, 1],
        sums: vec![4.0, 6.0, 2.0, 3.0, 6.0, 7.0],
    });
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/partial_state_phase1.safetensors");
    if std::env::var_os("NCLAB_WRITE_FIXTURES").is_some() {
        std::fs::write(&path, state.encode()).unwrap();
    }
    let golden = std::fs::read(&path).unwrap();
    assert_eq!(golden, state.encode());
    assert_eq!(decode(&golden).unwrap(), state);
}

/// Replaces `from` by `to` (same length or not) in the header and fixes the length field.
fn edit_header(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + len]).unwrap();
    assert!(header.contains(from), "{header}");
    let mut header = header.trim_end().replace(from, to);
    while !header.len().is_multiple_of(8) {
        header.push(' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&bytes[8 + len..]);
    out
}

fn refusal(bytes: &[u8]) -> String {
    let err = decode(bytes).unwrap_err().to_string();
    assert!(
        err.starts_with("not a valid nclab partial state: "),
        "{err}"
    );
    err
}

#[test]
fn damaged_or_foreign_bytes_are_refused_with_the_reason() {
    let good = scatter_state().encode();
    assert!(refusal(&good[..5]).contains("too short"));
    assert!(refusal(&good[..good.len() - 8])
        .contains("needs 16 bytes at offset 80, but the data has 88"));
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(refusal(&trailing).contains("canonical"));
    let mut huge = good.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(refusal(&huge).contains("header length"));
    let big_phase1 = edit_header(
        &means_state().encode(),
        "\"dim\":\"2\"",
        "\"dim\":\"4000000000\"",
    );
    assert!(refusal(&big_phase1).contains("do not fit"));
    let cases = [
        ("\"version\":\"1\"", "\"version\":\"2\"", "version 2"),
        (
            "\"convention\":\"nclab\"",
            "\"convention\":\"\"",
            "the metric convention is empty",
        ),
        (
            "\"convention\":\"nclab\"",
            "\"convention\":\"ncl\\u00e4b\"",
            "holds 'ä'",
        ),
        (
            "\"convention\":\"nclab\"",
            "\"convention\":\"nclab+nc3=a b\"",
            "holds ' '",
        ),
        (
            "\"convention\":\"nclab\"",
            "\"convention\":7",
            "no string 'convention'",
        ),
        ("\"phase\":\"2\"", "\"phase\":\"3\"", "phase '3'"),
        (
            "nclab-partial-state",
            "something-else",
            "format 'something-else'",
        ),
        (
            "\"rank\":\"2\"",
            "\"rank\":\"3\"",
            "tensor 'projected_sq' is F64 [2], expected F64 [3]",
        ),
        ("\"rank\":\"2\"", "\"rank\":\"-1\"", "'rank' is '-1'"),
        (
            "\"num_classes\":\"3\"",
            "\"num_classes\":\"99999999999999999999\"",
            "num_classes",
        ),
        (
            "\"dtype\":\"U64\"",
            "\"dtype\":\"I64\"",
            "tensor 'class_counts' is I64",
        ),
        (
            "\"reference_sha256\":\"none\"",
            "\"reference_sha256\":\"xyz\"",
            "64 lowercase hex",
        ),
        ("\"counters\"", "\"kounters\"", "no tensor 'counters'"),
        (
            "{\"__metadata__\"",
            "{\"x\":1,\"__metadata__\"",
            "canonical",
        ),
    ];
    for (from, to, expected) in cases {
        let err = refusal(&edit_header(&good, from, to));
        assert!(err.contains(expected), "{from} -> {to}: {err}");
    }
    assert!(refusal(&edit_header(&good, "{\"__metadata__\":{", "[{")).contains("JSON"));
}

#[test]
fn merging_needs_the_same_phase_shape_rank_and_hashes() {
    let (means, scatter) = (means_state(), scatter_state());
    means.check_mergeable(&means).unwrap();
    scatter.check_mergeable(&scatter).unwrap();
    let message =
        |a: &PartialState, b: &PartialState| a.check_mergeable(b).unwrap_err().to_string();
    assert!(message(&means, &scatter).contains("a phase-2 state into a phase-1 state"));
    let PartialState::Means(m) = &means else {
        unreachable!()
    };
    let wider = PartialState::Means(MeansPart {
        dim: 3,
        sums: vec![0.0; 9],
        ..m.clone()
    });
    assert!(message(&means, &wider).contains("K=3, d=3 into one of K=3, d=2"));
    let PartialState::Scatter(s) = &scatter else {
        unreachable!()
    };
    let variants = [
        (
            ScatterPart {
                convention: "zhu2021".into(),
                projected_sq: vec![1.0],
                ..s.clone()
            },
            "a phase-2 state of convention 'zhu2021' into one of convention 'nclab'",
        ),
        (
            ScatterPart {
                means_sha256: sha256_f64(&[9.0]),
                ..s.clone()
            },
            "different class means (phase 1)",
        ),
        (
            ScatterPart {
                classifier_sha256: None,
                ..s.clone()
            },
            "different classifier",
        ),
        (
            ScatterPart {
                reference_sha256: Some(sha256_f64(&[])),
                ..s.clone()
            },
            "different reference means",
        ),
        (
            ScatterPart {
                projected_sq: vec![1.0],
                ..s.clone()
            },
            "rank 1 and 2",
        ),
    ];
    for (other, expected) in variants {
        let err = message(&scatter, &PartialState::Scatter(other));
        assert!(err.contains(expected), "{err}");
    }
}

fn with_convention(convention: &str) -> PartialState {
    let PartialState::Scatter(s) = scatter_state() else {
        unreachable!()
    };
    PartialState::Scatter(ScatterPart {
        convention: convention.into(),
        ..s
    })
}

#[test]
fn a_phase2_state_records_its_convention_and_round_trips_it() {
    for convention in [
        "zhu2021",
        "nclab+nc1-scale=total",
        "papyan2020+pinv=nclab,nc4=agreement",
    ] {
        let state = with_convention(convention);
        let bytes = state.encode();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(meta.metadata().as_ref().unwrap()["convention"], convention);
        let back = decode(&bytes).unwrap();
        assert_eq!(back.convention(), convention);
        assert_eq!(back, state);
        assert_eq!(back.encode(), bytes);
    }
    // Text is checked for its form only here: whether it names a convention is nc-math's to
    // say (the Python bindings parse it).
    assert_eq!(
        decode(&with_convention("not-a-preset").encode())
            .unwrap()
            .convention(),
        "not-a-preset"
    );
    assert_eq!(means_state().convention(), "nclab");
}

#[test]
fn merging_refuses_two_conventions_naming_both() {
    let (nclab, zhu) = (with_convention("nclab"), with_convention("zhu2021"));
    let mix = with_convention("nclab+nc1-scale=total");
    zhu.check_mergeable(&with_convention("zhu2021")).unwrap();
    let err = nclab.check_mergeable(&zhu).unwrap_err().to_string();
    assert!(
        err.contains(
            "cannot merge: a phase-2 state of convention 'zhu2021' into one of convention 'nclab'"
        ),
        "{err}"
    );
    let err = mix.check_mergeable(&nclab).unwrap_err().to_string();
    assert!(
        err.contains("convention 'nclab' into one of convention 'nclab+nc1-scale=total'"),
        "{err}"
    );
}

/// The bytes of means_state() and scatter_state() as the first version of this module wrote
/// them (at commit be8350b, before phase-2 states carried other conventions; written with
/// `std::fs::write(path, state.encode())` there). They still decode to the same states, and
/// today's encoding of those states is byte-identical: phase 1 and the `nclab` convention
/// did not change.
#[test]
fn bytes_of_the_first_version_still_decode() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for (file, state) in [
        ("partial_state_v1_phase1.safetensors", means_state()),
        ("partial_state_v1_phase2.safetensors", scatter_state()),
    ] {
        let old = std::fs::read(fixtures.join(file)).unwrap();
        assert_eq!(decode(&old).unwrap(), state, "{file}");
        assert_eq!(state.encode(), old, "{file}");
    }
}

#[test]
fn phase1_states_record_nclab_and_refuse_another() {
    let bytes = means_state().encode();
    let header = String::from_utf8_lossy(&bytes[8..]).into_owned();
    assert!(header.contains("\"convention\":\"nclab\""), "{header}");
    let err = refusal(&edit_header(
        &bytes,
        "\"convention\":\"nclab\"",
        "\"convention\":\"zhu2021\"",
    ));
    assert!(
        err.contains(
            "a phase-1 state with metric convention 'zhu2021': phase-1 states record 'nclab'"
        ),
        "{err}"
    );
}

#[test]
fn convention_text_is_bounded_printable_ascii() {
    check_convention_text("nclab+global-mean=class-means,nc3=duality").unwrap();
    check_convention_text(&"a".repeat(MAX_CONVENTION_BYTES)).unwrap();
    let err = |t: &str| check_convention_text(t).unwrap_err().to_string();
    assert!(err(&"a".repeat(MAX_CONVENTION_BYTES + 1)).contains("257 bytes long, at most 256"));
    assert!(err("").contains("empty"));
    assert!(err("zhu\"2021").contains("holds '\"'"));
    assert!(err("zhu\\2021").contains("holds '\\\\'"));
    assert!(err("zhu\n").contains("holds '\\n'"));
    // A state holding such text still encodes as valid JSON (escaped), which decode refuses
    // by name rather than as broken JSON.
    for bad in ["", "a\"b", "a\\b", "é", &"x".repeat(300)] {
        let e = refusal(&with_convention(bad).encode());
        assert!(e.contains("the metric convention"), "{bad:?}: {e}");
    }
}
