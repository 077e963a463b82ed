"""Late fusion: sub-heads from the registry, a logistic-regression combiner fitted on val, tagged progress."""

from __future__ import annotations

import numpy as np
import pytest
from fusion_task import fitted, make_data
from sklearn.linear_model import LogisticRegression

from workbench.models.fusion import (
    FitContext,
    FusionData,
    PairSet,
    TrainedHead,
    as_pair_index,
    base,
    create_fusion_head,
)


def test_late_fusion_combines_its_sub_heads_on_val() -> None:
    data, splits = make_data()
    head, curves = fitted("late_fusion")
    assert [h.name for h in head.sub_heads] == ["cca", "concat_mlp"]
    assert len(curves["heads"]) == 2 and len(curves["weights"]) == 2 and min(curves["weights"]) > 0
    val, test = splits["val"], splits["test"]
    val_sub = np.stack([h.score_pairs(data, val.image_idx, val.text_idx) for h in head.sub_heads], axis=1)
    mean, std = val_sub.mean(axis=0), val_sub.std(axis=0)
    refit = LogisticRegression().fit((val_sub - mean) / std, val.label)
    np.testing.assert_allclose(refit.coef_[0], curves["weights"], rtol=1e-6)
    sub = np.stack([h.score_pairs(data, test.image_idx, test.text_idx) for h in head.sub_heads], axis=1)
    expected = refit.decision_function((sub - mean) / std)
    np.testing.assert_allclose(head.score_pairs(data, test.image_idx, test.text_idx), expected, rtol=1e-5)
    assert not create_fusion_head("late_fusion").uses_tokens
    assert create_fusion_head("late_fusion", heads=[{"type": "cross_attention"}]).uses_tokens
    with pytest.raises(ValueError, match="non-empty list"):
        create_fusion_head("late_fusion", heads=[])


def test_late_fusion_rejects_unknown_sub_heads_when_built() -> None:
    with pytest.raises(KeyError, match=r"Fusion head 'nope' not found\. Available:"):
        create_fusion_head("late_fusion", heads=[{"type": "nope"}])
    with pytest.raises(ValueError, match=r"Unknown option\(s\) \['dimm'\] for fusion head 'contrastive'"):
        create_fusion_head("late_fusion", heads=[{"type": "contrastive", "dimm": 3}])


def test_late_fusion_tags_each_sub_head_progress() -> None:
    data, splits = make_data()
    heads = [
        {"type": "cca", "n_components": 4},
        {"type": "concat_mlp", "width": 8, "hidden": 8, "epochs": 2, "batch_size": 64},
        {"type": "attribute_tags", "width": 8, "epochs": 3, "batch_size": 64},
    ]
    calls: list[tuple[int, int, dict]] = []
    create_fusion_head("late_fusion", heads=heads).fit(
        data, splits["train"], splits["val"], seed=0, device="cpu", progress=lambda *args: calls.append(args)
    )
    tagged = [(info["head"], info["head_index"], epoch, epochs) for epoch, epochs, info in calls]
    expected = [("concat_mlp", 1, e, 2) for e in (1, 2)] + [("attribute_tags", 2, e, 3) for e in (1, 2, 3)]
    assert tagged == expected  # cca trains no epochs, so it reports none
    assert all({"train_loss", "val_loss", "best_epoch"} <= set(info) for *_, info in calls)


class _TextFeature(TrainedHead):
    name = "text_feature_plugin"
    description = "A plug-in stand-in: scores a pair by one feature of its text vector."
    defaults = {"feature": 0}

    def _fit(self, data: FusionData, train: PairSet, val: PairSet, context: FitContext) -> dict:
        return {"train_loss": [], "val_loss": [], "best_epoch": 0}

    def score_pairs(self, data: FusionData, image_idx: np.ndarray, text_idx: np.ndarray) -> np.ndarray:
        self._check_fitted()
        _, tt = as_pair_index(image_idx, text_idx)
        return data.text_vecs[tt, self.options["feature"]].astype(np.float32)


def test_a_registered_plug_in_can_be_a_sub_head(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))  # restored after the test
    base.register_fusion_head(_TextFeature)
    data, splits = make_data()
    head = create_fusion_head("late_fusion", heads=[{"type": "cca", "n_components": 4}, {"type": _TextFeature.name}])
    curves = head.fit(data, splits["train"], splits["val"], seed=0, device="cpu")
    assert isinstance(head.sub_heads[1], _TextFeature) and len(curves["weights"]) == 2
    test = splits["test"]
    assert np.isfinite(head.score_pairs(data, test.image_idx, test.text_idx)).all()
