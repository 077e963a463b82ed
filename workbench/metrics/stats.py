"""Uncertainty and significance: group bootstrap CIs, paired bootstrap, clustered McNemar and DeLong, Holm.

Pairs of one product are correlated (same photo, same title), so the product (``groups``) is the unit of
every interval and test here: the bootstraps resample products, and :func:`mcnemar` and :func:`delong_test`
take ``groups`` for their cluster-aware forms (Durkalski et al. 2003; Obuchowski 1997). Pair-level tests on
clustered pairs reject a true null about twice as often as they should.

Resampling scheme (shared by every bootstrap here, so the same seed gives the same resamples): the units
are the sorted unique ``groups`` (``np.unique``), or the rows when ``groups`` is None. Resample r draws
``idx = rng.integers(0, n_units, n_units)`` from ``rng = np.random.default_rng(seed)`` and weights each unit
by ``np.bincount(idx, minlength=n_units)``; every row of a unit drawn w times appears w times. Intervals are
percentile intervals; resamples where a metric is undefined (NaN, e.g. no positives drawn) are left out of
its interval.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from scipy import stats as sps

from ._validation import binary_inputs, check_positive_int
from .classification import pair_metrics

__all__ = [
    "BOOTSTRAP_PAIR_METRICS",
    "bootstrap_ci",
    "bootstrap_pair_metrics",
    "paired_bootstrap",
    "mcnemar",
    "delong_test",
    "holm",
]

BOOTSTRAP_PAIR_METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc")


def _units(groups: Any, n: int) -> tuple[np.ndarray, int]:
    """Unit code of every row (n,) and the number of units."""
    if groups is None:
        return np.arange(n), n
    g = np.asarray(groups)
    if g.ndim != 1 or g.shape[0] != n:
        raise ValueError(f"groups must be 1-D with one entry per row ({n}); got shape {g.shape}")
    if g.dtype.kind == "f":
        missing = np.isnan(g)
    elif g.dtype == object:
        missing = np.frompyfunc(lambda v: v is None or v != v, 1, 1)(g).astype(bool)  # v != v: NaN
    else:
        missing = np.zeros(n, dtype=bool)
    if missing.any():
        raise ValueError(f"groups must name a group for every row; got {int(missing.sum())} missing (None/NaN) "
                         f"id(s), first at row {int(np.argmax(missing))}")
    _, inv = np.unique(g, return_inverse=True)
    inv = inv.ravel()
    return inv, int(inv.max()) + 1 if n else 0


def _resample_counts(n_units: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    for _ in range(n_resamples):
        yield np.bincount(rng.integers(0, n_units, n_units), minlength=n_units)


def _check_alpha(alpha: float) -> float:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha={alpha!r} must lie in (0, 1)")
    return float(alpha)


def _interval(values: np.ndarray, alpha: float) -> tuple[float, float]:
    finite = values[~np.isnan(values)]
    if finite.size == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(finite, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def _as_arrays(arrays: Any) -> tuple[np.ndarray, ...]:
    if isinstance(arrays, np.ndarray):
        arrays = (arrays,)
    out = tuple(np.asarray(a) for a in arrays)
    if not out:
        raise ValueError("arrays must hold at least one array")
    n = out[0].shape[0]
    lengths = [a.shape[0] for a in out]
    if any(length != n for length in lengths) or n == 0:
        raise ValueError(f"arrays must share one non-zero length; got lengths {lengths}")
    return out


def bootstrap_ci(
    metric_fn: Callable[..., float],
    arrays: Any,
    *,
    groups: Any = None,
    n_resamples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Percentile bootstrap CI of ``metric_fn(*arrays)``; arrays share length N; groups (N,) resample whole.

    Returns ``(point, low, high)`` with ``point`` the metric on the full data (scheme: module doc).
    """
    arrs = _as_arrays(arrays)
    n_resamples = check_positive_int("n_resamples", n_resamples)
    alpha = _check_alpha(alpha)
    n = arrs[0].shape[0]
    unit, n_units = _units(groups, n)
    rows_all = np.arange(n)
    values = np.empty(n_resamples)
    for r, counts in enumerate(_resample_counts(n_units, n_resamples, seed)):
        rows = np.repeat(rows_all, counts[unit])
        values[r] = metric_fn(*(a[rows] for a in arrs))
    low, high = _interval(values, alpha)
    return float(metric_fn(*arrs)), low, high


class _WeightedPairs:
    """Scores sorted once; each resample's metrics come from weighted cumulative sums over that order."""

    def __init__(self, y: np.ndarray, s: np.ndarray, unit: np.ndarray, threshold: float) -> None:
        order = np.argsort(s)[::-1]
        is_pos = y[order] == 1
        pos_rows, neg_rows = order[is_pos], order[~is_pos]
        self.g_pos, self.g_neg = unit[pos_rows], unit[neg_rows]
        s_pos_asc, s_neg_asc = s[pos_rows][::-1], s[neg_rows][::-1]
        s_pos = s[pos_rows]
        n_pos, n_neg = pos_rows.shape[0], neg_rows.shape[0]
        # For positive i: how many positives / negatives score >= s_i (and > s_i), as cumsum positions.
        self.pos_ge = n_pos - np.searchsorted(s_pos_asc, s_pos, side="left")
        self.neg_ge = n_neg - np.searchsorted(s_neg_asc, s_pos, side="left")
        neg_gt = n_neg - np.searchsorted(s_neg_asc, s_pos, side="right")
        self.tied = np.flatnonzero(self.neg_ge != neg_gt)
        self.neg_gt_tied = neg_gt[self.tied]
        self.k_pos = n_pos - int(np.searchsorted(s_pos_asc, threshold, side="left"))
        self.k_neg = n_neg - int(np.searchsorted(s_neg_asc, threshold, side="left"))
        self.cp = np.zeros(n_pos + 1)
        self.cn = np.zeros(n_neg + 1)

    def metrics(self, unit_weights: np.ndarray) -> tuple[float, ...]:
        # einsum, not np.dot: BLAS dot threads stall badly on busy machines and are no faster here.
        wp = unit_weights[self.g_pos]
        wn = unit_weights[self.g_neg]
        cp, cn = self.cp, self.cn
        np.cumsum(wp, out=cp[1:])
        np.cumsum(wn, out=cn[1:])
        n_pos, n_neg = cp[-1], cn[-1]
        fp_ge = cn[self.neg_ge]
        tp_ge = cp[self.pos_ge]
        nan = float("nan")
        if n_pos > 0 and n_neg > 0:
            below = n_neg * n_pos - float(np.einsum("i,i->", wp, fp_ge))
            tie_fp = fp_ge[self.tied] - cn[self.neg_gt_tied]
            auc = (below + 0.5 * float(np.einsum("i,i->", wp[self.tied], tie_fp))) / (n_pos * n_neg)
        else:
            auc = nan
        if n_pos > 0:
            ap = float(np.einsum("i,i->", wp, tp_ge / np.maximum(tp_ge + fp_ge, 1.0))) / n_pos
        else:
            ap = nan
        tp, fp = cp[self.k_pos], cn[self.k_neg]
        fn = n_pos - tp
        tn = n_neg - fp
        acc = (tp + tn) / (n_pos + n_neg)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / n_pos if n_pos else 0.0
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
        return acc, precision, recall, f1, auc, ap


def bootstrap_pair_metrics(
    y_true: Any,
    scores: Any,
    *,
    threshold: float,
    groups: Any,
    n_resamples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, tuple[float, float, float]]:
    """Group-bootstrap CIs of accuracy, precision, recall, f1, roc_auc and pr_auc; inputs (N,).

    Equivalent to ``bootstrap_ci(lambda y, s: pair_metrics(y, s, threshold=...)[name], ...)`` with the same
    resamples, but sorts once and evaluates each resample as integer unit weights through weighted cumulative
    sums. ``groups`` (N,) product ids, or None to resample rows. Returns name -> (point, low, high).
    """
    y, s = binary_inputs(y_true, scores)
    n_resamples = check_positive_int("n_resamples", n_resamples)
    alpha = _check_alpha(alpha)
    point = pair_metrics(y, s, threshold=threshold)
    unit, n_units = _units(groups, y.shape[0])
    engine = _WeightedPairs(y, s, unit, float(threshold))
    values = np.empty((n_resamples, len(BOOTSTRAP_PAIR_METRICS)))
    for r, counts in enumerate(_resample_counts(n_units, n_resamples, seed)):
        values[r] = engine.metrics(counts.astype(np.float64))
    out: dict[str, tuple[float, float, float]] = {}
    for j, name in enumerate(BOOTSTRAP_PAIR_METRICS):
        low, high = _interval(values[:, j], alpha)
        out[name] = (float(point[name]), low, high)
    return out


def paired_bootstrap(
    metric_fn: Callable[[np.ndarray, np.ndarray], float],
    y_true: Any,
    scores_a: Any,
    scores_b: Any,
    *,
    groups: Any = None,
    n_resamples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, float]:
    """Paired bootstrap of ``delta = metric_fn(y, scores_a) - metric_fn(y, scores_b)``; inputs (N,).

    Both systems are evaluated on the same resamples. Returns ``delta`` (on the full data), the percentile
    ``ci_low``/``ci_high``, and a two-sided
    ``p_value = min(1, 2 (min(#delta_r <= 0, #delta_r >= 0) + 1) / (R + 1))``.
    """
    y, a, b = _as_arrays((y_true, scores_a, scores_b))
    n_resamples = check_positive_int("n_resamples", n_resamples)
    alpha = _check_alpha(alpha)
    unit, n_units = _units(groups, y.shape[0])
    rows_all = np.arange(y.shape[0])
    deltas = np.empty(n_resamples)
    for r, counts in enumerate(_resample_counts(n_units, n_resamples, seed)):
        rows = np.repeat(rows_all, counts[unit])
        deltas[r] = metric_fn(y[rows], a[rows]) - metric_fn(y[rows], b[rows])
    low, high = _interval(deltas, alpha)
    finite = deltas[~np.isnan(deltas)]
    tail = min(int(np.count_nonzero(finite <= 0)), int(np.count_nonzero(finite >= 0)))
    p_value = min(1.0, 2.0 * (tail + 1) / (finite.size + 1))
    delta = float(metric_fn(y, a) - metric_fn(y, b))
    return {"delta": delta, "ci_low": low, "ci_high": high, "p_value": p_value}


def _sign_flip_p(d: np.ndarray) -> float:
    """Exact two-sided p of T = sum(d) when each integer d_k keeps or flips its sign with probability 1/2.

    P(|T*| >= |T|) over the 2^K sign patterns, by convolving one binomial lattice per distinct |d_k|
    (|d_k| = v occurring c times contributes v * (2 Bin(c, 1/2) - c)); cost O(D^2) for D = sum |d_k|.
    """
    magnitudes, counts = np.unique(np.abs(d[d != 0]), return_counts=True)
    pmf = np.ones(1)
    for v, c in zip(magnitudes.tolist(), counts.tolist(), strict=True):
        lattice = np.zeros(2 * v * c + 1)
        lattice[:: 2 * v] = sps.binom.pmf(np.arange(c + 1), c, 0.5)
        pmf = np.convolve(pmf, lattice)
    half = (pmf.shape[0] - 1) // 2
    return min(1.0, float(pmf[np.abs(np.arange(-half, half + 1)) >= abs(int(d.sum()))].sum()))


def mcnemar(correct_a: Any, correct_b: Any, *, groups: Any = None, exact: bool | None = None) -> dict[str, float]:
    """McNemar's test on paired per-item correctness (N,) bool of two systems, clustered by ``groups``.

    b = items only A gets right, c = items only B gets right. ``groups`` (N,) are product ids: items of one
    product are correlated, so the product is the unit. Per cluster k, d_k = b_k - c_k; under H0 the systems
    are exchangeable within a product, so each d_k is symmetric about 0 and T = sum_k d_k = b - c follows the
    sign-flip distribution over clusters. Exact sign-flip p (statistic = min(b, c)) when ``exact`` or, by
    default, when b + c < 25; else the clustered McNemar of Durkalski et al. (2003, Stat Med 22:2417),
    statistic (|T| - 1)^2 / sum_k d_k^2 against chi-square(1), i.e. the normal approximation of the same
    sign-flip distribution with McNemar's continuity correction (T moves in steps of 2). ``groups=None``
    (every item its own cluster, d_k in {-1, 0, 1}) is the classic test: exact binomial on min(b, c), or
    (|b - c| - 1)^2 / (b + c); one item per group gives the same p-values. b + c = 0 or all d_k = 0 gives
    statistic 0 and p_value 1. Returns ``statistic``, ``p_value``, ``b``, ``c`` and ``n_clusters``.
    """
    ca = np.asarray(correct_a)
    cb = np.asarray(correct_b)
    if ca.ndim != 1 or ca.shape != cb.shape:
        raise ValueError(f"correct_a and correct_b must be 1-D of equal length; got {ca.shape} and {cb.shape}")
    for name, arr in (("correct_a", ca), ("correct_b", cb)):
        if arr.dtype != bool and not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name} must be bool or 0/1; got values {np.unique(arr)[:5].tolist()}")
    if exact not in (None, True, False):
        raise ValueError(f"exact={exact!r} is not supported; allowed: [None, True, False]")
    ca, cb = ca.astype(bool), cb.astype(bool)
    unit, n_clusters = _units(groups, ca.shape[0])
    only_a, only_b = ca & ~cb, ~ca & cb
    b, c = int(np.count_nonzero(only_a)), int(np.count_nonzero(only_b))
    d = np.bincount(unit, only_a, n_clusters).astype(np.int64) - np.bincount(unit, only_b, n_clusters).astype(
        np.int64)
    sum_sq = int(np.sum(d * d))
    use_exact = b + c < 25 if exact is None else exact
    if sum_sq == 0:
        stat, p = 0.0, 1.0
    elif use_exact:
        stat = float(min(b, c))
        p = min(1.0, 2.0 * float(sps.binom.cdf(min(b, c), b + c, 0.5))) if groups is None else _sign_flip_p(d)
    else:
        stat = (abs(b - c) - 1.0) ** 2 / sum_sq
        p = float(sps.chi2.sf(stat, 1))
    return {"statistic": stat, "p_value": p, "b": b, "c": c, "n_clusters": n_clusters}


def _auc_components(x: np.ndarray, z: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC of positives x (M,) over negatives z (N,) and its structural components V10 (M,), V01 (N,).

    Half-integer counts (below + half of the ties) from two sorted searches: the midrank differences of
    Sun & Xu (2014) without ranking the data three times.
    """
    m, n = x.shape[0], z.shape[0]
    z_sorted, x_sorted = np.sort(z), np.sort(x)
    neg_below = (np.searchsorted(z_sorted, x, "left") + np.searchsorted(z_sorted, x, "right")) / 2
    pos_below = (np.searchsorted(x_sorted, z, "left") + np.searchsorted(x_sorted, z, "right")) / 2
    return float(neg_below.sum() / (m * n)), neg_below / n, 1.0 - pos_below / m


def delong_test(y_true: Any, scores_a: Any, scores_b: Any, *, groups: Any = None) -> dict[str, float]:
    """Paired comparison of two ROC-AUCs on the same (N,) pairs, clustered by ``groups`` (product ids).

    AUC structural components (DeLong et al. 1988; the midrank differences of Sun & Xu 2014): V10 per
    positive, V01 per negative. Pairs of one product are correlated, so the variance is Obuchowski's (1997,
    Biometrics 53:567) nonparametric clustered estimator: with cluster sums V10_k, V01_k, sizes m_k, n_k and
    I10 / I01 / I clusters holding positives / negatives / anything, per system r, s
    S10 = I10/((I10-1) M) sum_k (V10_k^r - m_k A_r)(V10_k^s - m_k A_s), S01 likewise over negatives,
    S11 = I/(I-1) sum_k (V10_k^r - m_k A_r)(V01_k^s - n_k A_s), cov_rs = S10/M + S01/N + (S11_rs + S11_sr)/(MN),
    and z = (A_a - A_b) / sqrt(var_a + var_b - 2 cov_ab). One pair per cluster (or ``groups=None``) makes
    S11 = 0 and S10, S01 DeLong's covariances, i.e. the classic DeLong test. Returns ``auc_a``, ``auc_b``,
    ``delta = auc_a - auc_b``, ``z``, the two-sided normal ``p_value`` and ``n_clusters``. A zero variance
    gives z = 0, p = 1 when delta is 0 (else z = +-inf, p = 0). Needs both classes and two clusters.
    """
    y, sa = binary_inputs(y_true, scores_a)
    _, sb = binary_inputs(y, scores_b)
    unit, n_clusters = _units(groups, y.shape[0])
    pos = y == 1
    m, n = int(pos.sum()), int((~pos).sum())
    if m == 0 or n == 0:
        raise ValueError(f"DeLong needs both classes; got {m} positive(s) and {n} negative(s)")
    if n_clusters < 2:
        raise ValueError(f"a clustered AUC test needs at least 2 groups; got {n_clusters}")
    v10, v01, aucs = [], [], []
    for s in (sa, sb):
        auc, components10, components01 = _auc_components(s[pos], s[~pos])
        aucs.append(auc)
        v10.append(components10)
        v01.append(components01)
    if groups is None:
        s10 = np.cov(np.vstack(v10)) if m > 1 else np.zeros((2, 2))
        s01 = np.cov(np.vstack(v01)) if n > 1 else np.zeros((2, 2))
        cov = s10 / m + s01 / n
    else:
        cov = _clustered_auc_cov(np.vstack(v10), np.vstack(v01), np.asarray(aucs), unit[pos], unit[~pos],
                                 n_clusters)
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    delta = float(aucs[0] - aucs[1])
    if var <= 1e-300:
        z = 0.0 if delta == 0 else float(np.copysign(np.inf, delta))
    else:
        z = delta / np.sqrt(var)
    p = float(2 * sps.norm.sf(abs(z)))
    return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "delta": delta, "z": float(z), "p_value": p,
            "n_clusters": n_clusters}


def _clustered_auc_cov(v10: np.ndarray, v01: np.ndarray, aucs: np.ndarray, unit_pos: np.ndarray,
                       unit_neg: np.ndarray, n_clusters: int) -> np.ndarray:
    """Obuchowski (1997) covariance (R, R) of R AUCs from components v10 (R, M), v01 (R, N) and cluster codes."""
    m, n = v10.shape[1], v01.shape[1]
    m_k = np.bincount(unit_pos, minlength=n_clusters)
    n_k = np.bincount(unit_neg, minlength=n_clusters)
    dev10 = np.vstack([np.bincount(unit_pos, row, n_clusters) for row in v10]) - np.outer(aucs, m_k)
    dev01 = np.vstack([np.bincount(unit_neg, row, n_clusters) for row in v01]) - np.outer(aucs, n_k)
    i10, i01 = int(np.count_nonzero(m_k)), int(np.count_nonzero(n_k))
    # einsum, not BLAS (see _WeightedPairs). One cluster holding every positive (or negative) has deviations of
    # exactly 0: its term is 0, as in DeLong's m = 1 case.
    s10 = np.einsum("rk,sk->rs", dev10, dev10) * (i10 / ((i10 - 1) * m) if i10 > 1 else 0.0)
    s01 = np.einsum("rk,sk->rs", dev01, dev01) * (i01 / ((i01 - 1) * n) if i01 > 1 else 0.0)
    s11 = np.einsum("rk,sk->rs", dev10, dev01) * (n_clusters / (n_clusters - 1))
    return s10 / m + s01 / n + (s11 + s11.T) / (m * n)


def holm(p_values: Any) -> np.ndarray:
    """Holm step-down adjusted p-values (M,), in input order; monotone in sorted order, capped at 1."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p_values must be 1-D; got shape {p.shape}")
    bad = np.isnan(p) | (p < 0) | (p > 1)
    if bad.any():
        raise ValueError(f"p_values must lie in [0, 1]; got {p[bad][:5].tolist()}")
    m = p.shape[0]
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out
