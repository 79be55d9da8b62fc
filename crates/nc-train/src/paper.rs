//! The paper's training settings (Zhou et al., NeurIPS 2022, and its official code), defined
//! once: [`crate::TrainConfig::paper`] is built from them and the command line takes its
//! defaults and its help text from them.
use crate::data::Augment;

/// SGD learning rate at the start of training.
pub const LR: f64 = 0.1;
/// SGD momentum (PyTorch semantics, dampening 0).
pub const MOMENTUM: f64 = 0.9;
/// Weight decay on every parameter.
pub const WEIGHT_DECAY: f64 = 5e-4;
/// Global gradient-norm clipping threshold.
pub const CLIP_GRAD_NORM: f64 = 2.0;
/// Training batch size.
pub const BATCH_SIZE: usize = 128;
/// Fraction of each training class held out for validation.
pub const VAL_FRACTION: f64 = 0.1;
/// Seed of every random choice.
pub const SEED: u64 = 1;
/// Batch size of the evaluation passes (changes no number).
pub const EVAL_BATCH_SIZE: usize = 1000;
/// Factor applied to the learning rate at every milestone.
pub const LR_DECAY: f64 = 0.1;
/// Default milestones as fractions `(n, d)` of the epochs E: `int(n E / d)` (integer division).
pub const MILESTONE_FRACTIONS: [(usize, usize); 2] = [(3, 7), (5, 7)];
/// About this many NC evaluations per run by default: every `ceil(E / EVALUATIONS)` epochs.
pub const EVALUATIONS: usize = 100;
/// The CIFAR augmentation: random crop of the image zero-padded by 4 pixels, horizontal flip.
pub const AUGMENT: Augment = Augment {
    crop_padding: 4,
    flip: true,
};

/// The default milestones for `epochs` epochs: `int(3E/7)`, `int(5E/7)`.
pub fn milestones(epochs: usize) -> Vec<usize> {
    MILESTONE_FRACTIONS
        .iter()
        .map(|&(n, d)| n * epochs / d)
        .collect()
}

/// The default NC evaluation interval for `epochs` epochs: `ceil(E / 100)` (at least 1).
pub fn eval_every(epochs: usize) -> usize {
    epochs.div_ceil(EVALUATIONS).max(1)
}

/// The default milestones in words, e.g. `int(3/7 E), int(5/7 E)` with `sep` = ", ".
pub fn milestones_text(sep: &str) -> String {
    MILESTONE_FRACTIONS
        .iter()
        .map(|(n, d)| format!("int({n}/{d} E)"))
        .collect::<Vec<_>>()
        .join(sep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_in_words() {
        assert_eq!(milestones(100), vec![42, 71]);
        assert_eq!(milestones_text(" and "), "int(3/7 E) and int(5/7 E)");
        assert_eq!(eval_every(100), 1);
        assert_eq!(eval_every(400), 4);
        assert_eq!(eval_every(401), 5);
        assert_eq!(eval_every(0), 1);
    }
}
