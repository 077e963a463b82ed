"""Joint-space heads: images and texts map into one space and a score is the cosine there (`embeds = True`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from workbench.models.fusion.base import FusionData, PairSet, PairTensors
from workbench.models.fusion.training import (
    SCORE_CHUNK,
    FitContext,
    Standardizer,
    TrainedHead,
    TrainOptions,
    chunked_mean,
    l2,
    mlp,
    no_curves,
    require_pairs,
    train_module,
)


class CosineHead(TrainedHead):
    name = "cosine"
    description = "Zero-shot cosine similarity of a dual encoder's vectors (needs one shared space); no training."
    embeds = True

    def _fit(self, data: FusionData, train: PairSet, val: PairSet, context: FitContext) -> dict[str, Any]:
        self._check_dims(data)
        return no_curves()

    @staticmethod
    def _check_dims(data: FusionData) -> None:
        di, dt = data.image_vecs.shape[1], data.text_vecs.shape[1]
        if di != dt:
            raise ValueError(
                f"cosine needs a dual encoder with a shared space; got image dim {di} and text dim "
                f"{dt} — use 'contrastive' or 'cca'"
            )

    def embed(self, data: FusionData) -> tuple[np.ndarray, np.ndarray]:
        self._check_dims(data)
        return l2(data.image_vecs), l2(data.text_vecs)

    def score_tensors(self, pairs: PairTensors) -> torch.Tensor:
        return _cosine(pairs.image_vecs, pairs.text_vecs)


def _cosine(img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine of aligned rows (the score of every joint-space head)."""
    return (F.normalize(img, dim=-1) * F.normalize(txt, dim=-1)).sum(-1)


def info_nce(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor, same_product: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE of aligned rows; off-diagonal pairs of the same product are masked, not negatives."""
    n = len(img)
    logits = scale * img @ txt.T
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=img.device)
    logits = logits.masked_fill(same_product & off_diagonal, float("-inf"))
    target = torch.arange(n, device=img.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def product_codes(data: FusionData) -> tuple[np.ndarray, np.ndarray]:
    """Shared integer codes for image/text product ids; a missing id gets a unique negative code."""
    lookup: dict[Any, int] = {}
    missing = 0

    def code(value: Any) -> int:
        nonlocal missing
        if value is None or (isinstance(value, float) and math.isnan(value)):
            missing += 1
            return -missing
        return lookup.setdefault(value, len(lookup))

    return (
        np.array([code(v) for v in data.image_product], dtype=np.int64),
        np.array([code(v) for v in data.text_product], dtype=np.int64),
    )


class _Towers(nn.Module):
    def __init__(self, d_img: int, d_txt: int, dim: int, hidden: int, temperature: float) -> None:
        super().__init__()
        self.image = mlp(d_img, hidden, dim, 0.0)
        self.text = mlp(d_txt, hidden, dim, 0.0)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))

    def scale(self) -> torch.Tensor:
        return self.log_scale.clamp(max=math.log(100.0)).exp()


class ContrastiveHead(TrainedHead):
    name = "contrastive"
    description = (
        "Linear (hidden=0) or MLP projection of each modality into a joint space, trained with "
        "symmetric InfoNCE and a learnable temperature on positive train pairs."
    )
    defaults = {"dim": 128, "hidden": 0, "temperature": 0.07, **TrainOptions.defaults(epochs=50, batch_size=128)}
    embeds = True

    def _fit(self, data: FusionData, train: PairSet, val: PairSet, context: FitContext) -> dict[str, Any]:
        train, val = train.positives(), val.positives()
        require_pairs(train, val, "contrastive (positives)")
        self._std_img = Standardizer(data.image_vecs[np.unique(train.image_idx)])
        self._std_txt = Standardizer(data.text_vecs[np.unique(train.text_idx)])
        img = torch.from_numpy(self._std_img(data.image_vecs)).to(self._device)
        txt = torch.from_numpy(self._std_txt(data.text_vecs)).to(self._device)
        img_code, txt_code = (torch.from_numpy(c).to(self._device) for c in product_codes(data))
        torch.manual_seed(context.seed)
        o = self.options
        self.towers = _Towers(img.shape[1], txt.shape[1], o["dim"], o["hidden"], o["temperature"]).to(self._device)

        def loss(pairs: PairSet, rows: np.ndarray | slice) -> torch.Tensor:
            ii = torch.from_numpy(pairs.image_idx[rows]).to(self._device)
            tt = torch.from_numpy(pairs.text_idx[rows]).to(self._device)
            zi = F.normalize(self.towers.image(img[ii]), dim=-1)
            zt = F.normalize(self.towers.text(txt[tt]), dim=-1)
            same = img_code[ii][:, None] == txt_code[tt][None, :]
            return info_nce(zi, zt, self.towers.scale(), same)

        options = TrainOptions.of(o)
        return train_module(
            self.towers,
            len(train),
            lambda rows: loss(train, rows),
            lambda: chunked_mean(len(val), options.batch_size, lambda part: loss(val, part)),
            options,
            context,
        )

    def embed(self, data: FusionData) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted()
        self.towers.eval()
        with torch.inference_mode():
            return (
                self._project(self.towers.image, self._std_img(data.image_vecs)),
                self._project(self.towers.text, self._std_txt(data.text_vecs)),
            )

    def score_tensors(self, pairs: PairTensors) -> torch.Tensor:
        self._check_fitted()
        self.towers.eval()
        return _cosine(
            self.towers.image(self._std_img.on_tensor(pairs.image_vecs)),
            self.towers.text(self._std_txt.on_tensor(pairs.text_vecs)),
        )

    def _project(self, tower: nn.Module, x: np.ndarray) -> np.ndarray:
        parts = [
            F.normalize(tower(torch.from_numpy(x[s : s + SCORE_CHUNK]).to(self._device)), dim=-1).cpu().numpy()
            for s in range(0, len(x), SCORE_CHUNK)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self.options["dim"]), dtype=np.float32)


class CCAHead(TrainedHead):
    """Regularised CCA in closed form: whiten each modality, then an SVD of the whitened cross-covariance.

    Exact and deterministic (no iterative NIPALS), so it fits in milliseconds where scikit-learn's CCA needs
    minutes on a few thousand 500-d pairs; ``reg`` (relative to the mean variance) keeps the whitening stable.
    """

    name = "cca"
    description = "Regularised canonical correlation analysis on positive train pairs; cosine in canonical space."
    defaults = {"n_components": 32, "reg": 1e-3}
    embeds = True

    def _fit(self, data: FusionData, train: PairSet, val: PairSet, context: FitContext) -> dict[str, Any]:
        pos = train.positives()
        k = int(self.options["n_components"])
        limit = min(data.image_vecs.shape[1], data.text_vecs.shape[1], len(pos))
        if not 1 <= k <= limit:
            raise ValueError(
                f"cca n_components must be in [1, {limit}] (min of image dim, text dim, positive train pairs); got {k}"
            )
        self._std_img = Standardizer(data.image_vecs[pos.image_idx])
        self._std_txt = Standardizer(data.text_vecs[pos.text_idx])
        x = self._std_img(data.image_vecs[pos.image_idx]).astype(np.float64)
        y = self._std_txt(data.text_vecs[pos.text_idx]).astype(np.float64)
        wx, wy = _inverse_sqrt(x, float(self.options["reg"])), _inverse_sqrt(y, float(self.options["reg"]))
        u, _, vt = np.linalg.svd(wx @ (x.T @ y / max(len(x) - 1, 1)) @ wy)
        self._x_rot = (wx @ u[:, :k]).astype(np.float32)
        self._y_rot = (wy @ vt.T[:, :k]).astype(np.float32)
        return no_curves()

    def embed(self, data: FusionData) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted()
        return l2(self._std_img(data.image_vecs) @ self._x_rot), l2(self._std_txt(data.text_vecs) @ self._y_rot)

    def score_tensors(self, pairs: PairTensors) -> torch.Tensor:
        self._check_fitted()
        x_rot = torch.as_tensor(self._x_rot, device=pairs.image_vecs.device)
        y_rot = torch.as_tensor(self._y_rot, device=pairs.text_vecs.device)
        img = self._std_img.on_tensor(pairs.image_vecs) @ x_rot
        return _cosine(img, self._std_txt.on_tensor(pairs.text_vecs) @ y_rot)


def _inverse_sqrt(x: np.ndarray, reg: float) -> np.ndarray:
    """(Cov(x) + reg·mean variance·I)^(-1/2) by eigendecomposition."""
    cov = x.T @ x / max(len(x) - 1, 1)
    cov += np.eye(len(cov)) * reg * max(float(np.trace(cov)) / len(cov), 1e-12)
    values, vectors = np.linalg.eigh(cov)
    return (vectors / np.sqrt(np.maximum(values, 1e-12))) @ vectors.T
