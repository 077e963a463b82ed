from __future__ import annotations

import numpy as np
import pytest

from workbench.metrics.gallery import gallery_size_curve


def test_hand_computed_ranks_with_all_distractors():
    # one query, positive scores 0.5; distractors 0.9 (same category) and 0.1, 0.2 (other category)
    scores = np.array([[0.5, 0.9, 0.1, 0.2]])
    args = (scores, np.array(["p"]), np.array(["p", "a", "b", "c"]), np.array([1]), np.array([0, 1, 0, 0]))
    full = gallery_size_curve(*args, sizes=(4,), mode="random")[4]
    assert full["success@1"] == 0.0 and full["mrr"] == pytest.approx(1 / 2)
    same = gallery_size_curve(*args, sizes=(2,), mode="same_category")[2]
    assert same["mrr"] == pytest.approx(1 / 2) and same["topped_up"] == 0.0  # the only same-category item wins
    topped = gallery_size_curve(*args, sizes=(3,), mode="same_category")[3]
    assert topped["topped_up"] == 1.0 and topped["mrr"] == pytest.approx(1 / 2)


def test_curves_degrade_with_size_and_same_category_is_harder():
    rng = np.random.default_rng(0)
    n = 300
    groups = np.arange(n).astype(str)
    cats = rng.integers(0, 5, n)
    proto = rng.normal(size=(5, 16))
    img = proto[cats] + rng.normal(size=(n, 16))
    txt = img + 0.8 * rng.normal(size=(n, 16))
    scores = txt @ img.T
    random = gallery_size_curve(scores, groups, groups, cats, cats, sizes=(10, 50, 300), mode="random", seed=1)
    same = gallery_size_curve(scores, groups, groups, cats, cats, sizes=(10, 50, 300), mode="same_category", seed=1)
    assert random[10]["success@1"] >= random[50]["success@1"] >= random[300]["success@1"]
    assert same[50]["success@1"] < random[50]["success@1"]
    assert random[300]["mrr"] == pytest.approx(same[300]["mrr"])  # the full gallery is the same either way
    assert gallery_size_curve(scores, groups, groups, cats, cats, sizes=(50,), seed=1) == \
        gallery_size_curve(scores, groups, groups, cats, cats, sizes=(50,), seed=1)


def test_queries_without_positives_are_counted_and_bad_mode_is_rejected():
    scores = np.zeros((2, 3))
    out = gallery_size_curve(scores, np.array(["x", "a"]), np.array(["a", "b", "c"]), np.zeros(2), np.zeros(3),
                             sizes=(3,))
    assert out[3]["n_queries"] == 1 and out[3]["n_queries_without_positive"] == 1
    with pytest.raises(ValueError, match="mode"):
        gallery_size_curve(scores, np.array(["x", "a"]), np.array(["a", "b", "c"]), np.zeros(2), np.zeros(3),
                           mode="nearest")
