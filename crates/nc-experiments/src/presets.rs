//! The plans of `nclab reproduce`: each preset spelled out as a sweep grid, the `nclab train`
//! options every cell shares, and the training-set size behind the work estimate.

use crate::error::{Error, Result};
use crate::sweep::{Cell, Grid};
use nc_math::loss::LossKind;
use std::path::Path;

/// A scale at which to run the paper's experiment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    MnistMlp,
    PaperCifar10,
    PaperCifar100,
}

impl Preset {
    /// Every preset, the default first.
    pub const ALL: [Preset; 3] = [
        Preset::MnistMlp,
        Preset::PaperCifar10,
        Preset::PaperCifar100,
    ];

    /// The name a user types: `mnist-mlp`, `paper-cifar10`, `paper-cifar100`.
    pub fn name(self) -> &'static str {
        match self {
            Preset::MnistMlp => "mnist-mlp",
            Preset::PaperCifar10 => "paper-cifar10",
            Preset::PaperCifar100 => "paper-cifar100",
        }
    }

    /// One line on what the preset trains and what it costs.
    pub fn description(self) -> &'static str {
        match self {
            Preset::MnistMlp => "Embedded MNIST-10k, 3-hidden-layer MLP with BatchNorm at widths 0.5 and 1, 400 epochs, 4 losses, 3 seeds: ~10 min on 2 CPU cores.",
            Preset::PaperCifar10 => "The paper's CIFAR-10 grid: WideResNet-50-style, widths 0.25/0.5/1/2, 100/200/400/800 epochs, 3 seeds (GPU).",
            Preset::PaperCifar100 => "The same grid on CIFAR-100.",
        }
    }

    /// Whether its cells are small enough to train one per CPU core at once (else they share
    /// one accelerator, one at a time).
    pub fn cells_fit_one_core(self) -> bool {
        self == Preset::MnistMlp
    }
}

/// A preset spelled out.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub grid: Grid,
    /// Options of `nclab train` every cell shares.
    pub train_args: Vec<String>,
    /// Training samples per epoch (after the validation split), for the work estimate.
    pub train_samples: usize,
    pub batch_size: usize,
}

/// Settings of the default job, chosen so that every loss collapses visibly within the time
/// budget (see the README): BatchNorm MLP with three hidden layers, 142 digits per class, 400
/// epochs. 142 per class leaves 128 per class after the 10% validation split: 1,280
/// training digits, ten full batches of 128. (With 100 per class the last batch of every
/// epoch held 4 samples, whose BatchNorm statistics are so noisy that CE, LS and FL stopped
/// collapsing at NC1 ~ 0.2.) Measured here: two hidden layers, or width 2, or 200 epochs
/// left FL (and at width 2 also CE) short of a tenfold drop of train NC1; three layers at
/// widths 0.5 and 1 for 400 epochs take every loss well past it.
pub const MNIST_PER_CLASS: usize = 142;
pub const MNIST_EPOCHS: usize = 400;
pub const MNIST_DEPTH: usize = 3;
/// Seeds per cell of the default job: the fewest for which a report can test whether a
/// loss differs from CE by more than the seed noise (Welch's t-test needs two per side;
/// three give it two degrees of freedom or more).
pub const MNIST_SEEDS: u64 = 3;

impl Plan {
    /// The plan of `preset`; the paper presets need `data_dir` (the CIFAR binaries).
    pub fn new(preset: Preset, data_dir: Option<&Path>, device: &str) -> Result<Plan> {
        let losses = LossKind::ALL.to_vec();
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Ok(match preset {
            Preset::MnistMlp => {
                let mut train_args = strings(&[
                    "--data",
                    "mnist",
                    "--model",
                    "mlp",
                    "--hidden",
                    "512",
                    "--batch-norm",
                ]);
                train_args.extend([
                    "--depth".into(),
                    MNIST_DEPTH.to_string(),
                    "--per-class".into(),
                    MNIST_PER_CLASS.to_string(),
                    "--save-features".into(),
                    // Every hidden layer, so the report and the comparison show depth.
                    "--nc-layers".into(),
                    "all".into(),
                ]);
                train_args.extend(["--device".into(), device.to_string()]);
                Plan {
                    grid: Grid {
                        losses,
                        widths: vec![0.5, 1.0],
                        epochs: vec![MNIST_EPOCHS],
                        seeds: (1..=MNIST_SEEDS).collect(),
                    },
                    train_args,
                    // round(10%) of each class is held out for validation.
                    train_samples: 10
                        * (MNIST_PER_CLASS - (MNIST_PER_CLASS as f64 * 0.1).round() as usize),
                    batch_size: 128,
                }
            }
            Preset::PaperCifar10 | Preset::PaperCifar100 => {
                let Some(dir) = data_dir else {
                    return Err(Error::setting(
                        "data_dir",
                        format!(
                            "preset {} needs the folder of the CIFAR binary files",
                            preset.name()
                        ),
                    ));
                };
                let kind = if preset == Preset::PaperCifar10 {
                    "cifar10"
                } else {
                    "cifar100"
                };
                let mut train_args = strings(&["--data"]);
                train_args.push(format!("{kind}:{}", dir.display()));
                train_args.extend(strings(&[
                    "--model",
                    "wrn50",
                    "--save-features",
                    "--device",
                ]));
                train_args.push(device.to_string());
                Plan {
                    grid: Grid {
                        losses,
                        widths: vec![0.25, 0.5, 1.0, 2.0],
                        epochs: vec![100, 200, 400, 800],
                        seeds: vec![1, 2, 3],
                    },
                    train_args,
                    train_samples: 45_000,
                    batch_size: 128,
                }
            }
        })
    }

    /// SGD steps over all of `cells`.
    pub fn total_steps(&self, cells: &[Cell]) -> usize {
        cells
            .iter()
            .map(|c| c.epochs * self.train_samples.div_ceil(self.batch_size))
            .sum()
    }

    /// The cells the comparison looks at: every loss at the widest, longest setting, first
    /// seed.
    pub fn comparison_cells<'a>(&self, cells: &'a [Cell]) -> Vec<&'a Cell> {
        let widest = self.grid.widths.iter().copied().fold(f64::MIN, f64::max);
        let longest = self.grid.epochs.iter().copied().max().unwrap_or(0);
        let first_seed = self.grid.seeds.first().copied();
        cells
            .iter()
            .filter(|c| c.width == widest && c.epochs == longest && Some(c.seed) == first_seed)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_plan_is_ten_full_batches_of_digits_per_epoch() {
        let plan = Plan::new(Preset::MnistMlp, None, "cpu").unwrap();
        assert_eq!(plan.train_samples, 1280);
        let cells = plan.grid.cells().unwrap();
        // 4 losses x 2 widths x 3 seeds.
        assert_eq!(cells.len(), 24);
        assert_eq!(plan.total_steps(&cells), 24 * 400 * 10);
        let watches = plan
            .train_args
            .windows(2)
            .any(|w| w == ["--nc-layers", "all"]);
        assert!(
            watches,
            "the default job watches every layer: {:?}",
            plan.train_args
        );
        let compared: Vec<String> = plan
            .comparison_cells(&cells)
            .iter()
            .map(|c| c.name())
            .collect();
        assert_eq!(
            compared,
            [
                "ce_w1_e400_s1",
                "ls_w1_e400_s1",
                "fl_w1_e400_s1",
                "mse_w1_e400_s1"
            ]
        );
    }

    #[test]
    fn paper_presets_need_the_data_folder() {
        for preset in [Preset::PaperCifar10, Preset::PaperCifar100] {
            assert!(matches!(
                Plan::new(preset, None, "cpu"),
                Err(Error::Setting {
                    field: "data_dir",
                    ..
                })
            ));
            let plan = Plan::new(preset, Some(Path::new("/data")), "cuda:0").unwrap();
            assert_eq!(plan.grid.cells().unwrap().len(), 4 * 4 * 4 * 3);
            assert!(plan.train_args.contains(&"cuda:0".to_string()));
        }
    }
}
