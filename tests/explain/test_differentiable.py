"""Every built-in head's differentiable scoring path equals its scores, and gradients flow to its inputs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from workbench.models.fusion import BUILTIN_HEADS, PairTensors

_spec = importlib.util.spec_from_file_location(
    "fusion_task", Path(__file__).resolve().parent.parent / "models" / "fusion" / "fusion_task.py")
fusion_task = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fusion_task)
FAST = {"epochs": 2, "patience": 2}


@pytest.mark.parametrize("head_cls", BUILTIN_HEADS, ids=lambda c: c.name)
def test_score_tensors_equals_score_pairs_and_is_differentiable(head_cls) -> None:
    options, trained, shared = fusion_task.FIXTURES[head_cls.name]
    overrides = {} if not trained or head_cls.name == "late_fusion" else FAST
    head, _ = fusion_task.fit_head(head_cls.name, **overrides)
    data, splits = fusion_task.make_data(shared)
    test = splits["test"]
    expected = head.score_pairs(data, test.image_idx, test.text_idx)
    pairs = PairTensors.from_fusion_data(data, test.image_idx, test.text_idx)
    side = "image_tokens" if head.uses_tokens else "image_vecs"
    getattr(pairs, side).requires_grad_(True)
    scores = head.score_tensors(pairs)
    np.testing.assert_allclose(scores.detach().numpy(), expected, rtol=1e-4, atol=1e-4)
    scores.sum().backward()
    grad = getattr(pairs, side).grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_a_head_without_a_differentiable_path_says_so() -> None:
    from workbench.models.fusion import FusionHead

    class Opaque(FusionHead):
        name = "opaque_test"

        def fit(self, data, train, val, *, seed, device, progress=None):
            return {}

    with pytest.raises(NotImplementedError, match="no differentiable scoring path"):
        Opaque().score_tensors(PairTensors(torch.zeros(1, 2), torch.zeros(1, 2)))
