//! A sweep: every cell of loss x width x epochs x seed, each an ordinary run directory with
//! a stable name under the sweep's folder, plus the sweep's own bookkeeping:
//!
//! ```text
//! OUT/{loss}_w{width}_e{epochs}_s{seed}/   one run directory per cell (see crate::run_dir)
//! OUT/.sweep/CELL.failed                   the last attempt at CELL failed (its error)
//! OUT/.sweep/CELL.log                      CELL's output when cells train in parallel
//! OUT/.sweep/CELL.lock                     held while a process trains CELL: "HOST PID"
//! ```
//!
//! The lock file is created with `O_CREAT | O_EXCL`, which network file systems (NFS v3 and
//! later, Lustre, GPFS) honour, so two processes on any hosts never train one cell at once.
//! A lock whose process is gone on this host is stale and taken over; a lock held from
//! another host is never taken over (this host cannot tell whether that process lives):
//! when that host died, remove the file by hand.

use crate::error::{Error, Result};
use crate::run_dir::RunDir;
use nc_math::loss::LossKind;
use std::path::PathBuf;

/// The grid: cells are ordered loss, then width, then epochs, then seed (seed fastest).
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub losses: Vec<LossKind>,
    pub widths: Vec<f64>,
    pub epochs: Vec<usize>,
    pub seeds: Vec<u64>,
}

/// One cell of the grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub loss: LossKind,
    pub width: f64,
    pub epochs: usize,
    pub seed: u64,
}

impl Cell {
    /// The run directory's name: `{loss}_w{width}_e{epochs}_s{seed}`.
    pub fn name(&self) -> String {
        format!(
            "{}_w{}_e{}_s{}",
            self.loss, self.width, self.epochs, self.seed
        )
    }
}

impl Grid {
    /// The cells in their fixed order, after checking every value (`widths` > 0 and finite,
    /// `epochs` >= 1, no empty list). A value given twice counts once (its first place).
    pub fn cells(&self) -> Result<Vec<Cell>> {
        if let Some(w) = self.widths.iter().find(|w| !(**w > 0.0 && w.is_finite())) {
            return Err(Error::setting(
                "widths",
                format!("{w} is not a positive width multiplier"),
            ));
        }
        if self.epochs.contains(&0) {
            return Err(Error::setting(
                "epochs",
                "every training length must be at least 1",
            ));
        }
        let mut cells = Vec::new();
        for &loss in &distinct(&self.losses, |l| *l) {
            for &width in &distinct(&self.widths, |w| w.to_bits()) {
                for &epochs in &distinct(&self.epochs, |e| *e) {
                    for &seed in &distinct(&self.seeds, |s| *s) {
                        cells.push(Cell {
                            loss,
                            width,
                            epochs,
                            seed,
                        });
                    }
                }
            }
        }
        if cells.is_empty() {
            return Err(Error::setting(
                "grid",
                "the sweep has no cells (every list needs at least one value)",
            ));
        }
        Ok(cells)
    }
}

/// `values` without repeats (as compared by `key`), in the order they first appear.
fn distinct<T: Copy, K: PartialEq>(values: &[T], key: impl Fn(&T) -> K) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for v in values {
        if !out.iter().any(|o| key(o) == key(v)) {
            out.push(*v);
        }
    }
    out
}

/// Where a cell stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellState {
    /// `summary.json` exists.
    Finished,
    /// The last attempt failed (a marker in `OUT/.sweep/`).
    Failed,
    /// Started but not finished: continue it with a resume.
    Interrupted,
    New,
}

/// The folder of a sweep and the paths of its cells.
#[derive(Debug, Clone)]
pub struct SweepDir {
    pub root: PathBuf,
}

impl SweepDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        SweepDir { root: root.into() }
    }

    /// The run directory of `cell`.
    pub fn run_dir(&self, cell: &Cell) -> RunDir {
        RunDir::at(self.root.join(cell.name()))
    }

    /// The sweep's bookkeeping folder, `OUT/.sweep`.
    pub fn bookkeeping(&self) -> PathBuf {
        self.root.join(".sweep")
    }

    /// `OUT/.sweep/CELL.failed`: present while the last attempt at `cell` has failed.
    pub fn failure_marker(&self, cell: &Cell) -> PathBuf {
        self.bookkeeping().join(format!("{}.failed", cell.name()))
    }

    /// `OUT/.sweep/CELL.log`.
    pub fn log(&self, cell: &Cell) -> PathBuf {
        self.bookkeeping().join(format!("{}.log", cell.name()))
    }

    /// `OUT/.sweep/CELL.lock`.
    pub fn lock_path(&self, cell: &Cell) -> PathBuf {
        self.bookkeeping().join(format!("{}.lock", cell.name()))
    }

    /// Takes the lock of `cell` for this process (the bookkeeping folder must exist), or says
    /// who holds it. A stale lock (its process gone, on this host) is taken over.
    pub fn lock(&self, cell: &Cell) -> Result<Lock> {
        let path = self.lock_path(cell);
        let me = LockOwner::this_process();
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    use std::io::Write;
                    file.write_all(format!("{} {}\n", me.host, me.pid).as_bytes())
                        .and_then(|()| file.sync_all())
                        .map_err(|e| Error::io(&path, e))?;
                    held_locks().push(path.clone());
                    return Ok(Lock::Acquired(CellLock { path }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = match std::fs::read_to_string(&path) {
                        Ok(text) => text,
                        // Released between our attempt and the read: try again.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(Error::io(&path, e)),
                    };
                    match LockOwner::parse(&text) {
                        Some(owner) if owner.is_gone() => {
                            // Stale: its process is gone. Whoever removes it first retries.
                            let _ = std::fs::remove_file(&path);
                        }
                        // A lock being written (empty for a moment) or from another host.
                        Some(owner) => return Ok(Lock::Held(owner)),
                        None => {
                            return Ok(Lock::Held(LockOwner {
                                host: text.trim().to_string(),
                                pid: 0,
                            }))
                        }
                    }
                }
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        Err(Error::invalid(
            &path,
            "the lock file keeps reappearing; is another sweep starting this cell?",
        ))
    }

    /// Where `cell` stands, from its files.
    pub fn state(&self, cell: &Cell) -> CellState {
        let run = self.run_dir(cell);
        if run.summary().is_file() {
            CellState::Finished
        } else if self.failure_marker(cell).is_file() {
            CellState::Failed
        } else if run.config().is_file() {
            CellState::Interrupted
        } else {
            CellState::New
        }
    }

    /// Records that the attempt at `cell` failed with `message`.
    pub fn mark_failed(&self, cell: &Cell, message: &str) -> Result<()> {
        crate::run_dir::write_atomic(&self.failure_marker(cell), message.as_bytes())
    }

    /// Clears the failure marker of `cell` (it is absent when none was left).
    pub fn clear_failed(&self, cell: &Cell) -> Result<()> {
        let marker = self.failure_marker(cell);
        match std::fs::remove_file(&marker) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(marker, e)),
            _ => Ok(()),
        }
    }
}

/// The outcome of [`SweepDir::lock`].
#[derive(Debug)]
pub enum Lock {
    /// This process holds the lock until the guard is dropped.
    Acquired(CellLock),
    /// Another live process (or one on another host) holds it.
    Held(LockOwner),
}

/// A held cell lock; dropping it removes the lock file.
#[derive(Debug)]
pub struct CellLock {
    path: PathBuf,
}

impl Drop for CellLock {
    fn drop(&mut self) {
        let mut held = held_locks();
        held.retain(|p| p != &self.path);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The lock files this process holds, so that a front end stopped by a signal can release
/// them before it exits ([`release_held_locks`]).
fn held_locks() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    static HELD: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes every cell lock this process holds (for a front end about to exit on SIGTERM,
/// e.g. a batch system's time limit: the cell is then free for the next attempt, on any
/// host). Returns how many were released.
pub fn release_held_locks() -> usize {
    let mut held = held_locks();
    let count = held.len();
    for path in held.drain(..) {
        let _ = std::fs::remove_file(path);
    }
    count
}

/// Who holds a lock: host name and process id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockOwner {
    pub host: String,
    pub pid: u32,
}

impl std::fmt::Display for LockOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "process {} on {}", self.pid, self.host)
    }
}

impl LockOwner {
    fn this_process() -> Self {
        LockOwner {
            host: host_name(),
            pid: std::process::id(),
        }
    }

    fn parse(text: &str) -> Option<Self> {
        let (host, pid) = text.trim().rsplit_once(' ')?;
        Some(LockOwner {
            host: host.to_string(),
            pid: pid.parse().ok()?,
        })
    }

    /// True only when the owner is on this host and its process no longer exists.
    fn is_gone(&self) -> bool {
        self.host == host_name() && !nc_data::io::process_exists(self.pid)
    }
}

/// This machine's name (the kernel's, as `hostname` prints it).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(losses: &[LossKind], widths: &[f64], epochs: &[usize], seeds: &[u64]) -> Grid {
        Grid {
            losses: losses.to_vec(),
            widths: widths.to_vec(),
            epochs: epochs.to_vec(),
            seeds: seeds.to_vec(),
        }
    }

    #[test]
    fn cells_are_ordered_with_seed_fastest_and_named_stably() {
        let cells = grid(&[LossKind::Ce, LossKind::Mse], &[0.5, 1.0], &[10], &[1, 2])
            .cells()
            .unwrap();
        let names: Vec<String> = cells.iter().map(Cell::name).collect();
        assert_eq!(
            names,
            [
                "ce_w0.5_e10_s1",
                "ce_w0.5_e10_s2",
                "ce_w1_e10_s1",
                "ce_w1_e10_s2",
                "mse_w0.5_e10_s1",
                "mse_w0.5_e10_s2",
                "mse_w1_e10_s1",
                "mse_w1_e10_s2"
            ]
        );
    }

    #[test]
    fn bad_values_are_rejected_with_the_field_named() {
        let field = |g: Grid| match g.cells() {
            Err(Error::Setting { field, .. }) => field,
            other => panic!("expected a setting error, got {other:?}"),
        };
        assert_eq!(field(grid(&[LossKind::Ce], &[0.0], &[1], &[1])), "widths");
        assert_eq!(
            field(grid(&[LossKind::Ce], &[f64::NAN], &[1], &[1])),
            "widths"
        );
        assert_eq!(field(grid(&[LossKind::Ce], &[1.0], &[0], &[1])), "epochs");
        assert_eq!(field(grid(&[], &[1.0], &[1], &[1])), "grid");
        assert_eq!(field(grid(&[LossKind::Ce], &[1.0], &[1], &[])), "grid");
    }

    #[test]
    fn state_follows_the_files() {
        let out = std::env::temp_dir().join(format!("nclab-sweep-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let sweep = SweepDir::new(&out);
        let cell = Cell {
            loss: LossKind::Ce,
            width: 1.0,
            epochs: 2,
            seed: 1,
        };
        assert_eq!(sweep.state(&cell), CellState::New);
        let run = sweep.run_dir(&cell);
        std::fs::create_dir_all(&run.root).unwrap();
        std::fs::write(run.config(), "{}").unwrap();
        assert_eq!(sweep.state(&cell), CellState::Interrupted);
        std::fs::create_dir_all(sweep.bookkeeping()).unwrap();
        sweep.mark_failed(&cell, "boom").unwrap();
        assert_eq!(sweep.state(&cell), CellState::Failed);
        sweep.clear_failed(&cell).unwrap();
        assert_eq!(sweep.state(&cell), CellState::Interrupted);
        sweep.clear_failed(&cell).unwrap();
        sweep.mark_failed(&cell, "boom").unwrap();
        std::fs::write(run.summary(), "{}").unwrap();
        assert_eq!(sweep.state(&cell), CellState::Finished);
        std::fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn repeated_values_count_once() {
        let cells = grid(
            &[LossKind::Ce, LossKind::Ce, LossKind::Ls],
            &[1.0, 0.5, 1.0],
            &[3, 3],
            &[2, 1, 2],
        )
        .cells()
        .unwrap();
        let names: Vec<String> = cells.iter().map(Cell::name).collect();
        assert_eq!(
            names,
            [
                "ce_w1_e3_s2",
                "ce_w1_e3_s1",
                "ce_w0.5_e3_s2",
                "ce_w0.5_e3_s1",
                "ls_w1_e3_s2",
                "ls_w1_e3_s1",
                "ls_w0.5_e3_s2",
                "ls_w0.5_e3_s1"
            ]
        );
    }

    #[test]
    fn a_cell_lock_is_exclusive_released_on_drop_and_stale_when_its_process_is_gone() {
        let out = std::env::temp_dir().join(format!("nclab-sweep-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let sweep = SweepDir::new(&out);
        std::fs::create_dir_all(sweep.bookkeeping()).unwrap();
        let cell = Cell {
            loss: LossKind::Fl,
            width: 1.0,
            epochs: 2,
            seed: 1,
        };
        let Lock::Acquired(guard) = sweep.lock(&cell).unwrap() else {
            panic!("a free cell locks")
        };
        let text = std::fs::read_to_string(sweep.lock_path(&cell)).unwrap();
        assert_eq!(text, format!("{} {}\n", host_name(), std::process::id()));
        match sweep.lock(&cell).unwrap() {
            Lock::Held(owner) => assert_eq!(owner, LockOwner::this_process()),
            Lock::Acquired(_) => panic!("a held lock must not be taken twice"),
        }
        drop(guard);
        assert!(!sweep.lock_path(&cell).exists());

        // The lock of a process that has exited (on this host) is taken over.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        assert!(!nc_data::io::process_exists(dead));
        std::fs::write(sweep.lock_path(&cell), format!("{} {dead}\n", host_name())).unwrap();
        assert!(matches!(sweep.lock(&cell).unwrap(), Lock::Acquired(_)));

        // One from another host is never taken over.
        std::fs::write(sweep.lock_path(&cell), "elsewhere.cluster 1\n").unwrap();
        match sweep.lock(&cell).unwrap() {
            Lock::Held(owner) => assert_eq!(owner.host, "elsewhere.cluster"),
            Lock::Acquired(_) => panic!("another host's lock was taken"),
        }
        assert!(nc_data::io::process_exists(std::process::id()));
        std::fs::remove_dir_all(&out).unwrap();
    }
}
