//! One module per subcommand: its clap `Args` and a `run` function.
pub mod analyze;
pub mod compare;
pub mod landscape;
pub mod merge;
pub mod report;
pub mod reproduce;
pub mod sweep;
pub mod train;
pub mod ufm;
