from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from workbench.metrics import (
    UNDEFINED_POLICIES,
    alignment,
    hubness,
    modality_gap,
    uniformity,
    zeroshot_metrics,
    zeroshot_metrics_from_ranks,
    zeroshot_ranks,
)


def test_zeroshot_hand_computed() -> None:
    classes = np.eye(3)
    images = np.array([[1.0, 0.2, 0.1], [0.3, 0.5, 0.9], [0.5, 0.4, 0.0], [0.0, 0.0, 1.0]])
    labels = np.array([0, 1, 1, 2])
    # true-class ranks: 1, 2, 2, 1
    out = zeroshot_metrics(images, classes, labels, ks=(1, 2))
    assert out["acc@1"] == 0.5 and out["acc@2"] == 1.0
    assert out["mean_per_class_recall"] == pytest.approx((1 + 0 + 1) / 3)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        zeroshot_metrics(images, classes, np.array([0, 1, 3, 2]))


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic", "average"])
def test_zeroshot_ranks_match_a_full_sort(ties: str) -> None:
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, (60, 7)).astype(np.float64)  # heavy ties
    labels = rng.integers(0, 7, 60)
    expected = []
    for row, label in zip(scores, labels, strict=True):
        others = np.arange(7) != label
        classes = np.arange(7)
        pess = np.lexsort((~others, -row))  # among equal scores the other classes come first
        opt = np.lexsort((others, -row))
        r_pess = float(np.flatnonzero(classes[pess] == label)[0] + 1)
        r_opt = float(np.flatnonzero(classes[opt] == label)[0] + 1)
        expected.append({"pessimistic": r_pess, "optimistic": r_opt, "average": (r_pess + r_opt) / 2}[ties])
    ranks = zeroshot_ranks(scores, labels, ties=ties)
    np.testing.assert_array_equal(ranks, expected)
    out = zeroshot_metrics_from_ranks(ranks, labels, ks=(1, 3))
    assert out["acc@3"] == np.mean(np.asarray(expected) <= 3)
    recalls = [np.mean(np.asarray(expected)[labels == c] <= 1) for c in np.unique(labels)]
    assert out["mean_per_class_recall"] == pytest.approx(np.mean(recalls), abs=1e-12)


def test_all_tied_zero_shot_scores_give_acc_at_1_of_zero() -> None:
    # A scorer returning all zeros: the true class ties with every other class and ranks last (pessimistic).
    labels = np.array([0, 1, 2, 2])
    ranks = zeroshot_ranks(np.zeros((4, 3)), labels)
    np.testing.assert_array_equal(ranks, [3, 3, 3, 3])
    out = zeroshot_metrics(np.zeros((4, 5)), np.zeros((3, 5)), labels, ks=(1, 2, 3))
    assert out == {"acc@1": 0.0, "acc@2": 0.0, "acc@3": 1.0, "mean_per_class_recall": 0.0}
    assert zeroshot_metrics(np.zeros((4, 5)), np.zeros((3, 5)), labels, ties="optimistic")["acc@1"] == 1.0
    np.testing.assert_array_equal(zeroshot_ranks(np.zeros((4, 3)), labels, ties="average"), [2, 2, 2, 2])
    assert "pessimistic" in UNDEFINED_POLICIES["zeroshot/ties"]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: zeroshot_ranks(np.zeros((2, 3)), np.array([0, 1]), ties="random"), "pessimistic"),
        (lambda: zeroshot_ranks(np.zeros((2, 3)), np.array([0.0, 1.0])), "ints"),
        (lambda: zeroshot_ranks(np.array([[np.nan, 1.0]]), np.array([0])), "NaN"),
        (lambda: zeroshot_metrics_from_ranks(np.array([0.0, 2.0]), np.array([0, 1])), r"ranks must be >= 1"),
        (lambda: zeroshot_metrics_from_ranks(np.array([1.0]), np.array([0, 1])), "one length"),
    ],
)
def test_zeroshot_invalid_inputs(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_diagnostics_hand_values() -> None:
    x = np.array([[2.0, 0.0], [0.0, 3.0]])
    assert modality_gap(x, x) == 0.0
    assert alignment(x, x) == 0.0
    assert modality_gap(np.array([[1.0, 0.0]]), np.array([[-5.0, 0.0]])) == pytest.approx(2.0)
    assert alignment(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])) == pytest.approx(2.0)
    assert uniformity(np.array([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(-8.0)  # one pair at squared dist 4
    with pytest.raises(ValueError, match="zero vector"):
        modality_gap(np.zeros((1, 2)), x)


def test_uniformity_matches_naive_and_samples() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5))
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    d = ((xn[:, None] - xn[None]) ** 2).sum(-1)
    iu = np.triu_indices(300, 1)
    assert uniformity(x, chunk_size=64) == pytest.approx(np.log(np.mean(np.exp(-2 * d[iu]))), abs=1e-10)
    assert uniformity(x, max_points=100, seed=1) == uniformity(x, max_points=100, seed=1)


def test_hubness_matches_naive() -> None:
    rng = np.random.default_rng(1)
    q, g = rng.normal(size=(80, 6)), rng.normal(size=(40, 6))
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    top = np.argsort(-(qn @ gn.T), axis=1)[:, :5]
    expected = sps.skew(np.bincount(top.ravel(), minlength=40))
    assert hubness(q, g, k=5, chunk_size=7) == pytest.approx(expected)
    with pytest.raises(ValueError, match="gallery size"):
        hubness(q, g, k=40)
