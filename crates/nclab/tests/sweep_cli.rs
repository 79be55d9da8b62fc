//! `nclab sweep` as a batch system uses it: killed, or run twice over one grid at once.

mod common;
use common::{nclab, scratch_dir};

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Pids of the processes whose command line mentions `needle` (Linux /proc).
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .map(|s| s.contains(") Z"))
            .unwrap_or(true);
        if cmdline.contains(needle) && !zombie {
            pids.push(pid);
        }
    }
    pids
}

fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const SMALL: [&str; 4] = ["--", "--data", "synthetic:K=3,d=4,n=30", "--quiet"];

/// A sweep of one cell that trains for a long time, started in `out`: the process, the
/// cell's run directory and its lock file, once its trainer has started.
#[cfg(target_os = "linux")]
fn start_long_sweep(out: &Path) -> (std::process::Child, std::path::PathBuf, std::path::PathBuf) {
    let mut args = vec![
        "sweep",
        "--losses",
        "ce",
        "--widths",
        "0.5",
        "--epochs",
        "100000",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(SMALL);
    let sweep = Command::new(env!("CARGO_BIN_EXE_nclab"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let run = out.join("ce_w0.5_e100000_s1");
    wait_for("the trainer to start", Duration::from_secs(60), || {
        run.join("config.json").is_file()
    });
    let trainers = processes_mentioning(&run.display().to_string());
    assert!(
        !trainers.is_empty(),
        "no trainer process for {}",
        run.display()
    );
    (sweep, run, out.join(".sweep/ce_w0.5_e100000_s1.lock"))
}

#[cfg(target_os = "linux")]
fn wait_for_trainers_to_end(run: &Path) {
    let run_text = run.display().to_string();
    wait_for(
        "the trainer to die with its sweep",
        Duration::from_secs(20),
        || processes_mentioning(&run_text).is_empty(),
    );
}

#[cfg(target_os = "linux")]
#[test]
fn killing_the_sweep_ends_its_trainers() {
    let out = scratch_dir("sweep-kill");
    let (mut sweep, run, lock) = start_long_sweep(&out);
    sweep.kill().unwrap();
    sweep.wait().unwrap();
    wait_for_trainers_to_end(&run);
    // SIGKILL left the lock behind; the next sweep finds its process gone and takes the
    // cell over (the library tests stale locks).
    assert!(lock.is_file(), "the killed sweep could not remove its lock");
    std::fs::remove_dir_all(&out).unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn a_terminated_sweep_releases_its_locks_and_ends_its_trainers() {
    let out = scratch_dir("sweep-term");
    let (mut sweep, run, lock) = start_long_sweep(&out);
    assert!(lock.is_file());
    let status = Command::new("kill")
        .args(["-TERM", &sweep.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = sweep.wait().unwrap().code();
    assert_eq!(code, Some(128 + 15), "exit status of a SIGTERM-ed sweep");
    assert!(
        !lock.exists(),
        "the lock must be released for the next attempt"
    );
    wait_for_trainers_to_end(&run);
    std::fs::remove_dir_all(&out).unwrap();
}

fn sweep_args(out: &Path) -> Vec<&str> {
    let mut args = vec![
        "sweep",
        "--losses",
        "ce,ls,ce",
        "--epochs",
        "30",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(SMALL);
    args
}

#[test]
fn two_sweeps_over_one_grid_share_the_cells() {
    let out = scratch_dir("sweep-twice");
    let first = Command::new(env!("CARGO_BIN_EXE_nclab"))
        .args(sweep_args(&out))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (code, _, second_err) = nclab(&sweep_args(&out));
    let first = first.wait_with_output().unwrap();
    let first_err = String::from_utf8_lossy(&first.stderr);
    assert_eq!(code, 0, "{second_err}");
    assert!(first.status.success(), "{first_err}");
    for cell in ["ce_w1_e30_s1", "ls_w1_e30_s1"] {
        assert!(out.join(cell).join("summary.json").is_file(), "{cell}");
        assert!(
            !out.join(format!(".sweep/{cell}.failed")).exists(),
            "{cell}"
        );
        assert!(!out.join(format!(".sweep/{cell}.lock")).exists(), "{cell}");
    }
    let both = format!("{first_err}{second_err}");
    assert!(!both.contains("FAILED"), "{both}");
    // `ce` given twice is one cell: two cells in all, each trained once, by one sweep or
    // the other.
    let trained = both.matches(": done").count();
    assert_eq!(trained, 2, "{both}");
    let skipped = both.matches("being trained by").count()
        + both.matches("finished, skipped").count()
        + both.matches("finished meanwhile, skipped").count();
    assert_eq!(skipped, 2, "{both}");
    std::fs::remove_dir_all(&out).unwrap();
}
