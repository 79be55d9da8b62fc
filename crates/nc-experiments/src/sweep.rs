//! A sweep: every cell of loss x width x epochs x seed, each an ordinary run directory with
//! a stable name under the sweep's folder, plus the sweep's own bookkeeping:
//!
//! ```text
//! OUT/{loss}_w{width}_e{epochs}_s{seed}/   one run directory per cell (see crate::run_dir)
//! OUT/.sweep/CELL.failed                   the last attempt at CELL failed (its error)
//! OUT/.sweep/CELL.log                      CELL's output when cells train in parallel
//! ```

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
    /// `epochs` >= 1, no empty list).
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
        for &loss in &self.losses {
            for &width in &self.widths {
                for &epochs in &self.epochs {
                    for &seed in &self.seeds {
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
}
