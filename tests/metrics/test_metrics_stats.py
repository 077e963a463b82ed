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


def _exact_mcnemar(b: int, c: int) -> float:
    return min(1.0, 2 * sps.binom.cdf(min(b, c), b + c, 0.5))


def _discordant(per_cluster: list[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(only A right, only B right, both right) counts per cluster -> correct_a, correct_b, groups."""
    a, b, g = [], [], []
    for k, (only_a, only_b, both) in enumerate(per_cluster):
        a += [True] * only_a + [False] * only_b + [True] * both
        b += [False] * only_a + [True] * only_b + [True] * both
        g += [f"p{k}"] * (only_a + only_b + both)
    return np.array(a), np.array(b), np.array(g)


def test_clustered_mcnemar_exact_hand_example() -> None:
    # d_k = b_k - c_k = (2, 1, 1, 0): T = 4; sign flips give T* in {+-4, +-2, +-2, 0, 0, ...}, P(|T*| >= 4) = 2/8.
    # The pair-level test sees b = 4, c = 0: p = 2 / 16. The tied cluster (1, 1) moves neither T nor its law.
    a, b, groups = _discordant([(2, 0, 3), (1, 0, 0), (1, 0, 2), (1, 1, 1)])
    res = mcnemar(a, b, groups=groups)
    assert (res["b"], res["c"], res["n_clusters"]) == (5, 1, 4)
    assert res["p_value"] == pytest.approx(0.25, abs=1e-12)
    assert mcnemar(a, b)["p_value"] == pytest.approx(_exact_mcnemar(5, 1), abs=1e-12)
    assert mcnemar(a, b)["n_clusters"] == len(a)  # no groups: every item is its own cluster


def test_clustered_mcnemar_chi_square_hand_example() -> None:
    # five products with 6 items only A gets right and 2 only B: d_k = 4, T = 20, sum d_k^2 = 80,
    # statistic (20 - 1)^2 / 80 = 4.5125 (pair level: (20 - 1)^2 / 40, twice as large).
    a, b, groups = _discordant([(6, 2, 5)] * 5)
    res = mcnemar(a, b, groups=groups)
    assert res["statistic"] == pytest.approx(361 / 80)
    assert res["p_value"] == pytest.approx(sps.chi2.sf(361 / 80, 1))
    assert mcnemar(a, b)["statistic"] == pytest.approx(361 / 40)
    assert mcnemar(a, b, groups=groups, exact=True)["p_value"] == pytest.approx(2 / 2**5)  # all five flips agree
    assert mcnemar(a, a, groups=groups)["p_value"] == 1.0


def test_clustered_delong_hand_example() -> None:
    # three products, one positive and one negative each; system b ties everything (AUC 1/2, no variance).
    # a: V10 = (2/3, 2/3, 1), V01 = (1, 1/3, 1), AUC 7/9; deviations per product (-1, -1, 2)/9 and (2, -4, 2)/9.
    # S10 = 3/2 * 6/81 / 3, S01 = 3/2 * 24/81 / 3, S11 = 3/2 * 6/81 -> var = 1/81 + 4/81 + 2 * (9/81) / 9 = 7/81;
    # DeLong's pair-level var drops the within-product covariance: 5/81.
    y = np.array([1, 0, 1, 0, 1, 0])
    sa = np.array([3.0, 1.0, 2.0, 4.0, 5.0, 0.0])
    groups = ["p1", "p1", "p2", "p2", "p3", "p3"]
    res = delong_test(y, sa, np.zeros(6), groups=groups)
    assert res["auc_a"] == pytest.approx(7 / 9) and res["auc_b"] == 0.5 and res["n_clusters"] == 3
    assert res["z"] == pytest.approx((7 / 9 - 1 / 2) / np.sqrt(7 / 81), rel=1e-12)
    assert delong_test(y, sa, np.zeros(6))["z"] == pytest.approx((7 / 9 - 1 / 2) / np.sqrt(5 / 81), rel=1e-12)


def _slow_obuchowski(y: np.ndarray, sa: np.ndarray, sb: np.ndarray, groups: np.ndarray) -> float:
    """z of Obuchowski (1997), eqs. for S10, S01, S11 and the covariance of two AUCs, by explicit loops."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    m, n = len(pos), len(neg)
    clusters = sorted(set(groups.tolist()))

    def psi(x: float, z: float) -> float:
        return 1.0 if x > z else 0.5 if x == z else 0.0

    systems = (sa, sb)
    v10 = [{i: sum(psi(s[i], s[j]) for j in neg) / n for i in pos} for s in systems]
    v01 = [{j: sum(psi(s[i], s[j]) for i in pos) / m for j in neg} for s in systems]
    theta = [sum(v.values()) / m for v in v10]
    m_k = {k: sum(groups[i] == k for i in pos) for k in clusters}
    n_k = {k: sum(groups[j] == k for j in neg) for k in clusters}
    dev10 = [{k: sum(v10[r][i] for i in pos if groups[i] == k) - m_k[k] * theta[r] for k in clusters} for r in (0, 1)]
    dev01 = [{k: sum(v01[r][j] for j in neg if groups[j] == k) - n_k[k] * theta[r] for k in clusters} for r in (0, 1)]
    i10 = sum(v > 0 for v in m_k.values())
    i01 = sum(v > 0 for v in n_k.values())
    big_i = len(clusters)

    def cov(r: int, s: int) -> float:
        s10 = i10 / ((i10 - 1) * m) * sum(dev10[r][k] * dev10[s][k] for k in clusters)
        s01 = i01 / ((i01 - 1) * n) * sum(dev01[r][k] * dev01[s][k] for k in clusters)
        s11_rs = big_i / (big_i - 1) * sum(dev10[r][k] * dev01[s][k] for k in clusters)
        s11_sr = big_i / (big_i - 1) * sum(dev10[s][k] * dev01[r][k] for k in clusters)
        return s10 / m + s01 / n + (s11_rs + s11_sr) / (m * n)

    return (theta[0] - theta[1]) / np.sqrt(cov(0, 0) + cov(1, 1) - 2 * cov(0, 1))


@pytest.mark.parametrize("seed", range(3))
def test_clustered_delong_matches_slow_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 120
    groups = rng.integers(0, 35, n)
    y = rng.integers(0, 2, n)
    y[groups == 0], y[groups == 1] = 1, 0  # clusters holding only positives or only negatives
    effect = rng.normal(size=35)[groups]
    sa = np.round(y * 0.8 + effect + rng.normal(size=n), 1)  # ties
    sb = np.round(y * 0.5 + effect + rng.normal(size=n), 1)
    res = delong_test(y, sa, sb, groups=groups)
    assert res["z"] == pytest.approx(_slow_obuchowski(y, sa, sb, groups), rel=1e-9)
    assert res["p_value"] == pytest.approx(2 * sps.norm.sf(abs(res["z"])), rel=1e-12)
    assert res["n_clusters"] == len(np.unique(groups))
    order = rng.permutation(n)  # row order and the spelling of the ids do not matter
    shuffled = delong_test(y[order], sa[order], sb[order], groups=np.char.add("prod-", groups[order].astype(str)))
    assert shuffled["z"] == pytest.approx(res["z"], rel=1e-9)


def test_one_pair_per_group_is_the_classic_test() -> None:
    # One pair per cluster: no cluster holds a positive and a negative, so S11 = 0 and S10, S01 are DeLong's
    # covariances; sign flips of d_k in {-1, 0, 1} are the binomial law of McNemar. Equal up to rounding.
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 200)
    sa = np.round(y + rng.normal(size=200), 1)
    sb = np.round(0.6 * y + rng.normal(size=200), 1)
    singletons = np.arange(200).astype(str)
    assert delong_test(y, sa, sb, groups=singletons)["z"] == pytest.approx(delong_test(y, sa, sb)["z"], rel=1e-12)
    for n_items in (30, 200):  # exact branch (b + c < 25) and chi-square branch
        ca, cb = rng.random(n_items) < 0.7, rng.random(n_items) < 0.6
        for exact in (None, True, False):
            plain = mcnemar(ca, cb, exact=exact)
            grouped = mcnemar(ca, cb, groups=singletons[:n_items], exact=exact)
            assert grouped["p_value"] == pytest.approx(plain["p_value"], rel=1e-12, abs=1e-15)
            assert grouped["statistic"] == pytest.approx(plain["statistic"], rel=1e-12)


def test_copies_within_a_product_add_no_evidence() -> None:
    # Each pair stored three times under its own product: the clustered tests give the p-values of the original
    # pairs; the pair-level tests take the copies for new evidence.
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 80)
    sa, sb = y + rng.normal(size=80), 0.7 * y + rng.normal(size=80)
    ca, cb = rng.random(80) < 0.8, rng.random(80) < 0.7
    groups = np.repeat(np.arange(80), 3)
    y3, sa3, sb3, ca3, cb3 = (np.repeat(v, 3) for v in (y, sa, sb, ca, cb))
    original = delong_test(y, sa, sb)
    assert delong_test(y3, sa3, sb3, groups=groups)["z"] == pytest.approx(original["z"], rel=1e-9)
    assert abs(delong_test(y3, sa3, sb3)["z"]) > 1.5 * abs(original["z"])
    exact = mcnemar(ca3, cb3, groups=groups, exact=True)["p_value"]
    assert exact == pytest.approx(mcnemar(ca, cb, exact=True)["p_value"], rel=1e-9)
    assert mcnemar(ca3, cb3, exact=True)["p_value"] < exact


def test_clustered_test_validation() -> None:
    y, s = np.array([1, 0, 1, 0]), np.array([0.9, 0.1, 0.4, 0.6])
    with pytest.raises(ValueError, match=r"one entry per row \(4\); got shape \(3,\)"):
        delong_test(y, s, s[::-1], groups=["a", "b", "c"])
    with pytest.raises(ValueError, match="1 missing .* first at row 2"):
        mcnemar(y == 1, s > 0.5, groups=np.array(["a", "b", None, "c"], dtype=object))
    with pytest.raises(ValueError, match="2 missing"):
        delong_test(y, s, s[::-1], groups=[1.0, np.nan, 2.0, np.nan])
    with pytest.raises(ValueError, match="at least 2 groups; got 1"):
        delong_test(y, s, s[::-1], groups=["a"] * 4)


def _clustered_null_rates(seed: int, n_sets: int, alpha: float = 0.05) -> dict[str, float]:
    """Rejection rates at ``alpha`` over ``n_sets`` data sets where H0 (equal systems) holds by construction.

    ~520 pairs in 170 products (one positive and 0-6 negatives each). Two exchangeable systems score
    label * 1.5 + a product effect shared by both + a product-and-label effect of each system (sd 1.5, the
    within-product correlation of their differences) + noise; correctness is score >= 0.75. Data drawn at once.
    """
    rng = np.random.default_rng(seed)
    n_products = 170
    sizes = 1 + rng.poisson(2.0, n_products)
    product = np.repeat(np.arange(n_products), sizes)
    y = np.zeros(product.shape[0], dtype=int)
    y[np.cumsum(sizes) - sizes] = 1
    shared = rng.normal(size=(n_sets, n_products))[:, product]
    per_system = rng.normal(scale=1.5, size=(2, n_sets, n_products, 2))[:, :, product, y]
    scores = 1.5 * y + shared + per_system + rng.normal(size=(2, n_sets, product.shape[0]))
    correct = (scores >= 0.75) == y
    p = np.array([[delong_test(y, scores[0, i], scores[1, i], groups=product)["p_value"],
                   mcnemar(correct[0, i], correct[1, i], groups=product)["p_value"],
                   delong_test(y, scores[0, i], scores[1, i])["p_value"],
                   mcnemar(correct[0, i], correct[1, i])["p_value"]] for i in range(n_sets)])
    rates = (p < alpha).mean(axis=0)
    return dict(zip(("delong", "mcnemar", "delong_pairs", "mcnemar_pairs"), rates.tolist(), strict=True))


@pytest.mark.slow
def test_clustered_tests_hold_their_level_under_a_clustered_null() -> None:
    # 3000 sets: the standard error of a rate near 0.05 is 0.004, so [0.03, 0.07] is ~4 SE either side.
    # Seeds 0-9 gave DeLong 0.045-0.064 and McNemar 0.038-0.049 (pair level: 0.086-0.113 and 0.095-0.130).
    rates = _clustered_null_rates(seed=0, n_sets=3000)
    assert 0.03 <= rates["delong"] <= 0.07 and 0.03 <= rates["mcnemar"] <= 0.07, rates
    assert rates["delong_pairs"] > 0.07 and rates["mcnemar_pairs"] > 0.07, rates  # what clustering breaks


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
