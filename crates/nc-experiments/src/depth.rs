//! Neural collapse through depth in reports: the per-layer columns that runs watching layers
//! (`nclab train --nc-layers`) record, `<split>_layer<i>_<metric>` (docs/train.md), as
//! profiles over the layers at chosen epochs and as tables.

use crate::aggregate::{num, LossRuns, Setting};
use crate::run_dir::{layer_column, LayerInfo};
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// The per-layer metrics a report draws: (column suffix, label).
pub const DEPTH_CURVES: [(&str, &str); 2] = [("nc1", "NC1"), ("ncc_accuracy", "NCC accuracy")];

/// How many epochs a layer profile shows at most (the last one and evenly spaced earlier ones).
pub const PROFILE_EPOCHS: usize = 4;

impl Setting {
    /// The layers its runs watched (those of its first run: runs are grouped into one
    /// setting only when their configs, the watched layers included, agree).
    pub fn layers(&self) -> &[LayerInfo] {
        self.losses
            .iter()
            .flat_map(|l| l.runs.first())
            .map(|r| &r.layers[..])
            .next()
            .unwrap_or(&[])
    }

    /// The epochs at which any of its runs recorded depth metrics, in increasing order.
    pub fn depth_epochs(&self) -> Vec<u64> {
        let Some(first) = self.layers().first() else {
            return vec![];
        };
        let key = layer_column("train", first.index, "nc1");
        let epochs: BTreeSet<u64> = self
            .losses
            .iter()
            .flat_map(|l| &l.runs)
            .flat_map(|r| &r.rows)
            .filter(|row| row.contains_key(&key))
            .filter_map(|row| row.get("epoch").map(|&e| e as u64))
            .collect();
        epochs.into_iter().collect()
    }
}

/// The epochs a layer profile is drawn at: the last of `evaluated` and up to
/// [`PROFILE_EPOCHS`] - 1 earlier ones spread evenly over the list (its first included),
/// in increasing order, each once.
pub fn profile_epochs(evaluated: &[u64]) -> Vec<u64> {
    let n = evaluated.len();
    if n <= PROFILE_EPOCHS {
        return evaluated.to_vec();
    }
    let last = PROFILE_EPOCHS - 1;
    let picked: BTreeSet<u64> = (0..=last)
        .map(|j| evaluated[(j * (n - 1) + last / 2) / last])
        .collect();
    picked.into_iter().collect()
}

impl LossRuns {
    /// Mean over seeds of `<split>_layer<i>_<metric>` at `epoch`, one point (layer index,
    /// mean) per layer that some seed recorded.
    pub fn layer_profile(
        &self,
        layers: &[LayerInfo],
        split: &str,
        metric: &str,
        epoch: u64,
    ) -> Vec<(f64, f64)> {
        layers
            .iter()
            .filter_map(|l| {
                let key = layer_column(split, l.index, metric);
                let values: Vec<f64> = self
                    .runs
                    .iter()
                    .flat_map(|r| &r.rows)
                    .filter(|row| row.get("epoch").map(|&e| e as u64) == Some(epoch))
                    .filter_map(|row| row.get(&key).copied())
                    .collect();
                (!values.is_empty()).then(|| {
                    (
                        l.index as f64,
                        values.iter().sum::<f64>() / values.len() as f64,
                    )
                })
            })
            .collect()
    }
}

/// The Markdown tables of a setting's depth metrics: every layer's NC1 and NCC accuracy on
/// both splits at the last evaluated epoch (means over seeds), then the training NC1 of
/// every layer at the profile epochs. Empty when its runs watched no layers.
pub fn depth_tables_markdown(setting: &Setting) -> String {
    let layers = setting.layers();
    let epochs = setting.depth_epochs();
    let Some(&last) = epochs.last() else {
        return String::new();
    };
    let mut md = format!(
        "Through depth, epoch {last} (means over seeds; layer 1 is nearest the input):\n\n\
         | loss | layer | train NC1 | test NC1 | train NCC acc | test NCC acc |\n|---|---|---|---|---|---|\n"
    );
    for l in &setting.losses {
        let value = |split: &str, metric: &str| -> Vec<Option<f64>> {
            let profile = l.layer_profile(layers, split, metric, last);
            layers
                .iter()
                .map(|layer| {
                    profile
                        .iter()
                        .find(|p| p.0 == layer.index as f64)
                        .map(|p| p.1)
                })
                .collect()
        };
        let columns = [
            value("train", "nc1"),
            value("test", "nc1"),
            value("train", "ncc_accuracy"),
            value("test", "ncc_accuracy"),
        ];
        for (row, layer) in layers.iter().enumerate() {
            let _ = write!(md, "| {} | {} ({}) |", l.loss, layer.index, layer.name);
            for column in &columns {
                let _ = write!(md, " {} |", num(column[row]));
            }
            md.push('\n');
        }
    }
    md.push_str("\nTraining NC1 by layer over training:\n\n| loss | epoch |");
    for layer in layers {
        let _ = write!(md, " {} |", layer.name);
    }
    md.push_str("\n|---|---|");
    md.push_str(&"---|".repeat(layers.len()));
    md.push('\n');
    for l in &setting.losses {
        for epoch in profile_epochs(&epochs) {
            let profile = l.layer_profile(layers, "train", "nc1", epoch);
            let _ = write!(md, "| {} | {epoch} |", l.loss);
            for layer in layers {
                let v = profile.iter().find(|p| p.0 == layer.index as f64);
                let _ = write!(md, " {} |", num(v.map(|p| p.1)));
            }
            md.push('\n');
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::Run;
    use nc_math::loss::{Loss, LossKind};
    use std::collections::BTreeMap;

    fn layer(index: usize) -> LayerInfo {
        LayerInfo {
            index,
            name: format!("hidden{index}"),
            dim: 4,
        }
    }

    fn run(seed: u64, rows: Vec<BTreeMap<String, f64>>) -> Run {
        Run {
            dir: format!("runs/ce_s{seed}").into(),
            loss: Loss::CrossEntropy,
            width: 1.0,
            epochs: 10,
            seed,
            fixed_settings: serde_json::Value::Null,
            rows,
            summary: None,
            layers: vec![layer(1), layer(2)],
        }
    }

    fn row(epoch: u64, values: &[(&str, f64)]) -> BTreeMap<String, f64> {
        let mut row: BTreeMap<String, f64> =
            values.iter().map(|&(k, v)| (k.to_string(), v)).collect();
        row.insert("epoch".into(), epoch as f64);
        row
    }

    #[test]
    fn profile_epochs_keep_the_first_and_last_and_spread_between() {
        assert_eq!(profile_epochs(&[0, 5, 10]), vec![0, 5, 10]);
        let evaluated: Vec<u64> = (0..=40).map(|e| e * 10).collect();
        assert_eq!(profile_epochs(&evaluated), vec![0, 130, 270, 400]);
        assert_eq!(profile_epochs(&[0, 1, 2, 3, 4]), vec![0, 1, 3, 4]);
        assert_eq!(profile_epochs(&[]), Vec::<u64>::new());
    }

    #[test]
    fn layer_profiles_average_the_seeds_at_one_epoch() {
        let a = run(
            0,
            vec![
                row(0, &[("train_layer1_nc1", 8.0), ("train_layer2_nc1", 6.0)]),
                row(10, &[("train_layer1_nc1", 2.0), ("train_layer2_nc1", 1.0)]),
            ],
        );
        // The second seed recorded no layer-2 value at epoch 10.
        let b = run(
            1,
            vec![
                row(0, &[("train_layer1_nc1", 4.0), ("train_layer2_nc1", 2.0)]),
                row(10, &[("train_layer1_nc1", 4.0)]),
            ],
        );
        let losses = LossRuns {
            loss: LossKind::Ce,
            runs: vec![a, b],
        };
        let layers = [layer(1), layer(2)];
        assert_eq!(
            losses.layer_profile(&layers, "train", "nc1", 0),
            vec![(1.0, 6.0), (2.0, 4.0)]
        );
        assert_eq!(
            losses.layer_profile(&layers, "train", "nc1", 10),
            vec![(1.0, 3.0), (2.0, 1.0)]
        );
        assert!(losses.layer_profile(&layers, "test", "nc1", 10).is_empty());
        let setting = Setting {
            width: 1.0,
            epochs: 10,
            losses: vec![losses],
        };
        assert_eq!(setting.depth_epochs(), vec![0, 10]);
        let md = depth_tables_markdown(&setting);
        assert!(md.contains("Through depth, epoch 10"), "{md}");
        assert!(md.contains("| ce | 1 (hidden1) | 3.0000 | n/a |"), "{md}");
        assert!(md.contains("| ce | 0 | 6.0000 | 4.0000 |"), "{md}");
    }

    #[test]
    fn settings_without_layers_have_no_depth_tables() {
        let mut plain = run(0, vec![row(0, &[("train_nc1", 1.0)])]);
        plain.layers.clear();
        let setting = Setting {
            width: 1.0,
            epochs: 10,
            losses: vec![LossRuns {
                loss: LossKind::Ce,
                runs: vec![plain],
            }],
        };
        assert!(setting.layers().is_empty());
        assert_eq!(depth_tables_markdown(&setting), "");
    }
}
