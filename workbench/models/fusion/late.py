"""Late fusion: a logistic regression over the scores of sub-heads named by configuration.

Sub-heads are built through the registry in `base` (one way: `base` knows no head, and this module is registered
by the package like any other head), so any registered head, plug-ins included, can be a sub-head.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from workbench.models.fusion.base import (
    FusionData,
    PairSet,
    PairTensors,
    ProgressFn,
    as_pair_index,
    create_fusion_head,
)
from workbench.models.fusion.training import FitContext, TrainedHead, no_curves, require_pairs


def _tagged(progress: ProgressFn | None, head: str, index: int) -> ProgressFn | None:
    """Forward a sub-head's progress with its name and position added to the info."""
    if progress is None:
        return None
    return lambda epoch, epochs, info: progress(epoch, epochs, {**info, "head": head, "head_index": index})


class LateFusionHead(TrainedHead):
    """Sub-heads are fitted on train (early-stopped on val); the combiner is then fitted on the VAL split.

    Val therefore serves three purposes: early stopping, the combiner, and (later, in evaluation) thresholds.
    The test split stays untouched.
    """

    name = "late_fusion"
    description = (
        "Fits each sub-head on train, then a logistic regression over their standardised scores on the "
        "val split (the val split is also used for early stopping and thresholds)."
    )
    defaults = {"heads": [{"type": "contrastive"}, {"type": "concat_mlp"}], "C": 1.0}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        configs = self.options["heads"]
        if (
            not isinstance(configs, list)
            or not configs
            or not all(isinstance(c, dict) and "type" in c for c in configs)
        ):
            raise ValueError(f"late_fusion heads must be a non-empty list of {{'type': name, ...}}; got {configs!r}")
        self.sub_heads = [create_fusion_head(c["type"], **{k: v for k, v in c.items() if k != "type"}) for c in configs]

    @property
    def uses_tokens(self) -> bool:
        return any(head.uses_tokens for head in self.sub_heads)

    def _fit(self, data: FusionData, train: PairSet, val: PairSet, context: FitContext) -> dict[str, Any]:
        # scikit-learn (with scipy) costs about a second to import; only this head needs it, and only to fit
        from sklearn.linear_model import LogisticRegression

        require_pairs(train, val, self.name)
        if len(np.unique(val.label)) < 2:
            raise ValueError("late_fusion fits its combiner on val and needs both labels there")
        seed, device, progress = context.seed, context.device, context.progress
        curves = [
            head.fit(data, train, val, seed=seed, device=device, progress=_tagged(progress, head.name, k))
            for k, head in enumerate(self.sub_heads)
        ]
        scores = self._sub_scores(data, val.image_idx, val.text_idx)
        std = scores.std(axis=0)
        self._mean, self._std = scores.mean(axis=0), np.where(std > 1e-12, std, 1.0)
        self.combiner = LogisticRegression(C=self.options["C"]).fit((scores - self._mean) / self._std, val.label)
        return {**no_curves(), "heads": curves, "weights": self.combiner.coef_[0].tolist()}

    def _sub_scores(self, data: FusionData, image_idx: np.ndarray, text_idx: np.ndarray) -> np.ndarray:
        return np.stack([head.score_pairs(data, image_idx, text_idx) for head in self.sub_heads], axis=1)

    def score_pairs(self, data: FusionData, image_idx: np.ndarray, text_idx: np.ndarray) -> np.ndarray:
        self._check_fitted()
        ii, tt = as_pair_index(image_idx, text_idx)
        scores = (self._sub_scores(data, ii, tt) - self._mean) / self._std
        return self.combiner.decision_function(scores).astype(np.float32)

    def score_tensors(self, pairs: PairTensors) -> torch.Tensor:
        self._check_fitted()
        scores = torch.stack([head.score_tensors(pairs) for head in self.sub_heads], dim=1)
        mean, std, coef = (
            torch.as_tensor(a, dtype=scores.dtype, device=scores.device)
            for a in (self._mean, self._std, self.combiner.coef_[0])
        )
        return ((scores - mean) / std) @ coef + float(self.combiner.intercept_[0])
