//! `nclab merge STATE...`: combines the partial states that `nclab analyze --phase` wrote per
//! shard (or Python's `nclab.MeanAccumulator` / `ScatterAccumulator` pickled): phase-1 states
//! into the merged means state, phase-2 states into the metrics.

use crate::args::{expand_globs, user_error};
use crate::cmd::analyze::{classifier_from, describe_files, print_metrics};
use anyhow::{bail, Result};
use nc_data::features::FeatureKeys;
use nc_data::partial_state::PartialState;
use nc_experiments::partial::{means_part, write_state_file};
use nc_experiments::sharded::{
    finish_scatter, means_of_state_file, merge_state_files, reference_means, Merged,
};
use nc_math::metrics::Classifier;
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(
    after_help = "States merge only when they agree: one phase, K and d, and for phase 2 \
one convention and the same phase-1 means, classifier and NCC reference means (by their \
SHA-256, recorded in each state). See `nclab analyze --help` for the steps. Exit status 2 on \
bad input."
)]
pub struct Args {
    /// Partial-state files (or quoted globs), all of phase 1 or all of phase 2.
    #[arg(required = true, value_name = "STATE")]
    pub states: Vec<PathBuf>,
    /// Phase 1: where the merged means state is written (required). Phase 2: also write the
    /// merged scatter state here (optional).
    #[arg(long, value_name = "STATE")]
    pub out: Option<PathBuf>,
    /// Phase 2: the merged phase-1 state the scatter states were accumulated with.
    #[arg(long, value_name = "STATE")]
    pub means: Option<PathBuf>,
    /// Phase 2: the classifier the scatter states were accumulated with (a shard holding
    /// `weight`/`bias`, or a checkpoint as in `nclab analyze --classifier-from`); required
    /// when they were accumulated with one.
    #[arg(long, value_name = "FILE")]
    pub classifier_from: Option<PathBuf>,
    /// Name of the classifier weight in --classifier-from [default: weight].
    #[arg(long, value_name = "NAME")]
    pub weight_key: Option<String>,
    /// Name of the classifier bias in --classifier-from [default: `X.bias` for a weight
    /// `X.weight`, else `bias`].
    #[arg(long, value_name = "NAME")]
    pub bias_key: Option<String>,
    /// Phase 2: the NCC reference means the states were accumulated with (`--means-from` of
    /// `nclab analyze`: a feature file or a phase-1 state).
    #[arg(long, value_name = "FILE")]
    pub means_from: Option<PathBuf>,
    /// Print the metrics as one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let states = expand_globs(&args.states)?;
    match merge_state_files(&states).map_err(user_error)? {
        Merged::Means(acc) => {
            let Some(out) = &args.out else {
                bail!("merging phase-1 states needs --out STATE, the file the merged means are written to");
            };
            for (flag, given) in [
                ("--means", args.means.is_some()),
                ("--classifier-from", args.classifier_from.is_some()),
                ("--means-from", args.means_from.is_some()),
            ] {
                if given {
                    bail!("{flag} belongs to merging phase-2 states; these are phase-1 states");
                }
            }
            let (rows, k, d) = (acc.rows_seen(), acc.num_classes(), acc.dim());
            write_state_file(out, &PartialState::Means(means_part(&acc))).map_err(user_error)?;
            eprintln!(
                "merged {} phase-1 states: {rows} rows, K = {k}, d = {d} -> {}",
                states.len(),
                out.display()
            );
            Ok(())
        }
        Merged::Scatter { id, state } => {
            let Some(means_path) = &args.means else {
                bail!("merging phase-2 states needs --means STATE, the merged phase-1 state they were accumulated with");
            };
            let means = means_of_state_file(means_path).map_err(user_error)?;
            let classifier = match (&args.classifier_from, &id.classifier_sha256) {
                (None, Some(_)) => bail!(
                    "the phase-2 states were accumulated with a classifier: pass it with --classifier-from (a shard holding it, or the checkpoint)"
                ),
                (Some(path), _) => {
                    let c = classifier_from(path, args.weight_key.as_deref(), args.bias_key.as_deref())?;
                    Some(
                        Classifier::new(c.num_classes, c.dim, c.weight, c.bias)
                            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
                    )
                }
                (None, None) => None,
            };
            let reference = match (&args.means_from, &id.reference_sha256) {
                (None, Some(_)) => bail!(
                    "the phase-2 states were accumulated with NCC reference means (--means-from): pass the same --means-from"
                ),
                (Some(path), _) => Some(
                    reference_means(path, &FeatureKeys::default(), means.num_classes())
                        .map_err(user_error)?,
                ),
                (None, None) => None,
            };
            if let Some(out) = &args.out {
                write_state_file(out, &PartialState::Scatter(id.scatter_part(&state)))
                    .map_err(user_error)?;
            }
            let metrics = finish_scatter(
                &states[0],
                &id,
                state,
                &means,
                classifier.as_ref(),
                reference.as_ref(),
            )
            .map_err(user_error)?;
            print_metrics(
                &describe_files(&states),
                args.means_from.as_deref(),
                &metrics,
                args.json,
            )
        }
    }
}
