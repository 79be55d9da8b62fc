//! Which layers are measured at every evaluation (`nc_layers`, `--nc-layers`).
//!
//! The watchable layers of a backbone are numbered from 1 (see [`ModelSpec::layers`]): the
//! hidden layers of the MLP (after their activation, `hidden1`, `hidden2`, ...), the residual
//! stages of ResNet-18 and of the WRN-50-style net (their outputs, global-average-pooled,
//! `stage1` .. `stage4`). The last one is the penultimate features `h` the classifier sees.
//! At each watched layer the metrics that need no classifier are computed on the training
//! and test splits (`nc_experiments::run_dir::LAYER_METRIC_COLUMNS`).
use std::fmt;

use crate::error::{Result, TrainError};
use crate::model::ModelSpec;
pub use nc_experiments::run_dir::LayerInfo;

/// The layers to watch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum LayerSelection {
    /// The penultimate features only, with no per-layer columns (the behaviour of runs
    /// before layers could be watched).
    #[default]
    Last,
    /// Every watchable layer of the model.
    All,
    /// These layers (1-based, increasing, each once).
    List(Vec<usize>),
}

impl LayerSelection {
    /// `last`, `all` or a comma-separated list of 1-based layer indices (`1,3`). Errors name
    /// the setting `nc_layers`.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        match s {
            "last" => return Ok(LayerSelection::Last),
            "all" => return Ok(LayerSelection::All),
            _ => {}
        }
        let mut list = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            let i: usize = part.parse().map_err(|_| {
                TrainError::setting(
                    "nc_layers",
                    format!(
                        "must be last, all or comma-separated layer numbers (1, 2, ...), got {s:?}"
                    ),
                )
            })?;
            if i == 0 {
                return Err(TrainError::setting(
                    "nc_layers",
                    "numbers layers from 1, got 0",
                ));
            }
            if list.contains(&i) {
                return Err(TrainError::setting(
                    "nc_layers",
                    format!("names layer {i} twice"),
                ));
            }
            list.push(i);
        }
        list.sort_unstable();
        Ok(LayerSelection::List(list))
    }

    /// Whether only the last layer is measured, without per-layer columns.
    pub fn is_last(&self) -> bool {
        *self == LayerSelection::Last
    }

    /// The watched layers of `model` (none for [`LayerSelection::Last`]). A layer number
    /// beyond the model's is a [`TrainError::Setting`] on `nc_layers` naming the range.
    pub fn resolve(&self, model: &ModelSpec) -> Result<Vec<LayerInfo>> {
        let layers = model.layers();
        match self {
            LayerSelection::Last => Ok(vec![]),
            LayerSelection::All => Ok(layers),
            LayerSelection::List(list) => list
                .iter()
                .map(|&i| {
                    layers.get(i.wrapping_sub(1)).cloned().ok_or_else(|| {
                        TrainError::setting(
                            "nc_layers",
                            format!(
                                "names layer {i}, but {} has layers 1..{} ({})",
                                model.describe(),
                                layers.len(),
                                layers
                                    .iter()
                                    .map(|l| l.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        )
                    })
                })
                .collect(),
        }
    }
}

impl fmt::Display for LayerSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayerSelection::Last => f.write_str("last"),
            LayerSelection::All => f.write_str("all"),
            LayerSelection::List(l) => f.write_str(
                &l.iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        }
    }
}

impl serde::Serialize for LayerSelection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for LayerSelection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        LayerSelection::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelKind;

    fn mlp(depth: usize) -> ModelSpec {
        ModelSpec {
            kind: ModelKind::Mlp,
            depth,
            hidden: 8,
            batch_norm: false,
            width: 1.0,
        }
    }

    #[test]
    fn selections_parse_print_and_resolve() {
        assert_eq!(LayerSelection::parse("last").unwrap(), LayerSelection::Last);
        assert_eq!(LayerSelection::parse("all").unwrap(), LayerSelection::All);
        let l = LayerSelection::parse("3, 1").unwrap();
        assert_eq!(l, LayerSelection::List(vec![1, 3]));
        assert_eq!(l.to_string(), "1,3");
        let r = l.resolve(&mlp(3)).unwrap();
        assert_eq!(
            r,
            vec![
                LayerInfo {
                    index: 1,
                    name: "hidden1".into(),
                    dim: 8
                },
                LayerInfo {
                    index: 3,
                    name: "hidden3".into(),
                    dim: 8
                }
            ]
        );
        assert_eq!(LayerSelection::All.resolve(&mlp(2)).unwrap().len(), 2);
        assert!(LayerSelection::Last.resolve(&mlp(2)).unwrap().is_empty());
        let text = serde_json::to_string(&l).unwrap();
        assert_eq!(text, "\"1,3\"");
        assert_eq!(serde_json::from_str::<LayerSelection>(&text).unwrap(), l);
    }

    #[test]
    fn bad_selections_name_the_setting_and_the_range() {
        let msg = |s: &str| match LayerSelection::parse(s).and_then(|l| l.resolve(&mlp(3))) {
            Err(TrainError::Setting { field, msg }) => {
                assert_eq!(field, "nc_layers");
                msg
            }
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(
            msg("4"),
            "names layer 4, but mlp with 3 hidden layers has layers 1..3 (hidden1, hidden2, hidden3)"
        );
        assert_eq!(msg("0"), "numbers layers from 1, got 0");
        assert_eq!(msg("1,1"), "names layer 1 twice");
        assert!(msg("first").starts_with("must be last, all or comma-separated"));
        assert!(msg("").starts_with("must be last, all or comma-separated"));
        assert!(msg("1,,2").starts_with("must be last, all or comma-separated"));
    }
}
