//! Multi-step learning-rate schedule.
//!
//! Epochs are numbered from 1 (epoch 0 is the evaluation at initialisation). With milestones
//! `m_1 < m_2 < ...` the learning rate of epoch `t` is
//!
//! `lr(t) = lr0 * factor^{#{ i : m_i < t }}`,
//!
//! so epochs `1..=m` run at the old rate and the decay applies **from epoch `m + 1` on**. This is
//! PyTorch's `MultiStepLR` stepped at the end of every epoch (0-based epoch `e` is decayed once
//! `e >= m`). The official code of the paper steps the scheduler at the start of each epoch,
//! which moves every decay one epoch earlier; we do not copy that.

/// Default milestones of the paper: `int(3/7 E)` and `int(5/7 E)` (integer division; see
/// [`crate::paper::MILESTONE_FRACTIONS`]).
pub fn default_milestones(epochs: usize) -> Vec<usize> {
    crate::paper::milestones(epochs)
}

/// A multi-step schedule `lr0 * factor^{#{m < t}}`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MultiStep {
    pub lr0: f64,
    pub milestones: Vec<usize>,
    pub factor: f64,
}

impl MultiStep {
    /// The paper's schedule: factor [`crate::paper::LR_DECAY`] (0.1) at the given milestones.
    pub fn new(lr0: f64, milestones: Vec<usize>) -> Self {
        MultiStep {
            lr0,
            milestones,
            factor: crate::paper::LR_DECAY,
        }
    }

    /// Learning rate used throughout epoch `epoch` (1-based).
    pub fn lr(&self, epoch: usize) -> f64 {
        let n = self.milestones.iter().filter(|&&m| m < epoch).count() as i32;
        self.lr0 * self.factor.powi(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_milestones_for_100_epochs() {
        assert_eq!(default_milestones(100), vec![42, 71]);
        assert_eq!(default_milestones(7), vec![3, 5]);
        assert_eq!(default_milestones(800), vec![342, 571]);
    }

    #[test]
    fn decay_applies_from_the_epoch_after_the_milestone() {
        let s = MultiStep::new(0.1, default_milestones(100));
        assert_eq!(s.lr(1), 0.1);
        assert_eq!(s.lr(42), 0.1);
        assert!((s.lr(43) - 0.01).abs() < 1e-15);
        assert!((s.lr(71) - 0.01).abs() < 1e-15);
        assert!((s.lr(72) - 0.001).abs() < 1e-15);
        assert!((s.lr(100) - 0.001).abs() < 1e-15);
    }

    /// Replays PyTorch's MultiStepLR (last_epoch counter, step() after each epoch).
    #[test]
    fn matches_pytorch_multistep_stepped_at_epoch_end() {
        let ms = vec![3, 5];
        let s = MultiStep::new(1.0, ms.clone());
        let mut torch_lr = 1.0;
        for e0 in 0..7usize {
            // lr used during 0-based epoch e0
            assert!((s.lr(e0 + 1) - torch_lr).abs() < 1e-15, "epoch {e0}");
            // scheduler.step(): last_epoch = e0 + 1; decays if it is a milestone
            if ms.contains(&(e0 + 1)) {
                torch_lr *= 0.1;
            }
        }
    }
}
