//! One module per subcommand: its clap `Args` and a `run` function.
pub mod analyze;
pub mod landscape;
pub mod ufm;
