"""Pair-scoring heads: a torch model reads one (image, text) pair and returns a match logit; BCE on labelled pairs.

Scores are logits (σ(score) is the match probability) so that they do not saturate into ties. `PairHead` holds
the fit and the chunked scoring; subclasses define the model and its inputs (vectors here, tokens in `token`).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from workbench.models.fusion.base import FusionData, PairSet, PairTensors, as_pair_index
from workbench.models.fusion.training import (
    SCORE_CHUNK,
    FitContext,
    Standardizer,
    TrainedHead,
    TrainOptions,
    chunked_mean,
    require_pairs,
    train_module,
)


class PairHead(TrainedHead):
    """A torch pair scorer trained with BCE on labelled pairs; subclasses define the model and its inputs."""

    @abstractmethod
    def _setup(self, data: FusionData, train: PairSet) -> nn.Module:
        """Fit input normalisers on the train split and build the model (called after seeding)."""

    @abstractmethod
    def _inputs(self, data: FusionData, ii: np.ndarray, tt: np.ndarray) -> tuple[torch.Tensor, ...]:
        """The model's input tensors for pairs (ii, tt), on the training device."""

    def _check_data(self, data: FusionData) -> None:
        """Hook for heads with extra input requirements."""

    def _loss(self, data: FusionData, ii: np.ndarray, tt: np.ndarray, label: np.ndarray) -> torch.Tensor:
        target = torch.from_numpy(label.astype(np.float32)).to(self._device)
        return F.binary_cross_entropy_with_logits(self.model(*self._inputs(data, ii, tt)), target)

    def _fit(self, data: FusionData, train: PairSet, val: PairSet, context: FitContext) -> dict[str, Any]:
        require_pairs(train, val, self.name)
        self._check_data(data)
        torch.manual_seed(context.seed)
        self.model = self._setup(data, train).to(self._device)
        return train_module(
            self.model,
            len(train),
            lambda rows: self._loss(data, train.image_idx[rows], train.text_idx[rows], train.label[rows]),
            lambda: chunked_mean(
                len(val),
                SCORE_CHUNK,
                lambda p: self._loss(data, val.image_idx[p], val.text_idx[p], val.label[p]),
            ),
            TrainOptions.of(self.options),
            context,
        )

    def score_pairs(self, data: FusionData, image_idx: np.ndarray, text_idx: np.ndarray) -> np.ndarray:
        self._check_fitted()
        self._check_data(data)
        ii, tt = as_pair_index(image_idx, text_idx)
        out = np.empty(len(ii), dtype=np.float32)
        self.model.eval()
        with torch.inference_mode():
            for s in range(0, len(ii), SCORE_CHUNK):
                part = slice(s, s + SCORE_CHUNK)
                out[part] = self._score_chunk(data, ii[part], tt[part]).float().cpu().numpy()
        return out

    def _score_chunk(self, data: FusionData, ii: np.ndarray, tt: np.ndarray) -> torch.Tensor:
        """Logits of one chunk of pairs."""
        return self.model(*self._inputs(data, ii, tt))

    def score_tensors(self, pairs: PairTensors) -> torch.Tensor:
        self._check_fitted()
        self.model.eval()
        return self.model(*self._tensor_inputs(pairs))

    @abstractmethod
    def _tensor_inputs(self, pairs: PairTensors) -> tuple[torch.Tensor, ...]:
        """The model's inputs from pair tensors, as `_inputs` builds them from `FusionData` (differentiably)."""


def interactions(v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """[v, t, v*t, |v-t|] along the last axis."""
    return torch.cat([v, t, v * t, (v - t).abs()], dim=-1)


class _VectorPairHead(PairHead):
    """A pair scorer over the pooled image and text vectors (standardised, see `training`)."""

    @abstractmethod
    def _build(self, d_img: int, d_txt: int, data: FusionData) -> nn.Module:
        """The model, given input dimensions."""

    def _setup(self, data: FusionData, train: PairSet) -> nn.Module:
        self._std_img = Standardizer(data.image_vecs[np.unique(train.image_idx)])
        self._std_txt = Standardizer(data.text_vecs[np.unique(train.text_idx)])
        return self._build(data.image_vecs.shape[1], data.text_vecs.shape[1], data)

    def _vectors(self, data: FusionData, ii: np.ndarray, tt: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            torch.from_numpy(self._std_img(data.image_vecs[ii])).to(self._device),
            torch.from_numpy(self._std_txt(data.text_vecs[tt])).to(self._device),
        )

    def _inputs(self, data: FusionData, ii: np.ndarray, tt: np.ndarray) -> tuple[torch.Tensor, ...]:
        return self._vectors(data, ii, tt)

    def _tensor_inputs(self, pairs: PairTensors) -> tuple[torch.Tensor, ...]:
        return self._std_img.on_tensor(pairs.image_vecs), self._std_txt.on_tensor(pairs.text_vecs)


class _InteractionMLP(nn.Module):
    """Project v and t to one width, then an MLP over [v, t, v*t, |v-t|]; optional image-category head."""

    def __init__(self, d_img: int, d_txt: int, width: int, hidden: int, dropout: float, n_categories: int = 0):
        super().__init__()
        self.image = nn.Linear(d_img, width)
        self.text = nn.Linear(d_txt, width)
        self.fused = nn.Sequential(nn.Linear(4 * width, hidden), nn.GELU(), nn.Dropout(dropout))
        self.match = nn.Linear(hidden, 1)
        self.category = nn.Linear(width, n_categories) if n_categories else None

    def forward(self, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.match(self.fused(interactions(self.image(v), self.text(t)))).squeeze(-1)


_MLP_DEFAULTS: dict[str, Any] = {"width": 128, "hidden": 256, "dropout": 0.1, **TrainOptions.defaults()}


class ConcatMLPHead(_VectorPairHead):
    name = "concat_mlp"
    description = "MLP classifier over [v, t, v*t, |v-t|] after projecting both modalities to one width; BCE."
    defaults = dict(_MLP_DEFAULTS)

    def _build(self, d_img: int, d_txt: int, data: FusionData) -> nn.Module:
        o = self.options
        return _InteractionMLP(d_img, d_txt, o["width"], o["hidden"], o["dropout"])


class MultitaskHead(_VectorPairHead):
    name = "multitask"
    description = (
        "Match/no-match MLP over [v, t, v*t, |v-t|] trained jointly with product-category "
        "classification of the image projection it shares (loss = BCE + category_weight * CE)."
    )
    defaults = {**_MLP_DEFAULTS, "category_weight": 0.5}

    def _build(self, d_img: int, d_txt: int, data: FusionData) -> nn.Module:
        n_categories = int(np.max(data.image_category, initial=-1)) + 1
        if n_categories < 1:
            raise ValueError("multitask needs image categories; every data.image_category is -1")
        o = self.options
        return _InteractionMLP(d_img, d_txt, o["width"], o["hidden"], o["dropout"], n_categories)

    def _loss(self, data: FusionData, ii: np.ndarray, tt: np.ndarray, label: np.ndarray) -> torch.Tensor:
        v, t = self._vectors(data, ii, tt)
        target = torch.from_numpy(label.astype(np.float32)).to(self._device)
        loss = F.binary_cross_entropy_with_logits(self.model(v, t), target)
        category = torch.from_numpy(np.asarray(data.image_category[ii], dtype=np.int64)).to(self._device)
        if bool((category >= 0).any()):
            logits = self.model.category(self.model.image(v))
            loss = loss + self.options["category_weight"] * F.cross_entropy(logits, category, ignore_index=-1)
        return loss

    def _fit(self, data: FusionData, train: PairSet, val: PairSet, context: FitContext) -> dict[str, Any]:
        """As every pair head, plus ``val_category_accuracy`` of the category head on the val images (None when
        no val image has a known category), so that it is stored with the run."""
        curves = super()._fit(data, train, val, context)
        images = np.unique(val.image_idx)
        known = images[np.asarray(data.image_category)[images] >= 0]
        curves["val_category_accuracy"] = self._category_accuracy(data, known) if len(known) else None
        return curves

    def category_accuracy(self, data: FusionData, image_idx: np.ndarray) -> float:
        """Accuracy of the image-category head over images with a known category."""
        self._check_fitted()
        return self._category_accuracy(data, image_idx)

    def _category_accuracy(self, data: FusionData, image_idx: np.ndarray) -> float:
        idx = np.asarray(image_idx, dtype=np.int64)
        idx = idx[np.asarray(data.image_category)[idx] >= 0]
        if len(idx) == 0:
            raise ValueError("no image with a known category (image_category >= 0) among image_idx")
        self.model.eval()
        with torch.inference_mode():
            v = torch.from_numpy(self._std_img(data.image_vecs[idx])).to(self._device)
            predicted = self.model.category(self.model.image(v)).argmax(-1).cpu().numpy()
        return float(np.mean(predicted == np.asarray(data.image_category)[idx]))


class _TagBilinear(nn.Module):
    def __init__(self, d_img: int, d_txt: int, n_tags: int, width: int) -> None:
        super().__init__()
        self.image = nn.Linear(d_img, width)
        self.text = nn.Linear(d_txt, width)
        self.bilinear = nn.Bilinear(width + n_tags, width + n_tags, 1)

    def forward(self, v: torch.Tensor, v_tags: torch.Tensor, t: torch.Tensor, t_tags: torch.Tensor) -> torch.Tensor:
        r_img = torch.cat([self.image(v), v_tags], dim=-1)
        r_txt = torch.cat([self.text(t), t_tags], dim=-1)
        return self.bilinear(r_img, r_txt).squeeze(-1)


class AttributeTagsHead(_VectorPairHead):
    name = "attribute_tags"
    description = (
        "Bilinear score r_img^T W r_txt over [proj(v), image tags] and [proj(t), text tags]; trained "
        "with -log σ(s+) - log(1 - σ(s-)) on labelled pairs."
    )
    defaults = {"width": 64, **TrainOptions.defaults()}

    def _build(self, d_img: int, d_txt: int, data: FusionData) -> nn.Module:
        return _TagBilinear(d_img, d_txt, data.image_tags.shape[1], self.options["width"])

    def _inputs(self, data: FusionData, ii: np.ndarray, tt: np.ndarray) -> tuple[torch.Tensor, ...]:
        v, t = self._vectors(data, ii, tt)
        v_tags = torch.from_numpy(np.asarray(data.image_tags[ii], dtype=np.float32)).to(self._device)
        t_tags = torch.from_numpy(np.asarray(data.text_tags[tt], dtype=np.float32)).to(self._device)
        return v, v_tags, t, t_tags

    def _tensor_inputs(self, pairs: PairTensors) -> tuple[torch.Tensor, ...]:
        if pairs.image_tags is None or pairs.text_tags is None:
            raise ValueError("attribute_tags scores with image_tags and text_tags; the pair tensors have none")
        v, t = super()._tensor_inputs(pairs)
        return v, pairs.image_tags, t, pairs.text_tags
