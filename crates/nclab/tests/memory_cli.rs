//! Inputs that would need more memory than the machine (or the process) allows are refused
//! with a message and exit status 2, not an abort.

mod common;
use common::{nclab, scratch_dir};

use std::io::Write;
use std::path::Path;

/// The header of a version-1 `.npy` file of little-endian float32 (or int64) `shape`.
fn npy_header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut dict = format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': ({},), }}",
        dims.join(", ")
    );
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((dict.len() as u16).to_le_bytes());
    out.extend(dict.as_bytes());
    out
}

/// An `np.savez_compressed`-style archive whose `features` member (2 x `dim` float32 zeros)
/// inflates to `8 dim` bytes from a file of a few hundred kilobytes.
fn write_bomb(path: &Path, dim: usize) {
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(1))
        .large_file(true);
    zip.start_file("features.npy", options).unwrap();
    zip.write_all(&npy_header("<f4", &[2, dim])).unwrap();
    let zeros = vec![0u8; 1 << 20];
    let mut left = 8 * dim;
    while left > 0 {
        let n = left.min(zeros.len());
        zip.write_all(&zeros[..n]).unwrap();
        left -= n;
    }
    zip.start_file("labels.npy", options).unwrap();
    zip.write_all(&npy_header("<i8", &[2])).unwrap();
    zip.write_all(&[0u8; 8]).unwrap();
    zip.write_all(&1i64.to_le_bytes()).unwrap();
    zip.finish().unwrap();
}

/// Runs `nclab ARGS` (a shell-quoted argument string) under `ulimit -v KIB`; returns the
/// exit status and stderr.
#[cfg(target_os = "linux")]
fn nclab_under_ulimit(kib: u64, args: &str) -> (Option<i32>, String) {
    let script = format!(
        "ulimit -v {kib} && exec '{}' {args}",
        env!("CARGO_BIN_EXE_nclab")
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_compressed_member_too_wide_for_the_limit_is_refused() {
    let dir = scratch_dir("bomb");
    let bomb = dir.join("bomb.npz");
    // 64 MiB of features when inflated.
    write_bomb(&bomb, 1 << 23);
    assert!(std::fs::metadata(&bomb).unwrap().len() < 1 << 20);
    let path = bomb.to_str().unwrap();
    let (code, _, stderr) = nclab(&["analyze", path, "--max-memory", "16M"]);
    assert_eq!(code, 2, "{stderr}");
    // The member is streamed in batches, so what is refused is what the metrics would hold:
    // K x d tables of 2 x 2^23 doubles (128 MiB each).
    assert!(
        stderr.contains("bomb.npz")
            && stderr.contains("K = 2 classes in d = 8388608 dimensions")
            && stderr.contains("above the memory limit of 16.0 MiB"),
        "{stderr}"
    );
    // Under a limit it fits, the same file is read (and found degenerate: all means equal).
    let (code, _, stderr) = nclab(&["analyze", path, "--max-memory", "4G"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(!stderr.contains("memory limit"), "{stderr}");
    let (code, _, stderr) = nclab(&["analyze", path, "--max-memory", "lots"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--max-memory"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn under_an_address_space_limit_the_default_ceiling_follows_it() {
    let dir = scratch_dir("bomb-ulimit");
    let bomb = dir.join("bomb.npz");
    // 1 GiB of features when inflated, under a 1 GiB address-space limit.
    write_bomb(&bomb, 1 << 27);
    let (code, stderr) = nclab_under_ulimit(1 << 20, &format!("analyze '{}'", bomb.display()));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("above the memory limit"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_network_too_wide_to_hold_is_refused_before_anything_is_written() {
    let dir = scratch_dir("too-wide");
    let out = dir.join("run");
    let (code, _, stderr) = nclab(&[
        "train",
        "--data",
        "synthetic:K=3,d=4,n=10",
        "--width",
        "1e12",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--width") && stderr.contains("above the memory limit"),
        "{stderr}"
    );
    assert!(!out.exists(), "a refused run leaves no directory");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn oversized_requests_exit_2_under_an_address_space_limit() {
    let dir = scratch_dir("ulimit-requests");
    let out = dir.join("wide");
    let out_text = out.display().to_string();
    let problem = "--classes 1000 --per-class 1000 --dim 1000 --lambda-w 5e-4 --lambda-h 5e-4 --lambda-b 5e-4";
    let cases = [
        format!("ufm --loss ce {problem}"),
        format!("landscape --loss ce {problem}"),
        format!("train --data synthetic:K=3,d=4,n=10 --width 1e6 --out {out_text}"),
    ];
    for case in &cases {
        // 2 GiB of address space: the requests above would need far more.
        let (code, stderr) = nclab_under_ulimit(2 << 20, case);
        assert_eq!(code, Some(2), "{case}: {stderr}");
        assert!(
            stderr.contains("above the memory limit"),
            "{case}: {stderr}"
        );
    }
    assert!(!out.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
