"""Type stubs of nclab._core, the compiled part of nclab (crates/nc-py/src)."""

from typing import Any, Dict, Optional, Tuple

import numpy as np
import numpy.typing as npt

RANK_CUTOFF: float
PARTIAL_STATE_VERSION: int

def metrics(
    features: Any,
    labels: Any,
    weight: Any = None,
    bias: Any = None,
    *,
    num_classes: Optional[int] = None,
    means_from: Any = None,
    convention: str = "nclab",
) -> Dict[str, Any]: ...
def state_info(data: bytes) -> Dict[str, Any]:
    """The metadata of partial-state bytes: format, version, phase, convention (phase 1:
    always "nclab"; phase 2: the canonical text of its convention), num_classes, dim,
    num_samples, and for phase 2 rank, means_sha256, classifier_sha256 and reference_sha256
    (None where absent)."""

class MeanAccumulator:
    """Phase 1 of the engine: per-class counts and feature sums over batches."""

    def __init__(self, num_classes: int, dim: int) -> None: ...
    def add(self, features: Any, labels: Any) -> None:
        """Adds a batch: N x d float32/float64 features (read in place when C-contiguous)
        and N integer labels. The GIL is released while it sums."""
    def merge(self, other: "MeanAccumulator | ScatterAccumulator | bytes") -> None:
        """Adds another shard's sums; refuses another phase, K or d (ValueError)."""
    @property
    def num_classes(self) -> int: ...
    @property
    def dim(self) -> int: ...
    @property
    def num_samples(self) -> int: ...
    def counts(self) -> npt.NDArray[np.uint64]: ...
    def means(self) -> npt.NDArray[np.float64]:
        """The class means (K x d); every class needs a sample."""
    def scatter(
        self,
        weight: Any = None,
        bias: Any = None,
        *,
        means_from: Any = None,
        convention: str = "nclab",
    ) -> "ScatterAccumulator":
        """Phase 2 for these means, with an optional classifier and NCC reference means,
        computing under ``convention`` (the text nclab.metrics takes; ValueError when it
        does not parse)."""
    def to_bytes(self) -> bytes:
        """The partial-state bytes (what pickling emits)."""
    @staticmethod
    def from_bytes(data: bytes) -> "MeanAccumulator": ...
    def __reduce__(self) -> Tuple[Any, Tuple[bytes]]: ...

class ScatterAccumulator:
    """Phase 2 of the engine: the scatter around the phase-1 means and the decisions, over
    the same batches. Made by MeanAccumulator.scatter ("attached": it has its plan), or read
    from bytes / unpickled ("detached": it merges, but cannot add or give a result)."""

    def add(self, features: Any, labels: Any) -> None: ...
    def merge(self, other: "ScatterAccumulator | bytes") -> None:
        """Adds another shard's phase-2 sums; refuses states of another phase, convention,
        K, d, rank, class means, classifier or reference means (ValueError)."""
    def result(self) -> Dict[str, Any]:
        """Every metric under this accumulator's convention, the keys of nclab.metrics."""
    @property
    def num_classes(self) -> int: ...
    @property
    def dim(self) -> int: ...
    @property
    def num_samples(self) -> int: ...
    @property
    def convention(self) -> str:
        """The convention of the sums and of result(), in canonical text form."""
    @property
    def attached(self) -> bool: ...
    def to_bytes(self) -> bytes: ...
    @staticmethod
    def from_bytes(data: bytes) -> "ScatterAccumulator": ...
    def __reduce__(self) -> Tuple[Any, Tuple[bytes]]: ...

def ufm_optimum(
    loss: str, classes: int, per_class: int, dim: int,
    lambda_w: float, lambda_h: float, lambda_b: float,
    *, alpha: float = 0.05, gamma: float = 3.0, rescale: float = 15.0,
) -> Optional[Dict[str, Any]]: ...
def ufm_not_covered_reason(
    loss: str, classes: int, per_class: int, dim: int,
    lambda_w: float, lambda_h: float, lambda_b: float,
    *, alpha: float = 0.05, gamma: float = 3.0, rescale: float = 15.0,
) -> Optional[str]: ...
def ufm_solve(
    loss: str, classes: int, per_class: int, dim: int,
    lambda_w: float, lambda_h: float, lambda_b: float,
    *, alpha: float = 0.05, gamma: float = 3.0, rescale: float = 15.0,
    seed: int = 0, init_scale: float = 0.1, optimizer: str = "lbfgs", tol: float = 1e-10,
    max_iter: int = 10000, lr: float = 0.1, momentum: float = 0.9, memory: int = 10,
    target_gap: Optional[float] = None,
) -> Dict[str, Any]: ...
