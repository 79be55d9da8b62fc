//! nc-experiments: everything about experiments that needs no deep-learning framework.
//!
//! - [`run_dir`]: the one definition of a training run's directory (what `nclab train`
//!   writes and every reader opens), its metric columns and atomic writes.
//! - [`runs`]: reading run directories back (typed), and scanning a folder of runs.
//! - [`sweep`]: the loss x width x epochs x seed grid, its cells and their state.
//! - [`aggregate`]: what a report shows: cells over seeds, curves, findings, tables.
//! - [`depth`]: neural collapse through depth (runs watching layers) in reports.
//! - [`comparison`]: feature equivalence between runs, per watched layer as well.
//! - [`presets`]: the plans of `nclab reproduce`.
//! - [`stats`]: statistics over seeds (mean, sample std, Welch's t-test).
//! - [`analysis`]: from a feature set in memory to every NC metric.
//! - [`sharded`]: feature files, one or several (shards), to every NC metric, streaming;
//!   the same per shard across processes through partial states.
//! - [`partial`]: partial-state files of the engine's two phases (shared with Python).
//!
//! Nothing here parses command lines, prints or draws: front ends (the `nclab` CLI) do that.

pub mod aggregate;
pub mod analysis;
pub mod comparison;
pub mod depth;
pub mod error;
pub mod partial;
pub mod presets;
pub mod run_dir;
pub mod runs;
pub mod sharded;
pub mod stats;
pub mod sweep;

pub use error::{Error, Result};
