"""Shared input validation for the metric functions; errors show the bad value and the allowed set."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> None:
    """Raise ValueError unless ``value`` is one of ``allowed``."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; allowed: {list(allowed)}")


def as_binary_labels(y_true: Any, name: str = "y_true") -> np.ndarray:
    """Return ``y_true`` as a 1-D int8 array of 0/1 labels (bool or 0/1 numbers accepted)."""
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {y.shape}")
    if y.dtype == bool:
        return y.astype(np.int8)
    if not np.issubdtype(y.dtype, np.number):
        raise ValueError(f"{name} must hold 0/1 labels; got dtype {y.dtype}, allowed: bool or numeric 0/1")
    ok = (y == 0) | (y == 1)
    if not ok.all():
        bad = np.unique(y[~ok])[:5]
        raise ValueError(f"{name} must hold only 0/1 labels; got values {bad.tolist()}, allowed: [0, 1]")
    return y.astype(np.int8)


def as_scores(scores: Any, n: int | None = None, name: str = "scores") -> np.ndarray:
    """Return ``scores`` as a 1-D float array; NaN raises ValueError naming how many."""
    s = np.asarray(scores)
    if s.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {s.shape}")
    if not np.issubdtype(s.dtype, np.floating):
        if not np.issubdtype(s.dtype, np.number) or np.issubdtype(s.dtype, np.complexfloating):
            raise ValueError(f"{name} must be real numbers; got dtype {s.dtype}")
        s = s.astype(np.float64)
    if n is not None and s.shape[0] != n:
        raise ValueError(f"{name} has length {s.shape[0]} but y_true has length {n}; they must match")
    n_nan = int(np.count_nonzero(np.isnan(s)))
    if n_nan:
        raise ValueError(f"{name} contains {n_nan} NaN value(s) of {s.shape[0]}; NaN scores are not allowed")
    return s


def binary_inputs(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (labels, scores) pair of equal non-zero length."""
    y = as_binary_labels(y_true)
    if y.shape[0] == 0:
        raise ValueError("y_true is empty; at least one pair is required")
    return y, as_scores(scores, y.shape[0])


def check_ks(ks: Any) -> tuple[int, ...]:
    """Return ``ks`` as a sorted tuple of unique positive ints."""
    try:
        values = [int(k) for k in ks]
    except TypeError as exc:
        raise ValueError(f"ks={ks!r} must be an iterable of positive ints") from exc
    if not values or any(k < 1 for k in values) or any(int(k) != k for k in ks):
        raise ValueError(f"ks={ks!r} must be a non-empty iterable of positive ints (k >= 1)")
    return tuple(sorted(set(values)))


def check_matrix(x: Any, name: str, ndim: int = 2) -> np.ndarray:
    """Return ``x`` as a float array with ``ndim`` dimensions and no NaN."""
    a = np.asarray(x)
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D; got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    n_nan = int(np.count_nonzero(np.isnan(a)))
    if n_nan:
        raise ValueError(f"{name} contains {n_nan} NaN value(s); NaN is not allowed")
    return a


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an int >= {minimum}")
    return int(value)
