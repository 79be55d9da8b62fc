"""Turning what users pass (numpy arrays of any layout, objects with ``__array__`` or DLPack
such as torch CPU tensors, lists) into the arrays the Rust core reads.

Features stay as they are when they already are a C-contiguous float32/float64 array in
native byte order: the core reads that memory in place, without a copy. Anything else
(Fortran order, strides, big-endian, a read-only torch tensor) is copied once into C order.
Labels become uint32 (N x 4 bytes, small beside the features), weights and means float64.

Messages are the CLI's for the same array in a file (crates/nc-data/src/features.rs), less
the file name: ``array 'labels' has 9 entries, expected 10 (one per row of 'features')``.
"""

from __future__ import annotations

import numpy as np

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_LABEL_MAX = np.iinfo(np.uint32).max


def _shape(shape) -> str:
    """A shape as numpy prints it: (3,), (2, 4)."""
    return str(tuple(int(s) for s in shape))


def to_numpy(x) -> np.ndarray:
    """``x`` as an ndarray, through DLPack where it has it (torch, jax, cupy on the CPU),
    else ``__array__`` / the sequence protocol."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "__dlpack__") and hasattr(np, "from_dlpack"):
        detach = getattr(x, "detach", None)  # a torch tensor that requires grad has no DLPack
        if callable(detach):
            x = detach()
        try:
            return np.from_dlpack(x)
        except (TypeError, RuntimeError, BufferError, ValueError):
            pass  # e.g. a GPU tensor, or a dtype DLPack cannot carry: try __array__ below
    return np.asarray(x)


def features(x, name: str = "features") -> np.ndarray:
    """An N x d float32/float64 array the core can read in place (d >= 1)."""
    a = to_numpy(x)
    if a.dtype.kind != "f" or a.dtype.newbyteorder("=") not in _FLOATS:
        raise TypeError(f"array '{name}' has dtype {a.dtype.name}, expected float32 or float64")
    if a.ndim != 2:
        raise ValueError(
            f"array '{name}' has shape {_shape(a.shape)}, expected 2-D (N samples x d features)"
        )
    if a.shape[1] == 0:
        raise ValueError(
            f"array '{name}' has shape {_shape(a.shape)}: no feature columns (d = 0); "
            "expected N samples x d features with d >= 1"
        )
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    return a


def labels(y, n: int, name: str = "labels", features_name: str = "features") -> np.ndarray:
    """N labels as a contiguous uint32 array; integer dtypes only, values in 0..2^32-1."""
    a = to_numpy(y)
    if a.ndim != 1:
        raise ValueError(
            f"array '{name}' has shape {_shape(a.shape)}, expected 1-D with {n} entries "
            f"(one per row of '{features_name}')"
        )
    if a.shape[0] != n:
        raise ValueError(
            f"array '{name}' has {a.shape[0]} entries, expected {n} "
            f"(one per row of '{features_name}')"
        )
    if a.dtype.kind not in "iu":
        raise TypeError(
            f"array '{name}' has dtype {a.dtype.name}, expected an integer dtype for class labels "
            "(int32, int64, uint8, uint16, ...)"
        )
    if a.size:
        if a.dtype.kind == "i":
            negative = np.flatnonzero(a < 0)
            if negative.size:
                i = int(negative[0])
                raise ValueError(
                    f"array '{name}' has a negative value {int(a[i])} at index {i}; "
                    "class labels must be >= 0"
                )
        too_large = np.flatnonzero(a > _LABEL_MAX)
        if too_large.size:
            i = int(too_large[0])
            raise ValueError(
                f"array '{name}' has value {int(a[i])} at index {i}, larger than the largest "
                f"supported class labels {_LABEL_MAX}"
            )
    return np.ascontiguousarray(a, dtype=np.uint32)


def floats(x, name: str, shape: tuple, expected: str) -> np.ndarray:
    """A float array of exactly ``shape`` (None = any length) as contiguous float64."""
    a = to_numpy(x)
    if a.dtype.kind != "f":
        raise TypeError(f"array '{name}' has dtype {a.dtype.name}, expected float32 or float64")
    if a.ndim != len(shape) or any(s is not None and s != t for s, t in zip(shape, a.shape)):
        raise ValueError(f"array '{name}' has shape {_shape(a.shape)}, expected {expected}")
    return np.ascontiguousarray(a, dtype=np.float64)


def classifier(weight, bias, dim: int, features_name: str = "features"):
    """(W as K x d float64, b as K float64 or None), checked like the CLI checks a file's."""
    if weight is None:
        if bias is not None:
            raise ValueError(
                "array 'weight' (the classifier weight) is missing, but a bias was given, "
                "which needs its weight"
            )
        return None, None
    w = floats(
        weight,
        "weight",
        (None, dim),
        f"2-D (K classes x d) with d = {dim} columns to match '{features_name}'",
    )
    if bias is None:
        return w, None
    k = w.shape[0]
    b = floats(bias, "bias", (k,), f"1-D with {k} entries (one per row of 'weight')")
    return w, b


def num_classes(labels_u32: np.ndarray, weight, given) -> int:
    """K: ``given``, else the rows of the classifier, else the largest label + 1; refused
    when it exceeds the number of samples (every class needs one), as the CLI does (its
    message says "the file holds" where this one says "the features hold")."""
    n = labels_u32.shape[0]
    if given is not None:
        k = int(given)
        if k != given or k < 0:
            raise ValueError(f"num_classes must be a non-negative integer, got {given!r}")
        source = "num_classes asks for"
    elif weight is not None:
        k = weight.shape[0]
        source = "the classifier has"
    elif n == 0:
        raise ValueError("the features hold no samples")
    else:
        k = int(labels_u32.max()) + 1
        source = f"the largest label, {k - 1}, asks for"
    if k > n:
        raise ValueError(
            f"{source} {k} classes, but the features hold only {n} samples "
            "(every class needs at least one)"
        )
    return k
