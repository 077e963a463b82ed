"""Pair (binary match / no-match) metrics computed from one sort and cumulative sums.

Every function takes ``y_true`` (N,) 0/1 labels and ``scores`` (N,) real scores where higher means
"more likely a match"; a pair is predicted positive iff ``score >= threshold``. Curves and areas are derived
from a single ``argsort`` with candidate thresholds only at distinct score values, so tied scores are
handled exactly like scikit-learn (which stays the test oracle).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validation import as_binary_labels, as_scores, binary_inputs, check_choice, check_positive_int

__all__ = [
    "UNDEFINED_POLICIES",
    "THRESHOLD_POLICIES",
    "choose_threshold",
    "confusion_counts",
    "pair_metrics",
    "roc_curve_points",
    "pr_curve_points",
    "reliability_curve",
    "expected_calibration_error",
]

UNDEFINED_POLICIES: dict[str, str] = {
    "pair/nan_scores": "NaN scores raise ValueError naming how many; they are never dropped or imputed.",
    "pair/precision": "No predicted positives (TP+FP=0): precision = 0.0 (scikit-learn zero_division=0).",
    "pair/recall": "No positive labels (TP+FN=0): recall = 0.0 (zero_division=0).",
    "pair/specificity": "No negative labels (TN+FP=0): specificity = 0.0 (zero_division=0).",
    "pair/f1": "TP+FP+FN=0: f1 = 0.0 (zero_division=0).",
    "pair/balanced_accuracy": "Mean of recall and specificity over the classes present in y_true "
    "(scikit-learn balanced_accuracy_score); one class present: that class's recall.",
    "pair/mcc": "Any confusion-matrix margin is zero: mcc = 0.0 (scikit-learn matthews_corrcoef).",
    "pair/roc_auc": "Only one class in y_true: roc_auc = NaN. Tied scores count one half (trapezoid rule).",
    "pair/pr_auc": "Average precision (scikit-learn definition: sum over distinct thresholds of "
    "(R_n - R_{n-1}) * P_n). No positive labels: NaN; tied scores form one step.",
    "pair/brier,log_loss": "pair_metrics reports them only when every score lies in [0, 1] (probabilities). "
    "A run's stored pair/brier, pair/log_loss and pair/ece are measured on the probabilities of a calibrator "
    "fitted on val (workbench.metrics.calibration), whatever the head's score scale. log_loss clips "
    "probabilities to [eps, 1-eps] with eps = float64 machine epsilon.",
    "pair/threshold_ties": "choose_threshold considers only distinct score values (plus one value above the "
    "maximum, predicting no positives); among equally good thresholds the highest wins.",
}

THRESHOLD_POLICIES: tuple[str, ...] = ("max_f1", "youden", "target_precision", "target_fpr", "cost")


@dataclass(frozen=True)
class _Curve:
    """Scores sorted once (descending) with confusion counts at each distinct score value."""

    s_desc: np.ndarray  # (N,) scores, descending
    tp_cum: np.ndarray  # (N,) positives among the first i+1 sorted pairs
    thresholds: np.ndarray  # (D,) distinct scores, descending
    tps: np.ndarray  # (D,) true positives when predicting score >= thresholds[d]
    fps: np.ndarray  # (D,) false positives likewise
    n_pos: int
    n_neg: int

    def counts_at(self, threshold: float) -> tuple[int, int]:
        """(TP, FP) when predicting ``score >= threshold``, by binary search."""
        n = self.s_desc.shape[0]
        k = n - int(np.searchsorted(self.s_desc[::-1], threshold, side="left"))
        if k == 0:
            return 0, 0
        tp = int(self.tp_cum[k - 1])
        return tp, k - tp


def _curve(y: np.ndarray, s: np.ndarray) -> _Curve:
    order = np.argsort(s)[::-1]
    s_desc = s[order]
    tp_cum = np.cumsum(y[order], dtype=np.int64)
    n = s_desc.shape[0]
    ends = np.flatnonzero(s_desc[1:] != s_desc[:-1])
    ends = np.append(ends, n - 1)
    tps = tp_cum[ends]
    fps = ends + 1 - tps
    n_pos = int(tp_cum[-1])
    return _Curve(s_desc, tp_cum, s_desc[ends], tps, fps, n_pos, n - n_pos)


def _roc_auc(c: _Curve) -> float:
    if c.n_pos == 0 or c.n_neg == 0:
        return float("nan")
    dfp = np.diff(c.fps, prepend=0)
    tp_prev = np.concatenate(([0], c.tps[:-1]))
    # Exact integer trapezoid sum; ties contribute half through (tp_prev + tp).
    twice_area = int(np.einsum("i,i->", dfp, tp_prev + c.tps))
    return twice_area / (2.0 * c.n_pos * c.n_neg)


def _average_precision(c: _Curve) -> float:
    if c.n_pos == 0:
        return float("nan")
    dtp = np.diff(c.tps, prepend=0)
    hit = dtp > 0
    precision = c.tps[hit] / (c.tps[hit] + c.fps[hit])
    return float(np.einsum("i,i->", dtp[hit], precision) / c.n_pos)


def _safe_div(num: float, den: float) -> float:
    return num / den if den else 0.0


def _threshold_metrics(tp: int, fp: int, n_pos: int, n_neg: int) -> dict[str, float]:
    fn = n_pos - tp
    tn = n_neg - fp
    n = n_pos + n_neg
    recall = _safe_div(tp, tp + fn)
    specificity = _safe_div(tn, tn + fp)
    present = [v for v, count in ((recall, n_pos), (specificity, n_neg)) if count > 0]
    mcc_den = float(tp + fp) * float(tp + fn) * float(tn + fp) * float(tn + fn)
    mcc = (float(tp) * tn - float(fp) * fn) / np.sqrt(mcc_den) if mcc_den > 0 else 0.0
    return {
        "accuracy": (tp + tn) / n,
        "precision": _safe_div(tp, tp + fp),
        "recall": recall,
        "f1": _safe_div(2 * tp, 2 * tp + fp + fn),
        "specificity": specificity,
        "balanced_accuracy": float(np.mean(present)),
        "mcc": float(mcc),
    }


def _check_threshold(threshold: Any) -> float:
    try:
        value = float(threshold)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"threshold={threshold!r} must be a real number") from exc
    if np.isnan(value):
        raise ValueError("threshold=nan is not allowed; pass a real number")
    return value


def confusion_counts(y_true: Any, scores: Any, *, threshold: float) -> dict[str, int]:
    """Confusion-matrix counts ``tp, fp, tn, fn`` when predicting ``scores >= threshold``; inputs (N,)."""
    y, s = binary_inputs(y_true, scores)
    thr = _check_threshold(threshold)
    pred = s >= thr
    pos = y.astype(bool)
    tp = int(np.count_nonzero(pred & pos))
    fp = int(np.count_nonzero(pred)) - tp
    n_pos = int(np.count_nonzero(pos))
    return {"tp": tp, "fp": fp, "tn": y.shape[0] - n_pos - fp, "fn": n_pos - tp}


def pair_metrics(y_true: Any, scores: Any, *, threshold: float) -> dict[str, float]:
    """Threshold and ranking metrics of binary pair scores.

    ``y_true`` (N,) 0/1, ``scores`` (N,). Threshold metrics (accuracy, precision, recall, f1, specificity,
    balanced_accuracy, mcc) use ``score >= threshold``; ``roc_auc`` (area under the ROC curve) and ``pr_auc``
    (average precision, scikit-learn's definition) are threshold-free. ``brier`` (mean squared error of the
    probabilities) and ``log_loss`` (mean negative log-likelihood) are included only when all scores lie in
    [0, 1]. Undefined cases follow ``UNDEFINED_POLICIES``.
    """
    y, s = binary_inputs(y_true, scores)
    thr = _check_threshold(threshold)
    c = _curve(y, s)
    tp, fp = c.counts_at(thr)
    out = _threshold_metrics(tp, fp, c.n_pos, c.n_neg)
    out["roc_auc"] = _roc_auc(c)
    out["pr_auc"] = _average_precision(c)
    if c.s_desc[-1] >= 0.0 and c.s_desc[0] <= 1.0:
        p = s.astype(np.float64, copy=False)
        yf = y.astype(np.float64)
        out["brier"] = float(np.mean((p - yf) ** 2))
        eps = np.finfo(np.float64).eps
        pc = np.clip(p, eps, 1.0 - eps)
        out["log_loss"] = float(-np.mean(np.where(y == 1, np.log(pc), np.log1p(-pc))))
    return out


def choose_threshold(
    y_true: Any,
    scores: Any,
    *,
    policy: str = "max_f1",
    target: float | None = None,
    cost_fp: float = 1.0,
    cost_fn: float = 1.0,
) -> float:
    """Pick a decision threshold (predict positive iff ``score >= threshold``) on (N,) labels and scores.

    Policies: ``max_f1`` (maximise F1), ``youden`` (maximise TPR - FPR), ``target_precision``
    (smallest threshold whose precision >= ``target``), ``target_fpr`` (smallest threshold whose
    FPR <= ``target``), ``cost`` (minimise ``cost_fp * FP + cost_fn * FN``). Candidates are the distinct
    scores plus one value above the maximum (predict nothing positive); among equally good candidates the
    highest threshold wins.
    """
    check_choice("policy", policy, THRESHOLD_POLICIES)
    y, s = binary_inputs(y_true, scores)
    c = _curve(y, s)
    above = np.nextafter(c.thresholds[0], np.inf)
    thr = np.concatenate(([above], c.thresholds))
    tp = np.concatenate(([0], c.tps)).astype(np.float64)
    fp = np.concatenate(([0], c.fps)).astype(np.float64)
    n_pos, n_neg = c.n_pos, c.n_neg

    if policy in ("target_precision", "target_fpr"):
        if target is None or not 0.0 <= float(target) <= 1.0:
            raise ValueError(f"policy={policy!r} needs target in [0, 1]; got target={target!r}")
    if policy in ("max_f1", "youden", "target_precision") and n_pos == 0:
        raise ValueError(f"policy={policy!r} needs at least one positive label; y_true has none")
    if policy in ("youden", "target_fpr") and n_neg == 0:
        raise ValueError(f"policy={policy!r} needs at least one negative label; y_true has none")

    if policy == "max_f1":
        f1 = 2 * tp / (tp + fp + n_pos)
        idx = int(np.argmax(f1))
    elif policy == "youden":
        # Scaled by n_pos * n_neg so equal J values compare exactly (the highest threshold must win ties).
        idx = int(np.argmax(tp * n_neg - fp * n_pos))
    elif policy == "target_precision":
        pred = tp + fp
        precision = np.divide(tp, pred, out=np.zeros_like(tp), where=pred > 0)
        ok = np.flatnonzero(precision >= float(target))  # type: ignore[arg-type]
        if ok.size == 0:
            raise ValueError(
                f"target={target!r}: no threshold reaches that precision; the best achievable is "
                f"{float(precision.max()):.6g}"
            )
        idx = int(ok[-1])
    elif policy == "target_fpr":
        ok = np.flatnonzero(fp / n_neg <= float(target))  # type: ignore[arg-type]
        idx = int(ok[-1])
    else:
        if cost_fp < 0 or cost_fn < 0:
            raise ValueError(f"cost_fp={cost_fp!r}, cost_fn={cost_fn!r} must both be >= 0")
        idx = int(np.argmin(cost_fp * fp + cost_fn * (n_pos - tp)))
    return float(thr[idx])


def _downsample(n: int, max_points: int) -> np.ndarray:
    """Indices of at most ``max_points`` evenly spaced points, always keeping the first and last."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, max_points)).astype(np.int64))


def roc_curve_points(y_true: Any, scores: Any, *, max_points: int = 200) -> dict[str, np.ndarray]:
    """ROC curve: ``fpr``, ``tpr`` and ``thresholds`` arrays (float64, at most ``max_points`` each).

    Starts at (0, 0) with threshold +inf, like scikit-learn's ``roc_curve``; needs both classes.
    """
    max_points = check_positive_int("max_points", max_points, minimum=2)
    y, s = binary_inputs(y_true, scores)
    c = _curve(y, s)
    if c.n_pos == 0 or c.n_neg == 0:
        raise ValueError(f"ROC curve needs both classes; got {c.n_pos} positive(s), {c.n_neg} negative(s)")
    fpr = np.concatenate(([0.0], c.fps / c.n_neg))
    tpr = np.concatenate(([0.0], c.tps / c.n_pos))
    thr = np.concatenate(([np.inf], c.thresholds.astype(np.float64)))
    keep = _downsample(fpr.shape[0], max_points)
    return {"fpr": fpr[keep], "tpr": tpr[keep], "thresholds": thr[keep]}


def pr_curve_points(y_true: Any, scores: Any, *, max_points: int = 200) -> dict[str, np.ndarray]:
    """Precision-recall curve: ``precision``, ``recall``, ``thresholds`` (float64, at most ``max_points``).

    Ordered by decreasing threshold (recall rising from 0, where precision is 1 by convention).
    Needs a positive.
    """
    max_points = check_positive_int("max_points", max_points, minimum=2)
    y, s = binary_inputs(y_true, scores)
    c = _curve(y, s)
    if c.n_pos == 0:
        raise ValueError("precision-recall curve needs at least one positive label; y_true has none")
    precision = np.concatenate(([1.0], c.tps / (c.tps + c.fps)))
    recall = np.concatenate(([0.0], c.tps / c.n_pos))
    thr = np.concatenate(([np.inf], c.thresholds.astype(np.float64)))
    keep = _downsample(precision.shape[0], max_points)
    return {"precision": precision[keep], "recall": recall[keep], "thresholds": thr[keep]}


def _prob_inputs(y_true: Any, probs: Any, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    check_positive_int("n_bins", n_bins)
    y = as_binary_labels(y_true)
    if y.shape[0] == 0:
        raise ValueError("y_true is empty; at least one pair is required")
    p = as_scores(probs, y.shape[0], name="probs").astype(np.float64, copy=False)
    if p.min() < 0.0 or p.max() > 1.0:
        raise ValueError(f"probs must lie in [0, 1]; got range [{p.min():.6g}, {p.max():.6g}]")
    bins = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    return y, p, bins


def reliability_curve(y_true: Any, probs: Any, *, n_bins: int = 10) -> dict[str, np.ndarray]:
    """Reliability diagram on ``n_bins`` equal-width bins of [0, 1]; inputs (N,), probabilities in [0, 1].

    Returns ``bin_edges`` (n_bins+1,), and per bin (n_bins,): ``count``, ``mean_predicted`` and
    ``fraction_positive`` (NaN for empty bins).
    """
    y, p, bins = _prob_inputs(y_true, probs, n_bins)
    count = np.bincount(bins, minlength=n_bins)
    sum_p = np.bincount(bins, weights=p, minlength=n_bins)
    sum_y = np.bincount(bins, weights=y, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(count > 0, sum_p / count, np.nan)
        frac = np.where(count > 0, sum_y / count, np.nan)
    return {
        "bin_edges": np.linspace(0.0, 1.0, n_bins + 1),
        "count": count,
        "mean_predicted": mean_p,
        "fraction_positive": frac,
    }


def expected_calibration_error(y_true: Any, probs: Any, *, n_bins: int = 10) -> float:
    """ECE = sum over bins of (bin count / N) * |fraction positive - mean predicted|; (N,) in [0, 1]."""
    y, p, bins = _prob_inputs(y_true, probs, n_bins)
    sum_p = np.bincount(bins, weights=p, minlength=n_bins)
    sum_y = np.bincount(bins, weights=y, minlength=n_bins)
    return float(np.abs(sum_y - sum_p).sum() / y.shape[0])
