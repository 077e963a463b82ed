"""Pair scorers over vectors: the shared fit (early stopping, progress), attribute tags, multitask."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from fusion_task import fitted, make_data

from workbench.models.fusion import PairSet, create_fusion_head


def test_scoring_before_fit_is_an_error() -> None:
    data, splits = make_data()
    with pytest.raises(RuntimeError, match="call fit"):
        create_fusion_head("concat_mlp").score_pairs(data, splits["val"].image_idx, splits["val"].text_idx)


def test_early_stopping_when_val_loss_rises() -> None:
    """Train labels are flipped, so learning the train split makes the val loss rise."""
    data, splits = make_data()
    train = splits["train"]
    flipped = PairSet(train.image_idx, train.text_idx, 1 - train.label)
    calls: list[tuple[int, int, dict[str, float]]] = []
    head = create_fusion_head("concat_mlp", width=16, hidden=32, epochs=50, lr=3e-3, batch_size=32, patience=3)
    curves = head.fit(data, flipped, splits["val"], seed=0, device="cpu", progress=lambda *args: calls.append(args))
    n = len(curves["val_loss"])
    assert curves["best_epoch"] < 50 and n == len(curves["train_loss"]) == curves["best_epoch"] + 3
    assert curves["val_loss"][curves["best_epoch"] - 1] == min(curves["val_loss"])
    assert [c[0] for c in calls] == list(range(1, n + 1)) and {c[1] for c in calls} == {50}
    assert calls[-1][2]["best_epoch"] == curves["best_epoch"]


def test_attribute_tags_change_the_score() -> None:
    data, splits = make_data()
    head, _ = fitted("attribute_tags")
    pairs = splits["test"]
    before = head.score_pairs(data, pairs.image_idx, pairs.text_idx)
    flipped = data.text_tags.copy()
    flipped[pairs.text_idx[0]] = 1 - flipped[pairs.text_idx[0]]
    after = head.score_pairs(dataclasses.replace(data, text_tags=flipped), pairs.image_idx, pairs.text_idx)
    touched = pairs.text_idx == pairs.text_idx[0]
    assert np.all(after[touched] != before[touched])
    np.testing.assert_array_equal(after[~touched], before[~touched])


def test_multitask_category_accuracy_above_chance() -> None:
    data, splits = make_data()
    head, _ = fitted("multitask")
    accuracy = head.category_accuracy(data, np.unique(splits["test"].image_idx))
    assert accuracy > 0.6  # 4 categories: chance is 0.25
    with pytest.raises(ValueError, match="known category"):
        head.category_accuracy(data, np.array([0]))  # image 0 has category -1
    with pytest.raises(RuntimeError, match="call fit"):
        create_fusion_head("multitask").category_accuracy(data, np.array([1]))


def test_multitask_stores_val_category_accuracy_in_its_curves() -> None:
    data, splits = make_data()
    head, curves = fitted("multitask")
    images = np.unique(splits["val"].image_idx)
    known = images[data.image_category[images] >= 0]
    assert curves["val_category_accuracy"] == head.category_accuracy(data, known)
    assert curves["val_category_accuracy"] > 0.6
