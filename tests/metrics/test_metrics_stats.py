from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from workbench.metrics import (
    BOOTSTRAP_PAIR_METRICS,
    bootstrap_ci,
    bootstrap_pair_metrics,
    delong_test,
    holm,
    mcnemar,
    pair_metrics,
    paired_bootstrap,
)


def test_mcnemar_exact_hand_example() -> None:
    # b = 3 (only A right), c = 11 (only B right): p = 2 * P(X <= 3), X ~ Bin(14, 1/2) = 2 * 470 / 16384.
    a = np.array([1] * 3 + [0] * 11 + [1] * 20 + [0] * 5, dtype=bool)
    b = np.array([0] * 3 + [1] * 11 + [1] * 20 + [0] * 5, dtype=bool)
    res = mcnemar(a, b)
    assert (res["b"], res["c"]) == (3, 11)
    assert res["p_value"] == pytest.approx(2 * 470 / 16384, abs=1e-12)
    assert res["p_value"] == pytest.approx(sps.binomtest(3, 14, 0.5).pvalue, abs=1e-12)


def test_mcnemar_chi_square_with_continuity() -> None:
    a = np.array([1] * 30 + [0] * 15 + [1] * 50, dtype=bool)
    b = np.array([0] * 30 + [1] * 15 + [1] * 50, dtype=bool)
    res = mcnemar(a, b)
    assert res["statistic"] == pytest.approx(196 / 45)
    assert res["p_value"] == pytest.approx(sps.chi2.sf(196 / 45, 1))
    forced = mcnemar(a, b, exact=True)
    assert forced["p_value"] == pytest.approx(sps.binomtest(30, 45, 0.5).pvalue)
    assert mcnemar(a, a)["p_value"] == 1.0


def _slow_delong(y: np.ndarray, sa: np.ndarray, sb: np.ndarray) -> tuple[float, float, float]:
    """DeLong et al. (1988) structural components by explicit loops."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    m, n = len(pos), len(neg)

    def psi(x: float, z: float) -> float:
        return 1.0 if x > z else 0.5 if x == z else 0.0

    v10 = np.zeros((2, m))
    v01 = np.zeros((2, n))
    for r, s in enumerate((sa, sb)):
        for i, pi in enumerate(pos):
            v10[r, i] = sum(psi(s[pi], s[nj]) for nj in neg) / n
        for j, nj in enumerate(neg):
            v01[r, j] = sum(psi(s[pi], s[nj]) for pi in pos) / m
    aucs = v10.mean(axis=1)
    s10 = np.cov(v10)
    s01 = np.cov(v01)
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    z = (aucs[0] - aucs[1]) / np.sqrt(var)
    return float(aucs[0]), float(aucs[1]), float(z)


@pytest.mark.parametrize("seed", range(3))
def test_delong_matches_slow_reference_and_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 90)
    sa = np.round(y * 0.8 + rng.normal(size=90), 1)  # ties
    sb = np.round(y * 0.3 + rng.normal(size=90), 1)
    res = delong_test(y, sa, sb)
    auc_a, auc_b, z = _slow_delong(y, sa, sb)
    assert res["auc_a"] == pytest.approx(roc_auc_score(y, sa), abs=1e-12)
    assert res["auc_b"] == pytest.approx(roc_auc_score(y, sb), abs=1e-12)
    assert res["auc_a"] == pytest.approx(auc_a, abs=1e-12)
    assert res["z"] == pytest.approx(z, rel=1e-9)
    assert res["p_value"] == pytest.approx(2 * sps.norm.sf(abs(z)), rel=1e-9)
    same = delong_test(y, sa, sa)
    assert same["delta"] == 0 and same["p_value"] == 1.0


def test_holm_hand_example() -> None:
    # sorted: .005*4 = .02, .01*3 = .03, .03*2 = .06, max(.04*1, .06) = .06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.1, 1.5])


def _slow_bootstrap(y, s, thr, groups, n_resamples, seed, alpha=0.05) -> dict:
    """Reference: the documented resampling scheme, expanded to rows, scored by pair_metrics."""
    units = np.unique(groups, return_inverse=True)[1].ravel() if groups is not None else np.arange(len(y))
    n_units = int(units.max()) + 1
    rng = np.random.default_rng(seed)
    vals = {name: [] for name in BOOTSTRAP_PAIR_METRICS}
    for _ in range(n_resamples):
        counts = np.bincount(rng.integers(0, n_units, n_units), minlength=n_units)
        rows = np.repeat(np.arange(len(y)), counts[units])
        m = pair_metrics(y[rows], s[rows], threshold=thr)
        for name in BOOTSTRAP_PAIR_METRICS:
            vals[name].append(m[name])
    point = pair_metrics(y, s, threshold=thr)
    out = {}
    for name, v in vals.items():
        arr = np.array(v)
        arr = arr[~np.isnan(arr)]
        low, high = np.percentile(arr, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        out[name] = (point[name], low, high)
    return out


@pytest.mark.parametrize("grouped", [True, False])
def test_fast_bootstrap_equals_slow_reference(grouped: bool) -> None:
    rng = np.random.default_rng(11)
    n = 240
    groups = rng.integers(0, 30, n).astype(str) if grouped else None
    y = (rng.random(n) < 0.3).astype(int)
    s = np.round(rng.random(n) + 0.4 * y, 1)  # ties
    fast = bootstrap_pair_metrics(y, s, threshold=0.7, groups=groups, n_resamples=60, seed=3)
    slow = _slow_bootstrap(y, s, 0.7, groups, 60, 3)
    for name in BOOTSTRAP_PAIR_METRICS:
        np.testing.assert_allclose(fast[name], slow[name], rtol=0, atol=1e-9, err_msg=name)
    generic = bootstrap_ci(lambda a, b: roc_auc_score(a, b), (y, s), groups=groups, n_resamples=60, seed=3)
    np.testing.assert_allclose(generic, slow["roc_auc"], atol=1e-9)


def test_bootstrap_ci_coverage_of_the_mean() -> None:
    rng = np.random.default_rng(0)
    covered = 0
    n_sets = 200
    for i in range(n_sets):
        x = rng.normal(loc=1.0, size=60)
        _, low, high = bootstrap_ci(np.mean, (x,), n_resamples=200, seed=i)
        covered += low <= 1.0 <= high
    assert 0.88 <= covered / n_sets <= 0.99


def test_group_bootstrap_is_wider_for_clustered_data() -> None:
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(30), 10)
    x = np.repeat(rng.normal(size=30), 10) + 0.1 * rng.normal(size=300)  # strong within-group correlation
    _, lo_r, hi_r = bootstrap_ci(np.mean, (x,), n_resamples=300)
    _, lo_g, hi_g = bootstrap_ci(np.mean, (x,), groups=groups, n_resamples=300)
    assert hi_g - lo_g > 2 * (hi_r - lo_r)


def test_paired_bootstrap() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 300)
    good = y + rng.normal(scale=0.5, size=300)
    bad = y + rng.normal(scale=3.0, size=300)
    res = paired_bootstrap(roc_auc_score, y, good, bad, n_resamples=300)
    assert res["delta"] == pytest.approx(roc_auc_score(y, good) - roc_auc_score(y, bad))
    assert 0 < res["ci_low"] <= res["delta"] <= res["ci_high"]
    assert res["p_value"] < 0.01
    same = paired_bootstrap(roc_auc_score, y, good, good, n_resamples=50)
    assert same["delta"] == 0 and same["p_value"] == 1.0


def test_bootstrap_validation() -> None:
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci(np.mean, (np.ones(3),), alpha=1.5)
    with pytest.raises(ValueError, match="groups"):
        bootstrap_pair_metrics([0, 1], [0.1, 0.2], threshold=0.5, groups=[1, 2, 3])
