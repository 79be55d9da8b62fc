//! Between the engine's accumulators and the partial-state bytes: the one implementation,
//! shared with `nclab analyze --phase` / `nclab merge`, is nc-experiments' `partial` module.

pub use nc_experiments::partial::{decode_state, from_means_part, means_part, PlanId};
