"""nclab: exact, streaming neural-collapse metrics and the unconstrained feature model.

The Python face of the nclab Rust core (docs/python.md; every formula in docs/metrics.md):

- :func:`metrics` — every NC metric of features held in memory, the same keys and numbers as
  ``nclab analyze --json``.
- :class:`MeanAccumulator` / :class:`ScatterAccumulator` — the engine's two streaming phases
  for data fed in batches: class means over all batches, then the scatter over the same
  batches; shards merge, and pickle as the versioned partial-state bytes.
- :mod:`nclab.ufm` — the UFM's closed-form optimum and solver (``nclab ufm --json``).
- :mod:`nclab.torch` — both passes over a PyTorch model and data loader, per layer.

Computation runs in f64 without the GIL, on all cores. Contiguous float32/float64 features
are read in place; bad input raises ``ValueError`` / ``TypeError`` with the CLI's message.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from . import _core
from . import ufm
from ._core import MeanAccumulator, ScatterAccumulator, state_info

__all__ = [
    "metrics",
    "MeanAccumulator",
    "ScatterAccumulator",
    "state_info",
    "METRIC_KEYS",
    "RANK_CUTOFF",
    "PARTIAL_STATE_VERSION",
]
__version__ = "0.1.0"

#: The keys of the dict :func:`metrics` returns (those of ``nclab analyze --json``).
METRIC_KEYS = (
    "nc1", "nc2", "nc3", "nc4", "bias_relation", "accuracy", "ncc_accuracy",
    "equinorm_w", "equinorm_h", "equiangle_w", "equiangle_h", "nc2_means", "cdnv",
    "num_samples", "num_classes", "dim", "sigma_b_rank", "convention",
    "nc1_trace_ratio", "gnc2_log_h", "gnc2_riesz_h", "gnc2_log_w", "gnc2_riesz_w", "gnc3",
    "gnc2_margin_w",
)  # fmt: skip
#: Relative cutoff on the singular values of the centred class means (docs/metrics.md).
RANK_CUTOFF: float = _core.RANK_CUTOFF
#: The version of the partial-state bytes this build writes and reads.
PARTIAL_STATE_VERSION: int = _core.PARTIAL_STATE_VERSION


def metrics(
    features: Any,
    labels: Any,
    weight: Any = None,
    bias: Any = None,
    *,
    num_classes: Optional[int] = None,
    means_from: Any = None,
    convention: str = "nclab",
) -> Dict[str, Any]:
    """Every neural-collapse metric of docs/metrics.md, as ``nclab analyze --json`` gives it.

    Args:
        features: N x d float32 or float64 (numpy array, torch CPU tensor, anything with
            ``__array__`` or DLPack). C-contiguous data is read in place; other layouts are
            copied once.
        labels: N integer labels 0..K-1 (int8..int64, uint8..uint32).
        weight: optional classifier W (K x d); without it the classifier metrics are None.
        bias: optional classifier bias b (K); b = 0 without it.
        num_classes: K; default the rows of ``weight``, else the largest label + 1.
        means_from: optional K x d reference class means for the nearest-class-centre rule
            (``nc4``, ``ncc_accuracy``), e.g. the training split's for test features.
        convention: the formulas, as ``nclab analyze --convention`` takes them: a preset
            (``nclab``, ``zhou2022``, ``zhu2021``, ``papyan2020``, ``rhubarbwu``,
            ``nctoolbox``), optionally with switches, e.g. ``"zhou2022+nc4=agreement"``
            (docs/metrics.md, "Conventions"). The dict's ``convention`` key records it.

    Returns:
        A dict with the keys :data:`METRIC_KEYS`: ``nc1 = tr(Sigma_W Sigma_B^+)/K`` with an
        SVD rank cutoff of 1e-8 on the centred class means, ``nc2``/``nc3`` with the centred
        classifier, ``nc4`` the fraction where argmax(Wh+b) differs from the nearest class
        mean, ... (None where undefined).

    Raises:
        ValueError: bad shapes or values (NaN, labels out of range, an empty class, ...).
        TypeError: a dtype the engine does not read (integer features, float labels, ...).
    """
    return _core.metrics(
        features,
        labels,
        weight,
        bias,
        num_classes=num_classes,
        means_from=means_from,
        convention=convention,
    )
