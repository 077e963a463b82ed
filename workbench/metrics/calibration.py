"""Score calibration: a map fitted on val from any score scale (logits, cosines) to match probabilities.

Heads score on their own scales, so ECE, Brier and the reliability diagram only mean something after a
calibrator fitted on the VAL split turns scores into probabilities; they are then measured on TEST.

- ``platt`` (default): Platt (1999) scaling, ``p = 1 / (1 + exp(-(slope * score + intercept)))``, fitted by
  Newton's method on the cross-entropy with Platt's smoothed targets ``(N+ + 1) / (N+ + 2)`` for matches and
  ``1 / (N- + 2)`` for non-matches; the smoothing keeps the fit finite when val scores separate the classes.
- ``isotonic``: the monotone step function minimising squared error (pool-adjacent-violators; tied scores pooled
  first), predicted by linear interpolation between block ends and clipped outside the fitted range, as
  scikit-learn's ``IsotonicRegression(out_of_bounds="clip")``. Can return exactly 0 or 1.

A calibrator is stored as ``to_dict()`` with the run, so probabilities can be recomputed from stored scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validation import as_binary_labels, as_scores, binary_inputs, check_choice, check_positive_int
from .classification import expected_calibration_error
from .stats import bootstrap_ci

__all__ = [
    "CALIBRATION_METHODS",
    "Calibrator",
    "fit_calibrator",
    "calibrator_from_dict",
    "brier_score_loss",
    "calibration_metrics",
    "bootstrap_calibration_metrics",
]

CALIBRATION_METHODS: tuple[str, ...] = ("platt", "isotonic")
_EPS = np.finfo(np.float64).eps


@dataclass(frozen=True)
class Calibrator:
    """A fitted score → probability map: ``method`` and its parameters (plain floats, JSON-ready)."""

    method: str
    params: dict[str, Any]

    def predict(self, scores: Any) -> np.ndarray:
        """Calibrated match probabilities (N,) in [0, 1] of (N,) scores on the scale the calibrator was fitted on."""
        s = as_scores(scores)
        if self.method == "platt":
            return _sigmoid(self.params["slope"] * s + self.params["intercept"])
        return np.interp(s, np.asarray(self.params["x"], dtype=np.float64),
                         np.asarray(self.params["y"], dtype=np.float64))

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "params": dict(self.params)}


def calibrator_from_dict(payload: dict[str, Any]) -> Calibrator:
    """The inverse of ``Calibrator.to_dict`` (a stored calibrator), validated."""
    method = payload.get("method")
    check_choice("method", method, CALIBRATION_METHODS)
    params = dict(payload.get("params") or {})
    needed = ("slope", "intercept") if method == "platt" else ("x", "y")
    if missing := [k for k in needed if k not in params]:
        raise ValueError(f"a stored {method} calibrator needs params {list(needed)}; missing {missing}")
    return Calibrator(str(method), params)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out = np.empty_like(z, dtype=np.float64)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def _platt(y: np.ndarray, s: np.ndarray, max_iter: int = 100) -> dict[str, float]:
    n_pos = int(y.sum())
    n_neg = y.shape[0] - n_pos
    t = np.where(y == 1, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    mu, sd = float(s.mean()), float(s.std())
    if sd == 0.0:  # constant scores carry no information: the smoothed base rate for every pair
        rate = float(t.mean())
        return {"slope": 0.0, "intercept": float(np.log(rate / (1.0 - rate)))}
    z = (s - mu) / sd  # standardised so one Newton iteration scheme fits every score scale
    x = np.stack([z, np.ones_like(z)], axis=1)

    def loss(w: np.ndarray) -> float:
        f = x @ w
        return float(np.sum(t * np.logaddexp(0.0, -f) + (1.0 - t) * np.logaddexp(0.0, f)))

    w = np.array([0.0, float(np.log(t.mean() / (1.0 - t.mean())))])
    current = loss(w)
    for _ in range(max_iter):
        p = _sigmoid(x @ w)
        grad = x.T @ (p - t)
        hess = (x * (p * (1.0 - p))[:, None]).T @ x + 1e-12 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        size = 1.0
        while size > 1e-10:  # backtracking: Newton steps on the logistic loss can overshoot far from the optimum
            candidate = w - size * step
            new = loss(candidate)
            if new <= current:
                break
            size /= 2
        else:
            break
        converged = current - new <= 1e-12 * max(1.0, abs(current))
        w, current = candidate, new
        if converged or float(np.abs(grad).max()) < 1e-10:
            break
    slope = float(w[0] / sd)
    return {"slope": slope, "intercept": float(w[1] - slope * mu)}


def _isotonic(y: np.ndarray, s: np.ndarray) -> dict[str, list[float]]:
    xs, inverse = np.unique(s, return_inverse=True)
    weight = np.bincount(inverse).astype(np.float64)
    mean = np.bincount(inverse, weights=y.astype(np.float64)) / weight
    # Pool adjacent violators over the distinct scores; blocks hold (mean, weight, first index, last index).
    values: list[float] = []
    weights: list[float] = []
    starts: list[int] = []
    for i in range(xs.shape[0]):
        values.append(float(mean[i]))
        weights.append(float(weight[i]))
        starts.append(i)
        while len(values) > 1 and values[-2] >= values[-1]:
            w = weights[-2] + weights[-1]
            values[-2] = (values[-2] * weights[-2] + values[-1] * weights[-1]) / w
            weights[-2] = w
            del values[-1], weights[-1], starts[-1]
    ends = [*[s_ - 1 for s_ in starts[1:]], xs.shape[0] - 1]
    knots_x: list[float] = []
    knots_y: list[float] = []
    for value, first, last in zip(values, starts, ends, strict=True):
        for idx in dict.fromkeys((first, last)):  # a block's two ends suffice for interpolation
            knots_x.append(float(xs[idx]))
            knots_y.append(value)
    return {"x": knots_x, "y": knots_y}


def fit_calibrator(y_true: Any, scores: Any, *, method: str = "platt") -> Calibrator:
    """Fit a calibrator on (N,) 0/1 labels and (N,) scores of any scale (the VAL split); both classes needed."""
    check_choice("method", method, CALIBRATION_METHODS)
    y, s = binary_inputs(y_true, scores)
    s = s.astype(np.float64, copy=False)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.shape[0]:
        raise ValueError(f"calibration needs both classes; got {n_pos} positive(s) and {y.shape[0] - n_pos} "
                         "negative(s)")
    return Calibrator(method, _platt(y, s) if method == "platt" else _isotonic(y, s))


def _prob_pair(y_true: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    y = as_binary_labels(y_true)
    if y.shape[0] == 0:
        raise ValueError("y_true is empty; at least one pair is required")
    p = as_scores(probs, y.shape[0], name="probs").astype(np.float64, copy=False)
    if p.min() < 0.0 or p.max() > 1.0:
        raise ValueError(f"probs must lie in [0, 1]; got range [{p.min():.6g}, {p.max():.6g}]")
    return y, p


def brier_score_loss(y_true: Any, probs: Any) -> float:
    """Brier score: mean of (probability - label)^2 over (N,) pairs; probabilities in [0, 1]; lower is better."""
    y, p = _prob_pair(y_true, probs)
    return float(np.mean((p - y) ** 2))


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    pc = np.clip(p, _EPS, 1.0 - _EPS)
    return float(-np.mean(np.where(y == 1, np.log(pc), np.log1p(-pc))))


def calibration_metrics(y_true: Any, probs: Any, *, n_bins: int = 10) -> dict[str, float]:
    """``ece`` (equal-width bins), ``brier`` and ``log_loss`` (probabilities clipped to [eps, 1-eps]); (N,) inputs."""
    y, p = _prob_pair(y_true, probs)
    return {"ece": expected_calibration_error(y, p, n_bins=n_bins), "brier": brier_score_loss(y, p),
            "log_loss": _log_loss(y, p)}


def bootstrap_calibration_metrics(
    y_true: Any,
    probs: Any,
    *,
    groups: Any,
    n_bins: int = 10,
    n_resamples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, tuple[float, float, float]]:
    """Group-bootstrap CIs of ``calibration_metrics``: name -> (point, low, high); inputs (N,), groups (N,).

    Each unit (group) is first reduced to per-bin sums, so a resample costs O(units × bins) whatever N; the
    resamples are those of ``workbench.metrics.stats`` for the same groups and seed.
    """
    y, p = _prob_pair(y_true, probs)
    n_bins = check_positive_int("n_bins", n_bins)
    g = np.asarray(groups)
    if g.ndim != 1 or g.shape[0] != y.shape[0]:
        raise ValueError(f"groups must be 1-D with one entry per pair ({y.shape[0]}); got shape {g.shape}")
    _, unit = np.unique(g, return_inverse=True)
    unit = unit.ravel()
    n_units = int(unit.max()) + 1
    cell = unit * n_bins + np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    size = n_units * n_bins

    def per_unit(weights: np.ndarray) -> np.ndarray:
        return np.bincount(cell, weights=weights, minlength=size).reshape(n_units, n_bins)

    yf = y.astype(np.float64)
    pc = np.clip(p, _EPS, 1.0 - _EPS)
    sum_p, sum_y = per_unit(p), per_unit(yf)
    sq = np.bincount(unit, weights=(p - yf) ** 2, minlength=n_units)
    nll = np.bincount(unit, weights=-np.where(y == 1, np.log(pc), np.log1p(-pc)), minlength=n_units)
    count = np.bincount(unit, minlength=n_units).astype(np.float64)
    functions = {
        "ece": lambda sp, sy, c: float(np.abs(sy.sum(axis=0) - sp.sum(axis=0)).sum() / c.sum()),
        "brier": lambda e, c: float(e.sum() / c.sum()),
        "log_loss": lambda e, c: float(e.sum() / c.sum()),
    }
    arrays = {"ece": (sum_p, sum_y, count), "brier": (sq, count), "log_loss": (nll, count)}
    point = calibration_metrics(y, p, n_bins=n_bins)
    out = {}
    for name, fn in functions.items():
        _, low, high = bootstrap_ci(fn, arrays[name], n_resamples=n_resamples, alpha=alpha, seed=seed)
        out[name] = (point[name], low, high)
    return out
