from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from workbench.metrics import (
    UNDEFINED_POLICIES,
    choose_threshold,
    confusion_counts,
    expected_calibration_error,
    pair_metrics,
    pr_curve_points,
    reliability_curve,
    roc_curve_points,
)


def _sklearn_pair_metrics(y: np.ndarray, s: np.ndarray, thr: float) -> dict[str, float]:
    pred = (s >= thr).astype(int)
    out = {
        "accuracy": skm.accuracy_score(y, pred),
        "precision": skm.precision_score(y, pred, zero_division=0),
        "recall": skm.recall_score(y, pred, zero_division=0),
        "f1": skm.f1_score(y, pred, zero_division=0),
        "specificity": skm.recall_score(y, pred, pos_label=0, zero_division=0),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
        "mcc": skm.matthews_corrcoef(y, pred),
        "roc_auc": skm.roc_auc_score(y, s),
        "pr_auc": skm.average_precision_score(y, s),
    }
    if s.min() >= 0 and s.max() <= 1:
        out["brier"] = skm.brier_score_loss(y, s)
        out["log_loss"] = skm.log_loss(y, s, labels=[0, 1])
    return out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("decimals", [1, 2, None])
def test_pair_metrics_match_sklearn(seed: int, decimals: int | None) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 400))
    y = (rng.random(n) < rng.uniform(0.1, 0.9)).astype(int)
    s = np.clip(0.3 * y + rng.random(n) * 0.8, 0.001, 0.999)
    if decimals is not None:
        s = np.round(s, decimals)  # many ties
    for thr in (float(np.quantile(s, 0.3)), float(np.median(s)), 0.5, float(s.max()) + 1):
        ours = pair_metrics(y, s, threshold=thr)
        ref = _sklearn_pair_metrics(y, s, thr)
        assert set(ours) == set(ref)
        for key, value in ref.items():
            assert ours[key] == pytest.approx(value, abs=1e-9), key


def test_pair_metrics_hand_computed() -> None:
    y = np.array([1, 0, 1, 0])
    s = np.array([0.9, 0.8, 0.4, 0.1])
    m = pair_metrics(y, s, threshold=0.5)
    assert m["accuracy"] == 0.5 and m["precision"] == 0.5 and m["recall"] == 0.5 and m["f1"] == 0.5
    assert m["specificity"] == 0.5 and m["mcc"] == 0.0
    assert m["roc_auc"] == pytest.approx(3 / 4)
    assert m["pr_auc"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert m["brier"] == pytest.approx((0.01 + 0.64 + 0.36 + 0.01) / 4)


def test_ties_count_half() -> None:
    m = pair_metrics([1, 0], [0.5, 0.5], threshold=0.5)
    assert m["roc_auc"] == 0.5
    assert m["pr_auc"] == 0.5


def test_undefined_cases_follow_policy() -> None:
    one_class = pair_metrics([1, 1, 1], [0.2, 0.5, 0.9], threshold=0.3)
    assert np.isnan(one_class["roc_auc"])
    assert one_class["specificity"] == 0.0
    no_pred = pair_metrics([1, 0, 1], [0.2, 0.5, 0.9], threshold=2.0)
    assert no_pred["precision"] == 0.0 and no_pred["f1"] == 0.0
    no_pos = pair_metrics([0, 0], [0.2, 0.5], threshold=0.3)
    assert np.isnan(no_pos["pr_auc"]) and no_pos["recall"] == 0.0
    assert {"pair/precision", "pair/roc_auc", "pair/nan_scores"} <= set(UNDEFINED_POLICIES)


def test_probability_metrics_omitted_for_logits() -> None:
    m = pair_metrics([1, 0, 1], [2.5, -1.0, 0.3], threshold=0.0)
    assert "brier" not in m and "log_loss" not in m


def test_nan_scores_raise_with_count() -> None:
    with pytest.raises(ValueError, match="2 NaN"):
        pair_metrics([1, 0, 1], [np.nan, 0.1, np.nan], threshold=0.5)


@pytest.mark.parametrize("bad", [[0, 2, 1], [0.5, 1, 0]])
def test_bad_labels_raise(bad: list[float]) -> None:
    with pytest.raises(ValueError, match="0/1"):
        pair_metrics(bad, [0.1, 0.2, 0.3], threshold=0.5)


def test_confusion_counts_match_sklearn() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200), 1)
    c = confusion_counts(y, s, threshold=0.5)
    tn, fp, fn, tp = skm.confusion_matrix(y, (s >= 0.5).astype(int), labels=[0, 1]).ravel()
    assert c == {"tp": tp, "fp": fp, "tn": tn, "fn": fn}


# Hand-made case; candidate thresholds and their (TP, FP): above max (0,0), .9 (1,0), .8 (2,0), .7 (2,1),
# .6 (3,1), .5 (3,2), .4 (3,3); 3 positives, 3 negatives.
Y = np.array([1, 1, 0, 1, 0, 0])
S = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"policy": "max_f1"}, 0.6),  # f1 = 6/7
        ({"policy": "youden"}, 0.8),  # J = 2/3 at .8 and .6; highest wins
        ({"policy": "target_precision", "target": 1.0}, 0.8),
        ({"policy": "target_precision", "target": 0.75}, 0.6),
        ({"policy": "target_precision", "target": 0.7}, 0.6),
        ({"policy": "target_precision", "target": 0.5}, 0.4),
        ({"policy": "target_fpr", "target": 0.0}, 0.8),
        ({"policy": "target_fpr", "target": 1 / 3}, 0.6),
        ({"policy": "cost"}, 0.8),
        ({"policy": "cost", "cost_fn": 10.0}, 0.6),
        ({"policy": "cost", "cost_fp": 10.0}, 0.8),
    ],
)
def test_threshold_policies(kwargs: dict, expected: float) -> None:
    assert choose_threshold(Y, S, **kwargs) == expected


def test_cost_policy_can_predict_nothing() -> None:
    thr = choose_threshold([0, 0, 1], [0.9, 0.8, 0.1], policy="cost", cost_fp=1.0, cost_fn=0.5)
    assert thr > 0.9
    assert confusion_counts([0, 0, 1], [0.9, 0.8, 0.1], threshold=thr)["fp"] == 0


def test_threshold_policy_errors() -> None:
    with pytest.raises(ValueError, match="max_f1"):
        choose_threshold(Y, S, policy="best")
    with pytest.raises(ValueError, match="target"):
        choose_threshold(Y, S, policy="target_fpr")
    with pytest.raises(ValueError, match="best achievable"):
        choose_threshold([0, 1], [0.9, 0.1], policy="target_precision", target=0.9)


def test_max_f1_agrees_with_brute_force() -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300) + 0.3 * y, 2)
    thr = choose_threshold(y, s, policy="max_f1")
    best = max(skm.f1_score(y, (s >= t).astype(int)) for t in np.unique(s))
    assert skm.f1_score(y, (s >= thr).astype(int)) == pytest.approx(best, abs=1e-12)


def test_curves_match_sklearn_and_downsample() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 150)
    s = np.round(rng.random(150), 2)
    roc = roc_curve_points(y, s, max_points=1000)
    fpr, tpr, _ = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(roc["fpr"], fpr)
    np.testing.assert_allclose(roc["tpr"], tpr)
    pr = pr_curve_points(y, s, max_points=1000)
    precision, recall, _ = skm.precision_recall_curve(y, s)
    np.testing.assert_allclose(pr["precision"][1:], precision[::-1][1:])
    np.testing.assert_allclose(pr["recall"], recall[::-1])
    small = roc_curve_points(y, s, max_points=10)
    assert len(small["fpr"]) <= 10 and small["fpr"][0] == 0 and small["fpr"][-1] == 1


def test_reliability_and_ece_hand_computed() -> None:
    y = np.array([0, 1, 1, 1])
    p = np.array([0.1, 0.15, 0.8, 0.9])
    rel = reliability_curve(y, p, n_bins=2)
    np.testing.assert_array_equal(rel["count"], [2, 2])
    np.testing.assert_allclose(rel["mean_predicted"], [0.125, 0.85])
    np.testing.assert_allclose(rel["fraction_positive"], [0.5, 1.0])
    assert expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.5 * 0.375 + 0.5 * 0.15)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error(y, p + 1)
