from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from workbench.metrics import alignment, hubness, modality_gap, uniformity, zeroshot_metrics


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
