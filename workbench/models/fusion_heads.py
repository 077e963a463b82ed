"""Built-in fusion heads (registered on import; use them through `workbench.models.fusion`).

Input policy for trained heads: every vector row is L2-normalised, then z-scored per feature with the mean and
standard deviation of the items that occur in the train pairs. Token features pass through a LayerNorm. Tags
are used as given (multi-hot). Pair scorers return logits (σ(score) is the match probability) so that scores
do not saturate into ties. Training is deterministic for a seed on CPU: `torch.manual_seed(seed)` before the
weights are built and an explicit `torch.Generator` for shuffling; early stopping keeps the weights of the
epoch with the lowest val loss (`best_epoch`, 1-based; 0 when nothing is trained).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from torch import nn

from workbench.models.fusion import (
    Device,
    FusionData,
    FusionHead,
    PairSet,
    ProgressFn,
    as_pair_index,
    create_fusion_head,
    register_fusion_head,
)

SCORE_CHUNK = 8192
TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 30,
    "lr": 1e-3,
    "batch_size": 256,
    "weight_decay": 1e-4,
    "patience": 5,
}


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class _Standardizer:
    """L2-normalise rows, then z-score features with statistics of the rows seen at construction."""

    def __init__(self, x: np.ndarray) -> None:
        x = _l2(x).astype(np.float64)
        self.mean = x.mean(axis=0)
        std = x.std(axis=0)
        self.std = np.where(std > 1e-8, std, 1.0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((_l2(x) - self.mean) / self.std).astype(np.float32)


def _require_pairs(train: PairSet, val: PairSet, head: str) -> None:
    for split, pairs in (("train", train), ("val", val)):
        if len(pairs) == 0:
            raise ValueError(f"{head} needs {split} pairs; the {split} split is empty")


def _product_codes(data: FusionData) -> tuple[np.ndarray, np.ndarray]:
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


def _mlp(d_in: int, hidden: int, d_out: int, dropout: float) -> nn.Sequential:
    if hidden <= 0:
        return nn.Sequential(nn.Linear(d_in, d_out))
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d_out))


def _interactions(v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return torch.cat([v, t, v * t, (v - t).abs()], dim=-1)


def _train(
    module: nn.Module,
    n_train: int,
    batch_loss: Callable[[np.ndarray], torch.Tensor],
    val_loss: Callable[[], float],
    options: dict[str, Any],
    seed: int,
    progress: ProgressFn | None,
) -> dict[str, Any]:
    """AdamW over shuffled mini-batches with early stopping on val loss; restores the best epoch's weights."""
    epochs, batch_size, patience = (int(options[k]) for k in ("epochs", "batch_size", "patience"))
    if min(epochs, batch_size, patience) < 1:
        raise ValueError(f"epochs, batch_size and patience must be >= 1; got {epochs}, {batch_size}, {patience}")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(module.parameters(), lr=options["lr"], weight_decay=options["weight_decay"])
    curves: dict[str, Any] = {"train_loss": [], "val_loss": [], "best_epoch": 0}
    best, best_state, waited = math.inf, None, 0
    for epoch in range(1, epochs + 1):
        module.train()
        order = torch.randperm(n_train, generator=generator).numpy()
        total = 0.0
        for start in range(0, n_train, batch_size):
            rows = order[start : start + batch_size]
            loss = batch_loss(rows)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(rows)
        module.eval()
        with torch.inference_mode():
            current = float(val_loss())
        curves["train_loss"].append(total / n_train)
        curves["val_loss"].append(current)
        if current < best:
            best, waited, curves["best_epoch"] = current, 0, epoch
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            waited += 1
        if progress is not None:
            progress(
                epoch,
                epochs,
                {
                    "train_loss": curves["train_loss"][-1],
                    "val_loss": current,
                    "best_epoch": curves["best_epoch"],
                },
            )
        if waited >= patience or not math.isfinite(current):
            break
    if best_state is not None:
        module.load_state_dict(best_state)
    return curves


def _chunked_mean(n: int, size: int, loss: Callable[[slice], torch.Tensor]) -> float:
    """Mean of a per-example loss computed over consecutive chunks (weighted by chunk length)."""
    total = 0.0
    for start in range(0, n, size):
        part = slice(start, min(start + size, n))
        total += loss(part).item() * (part.stop - part.start)
    return total / n


def info_nce(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor, same_product: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE of aligned rows; off-diagonal pairs of the same product are masked, not negatives."""
    n = len(img)
    logits = scale * img @ txt.T
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=img.device)
    logits = logits.masked_fill(same_product & off_diagonal, float("-inf"))
    target = torch.arange(n, device=img.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


@register_fusion_head
class CosineHead(FusionHead):
    name = "cosine"
    description = "Zero-shot cosine similarity of a dual encoder's vectors (needs one shared space); no training."
    embeds = True

    def fit(
        self,
        data: FusionData,
        train: PairSet,
        val: PairSet,
        *,
        seed: int,
        device: Device,
        progress: ProgressFn | None = None,
    ) -> dict[str, Any]:
        self._check_dims(data)
        return {"train_loss": [], "val_loss": [], "best_epoch": 0}

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
        return _l2(data.image_vecs), _l2(data.text_vecs)


class _Towers(nn.Module):
    def __init__(self, d_img: int, d_txt: int, dim: int, hidden: int, temperature: float) -> None:
        super().__init__()
        self.image = _mlp(d_img, hidden, dim, 0.0)
        self.text = _mlp(d_txt, hidden, dim, 0.0)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))

    def scale(self) -> torch.Tensor:
        return self.log_scale.clamp(max=math.log(100.0)).exp()


class _TrainedHead(FusionHead):
    """A head with fitted state; using it before `fit` is an error."""

    _fitted: bool = False

    def _check_fitted(self) -> None:
        if not self._fitted:
            raise RuntimeError(f"fusion head '{self.name}' is not fitted; call fit() first")


@register_fusion_head
class ContrastiveHead(_TrainedHead):
    name = "contrastive"
    description = (
        "Linear (hidden=0) or MLP projection of each modality into a joint space, trained with "
        "symmetric InfoNCE and a learnable temperature on positive train pairs."
    )
    defaults = {
        "dim": 128,
        "hidden": 0,
        "temperature": 0.07,
        **TRAIN_DEFAULTS,
        "epochs": 50,
        "batch_size": 128,
    }
    embeds = True

    def fit(
        self,
        data: FusionData,
        train: PairSet,
        val: PairSet,
        *,
        seed: int,
        device: Device,
        progress: ProgressFn | None = None,
    ) -> dict[str, Any]:
        train, val = train.positives(), val.positives()
        _require_pairs(train, val, "contrastive (positives)")
        self._device = torch.device(device)
        self._std_img = _Standardizer(data.image_vecs[np.unique(train.image_idx)])
        self._std_txt = _Standardizer(data.text_vecs[np.unique(train.text_idx)])
        img = torch.from_numpy(self._std_img(data.image_vecs)).to(self._device)
        txt = torch.from_numpy(self._std_txt(data.text_vecs)).to(self._device)
        img_code, txt_code = (torch.from_numpy(c).to(self._device) for c in _product_codes(data))
        torch.manual_seed(seed)
        o = self.options
        self.towers = _Towers(img.shape[1], txt.shape[1], o["dim"], o["hidden"], o["temperature"]).to(self._device)

        def loss(pairs: PairSet, rows: np.ndarray | slice) -> torch.Tensor:
            ii = torch.from_numpy(pairs.image_idx[rows]).to(self._device)
            tt = torch.from_numpy(pairs.text_idx[rows]).to(self._device)
            zi = F.normalize(self.towers.image(img[ii]), dim=-1)
            zt = F.normalize(self.towers.text(txt[tt]), dim=-1)
            same = img_code[ii][:, None] == txt_code[tt][None, :]
            return info_nce(zi, zt, self.towers.scale(), same)

        curves = _train(
            self.towers,
            len(train),
            lambda rows: loss(train, rows),
            lambda: _chunked_mean(len(val), o["batch_size"], lambda part: loss(val, part)),
            o,
            seed,
            progress,
        )
        self._fitted = True
        return curves

    def embed(self, data: FusionData) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted()
        self.towers.eval()
        with torch.inference_mode():
            return (
                self._project(self.towers.image, self._std_img(data.image_vecs)),
                self._project(self.towers.text, self._std_txt(data.text_vecs)),
            )

    def _project(self, tower: nn.Module, x: np.ndarray) -> np.ndarray:
        parts = [
            F.normalize(tower(torch.from_numpy(x[s : s + SCORE_CHUNK]).to(self._device)), dim=-1).cpu().numpy()
            for s in range(0, len(x), SCORE_CHUNK)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self.options["dim"]), dtype=np.float32)


@register_fusion_head
class CCAHead(_TrainedHead):
    """Regularised CCA in closed form: whiten each modality, then an SVD of the whitened cross-covariance.

    Exact and deterministic (no iterative NIPALS), so it fits in milliseconds where scikit-learn's CCA needs
    minutes on a few thousand 500-d pairs; ``reg`` (relative to the mean variance) keeps the whitening stable.
    """

    name = "cca"
    description = "Regularised canonical correlation analysis on positive train pairs; cosine in canonical space."
    defaults = {"n_components": 32, "reg": 1e-3}
    embeds = True

    def fit(
        self,
        data: FusionData,
        train: PairSet,
        val: PairSet,
        *,
        seed: int,
        device: Device,
        progress: ProgressFn | None = None,
    ) -> dict[str, Any]:
        pos = train.positives()
        k = int(self.options["n_components"])
        limit = min(data.image_vecs.shape[1], data.text_vecs.shape[1], len(pos))
        if not 1 <= k <= limit:
            raise ValueError(
                f"cca n_components must be in [1, {limit}] (min of image dim, text dim, positive train pairs); got {k}"
            )
        self._std_img = _Standardizer(data.image_vecs[pos.image_idx])
        self._std_txt = _Standardizer(data.text_vecs[pos.text_idx])
        x = self._std_img(data.image_vecs[pos.image_idx]).astype(np.float64)
        y = self._std_txt(data.text_vecs[pos.text_idx]).astype(np.float64)
        wx, wy = _inverse_sqrt(x, float(self.options["reg"])), _inverse_sqrt(y, float(self.options["reg"]))
        u, _, vt = np.linalg.svd(wx @ (x.T @ y / max(len(x) - 1, 1)) @ wy)
        self._x_rot = (wx @ u[:, :k]).astype(np.float32)
        self._y_rot = (wy @ vt.T[:, :k]).astype(np.float32)
        self._fitted = True
        return {"train_loss": [], "val_loss": [], "best_epoch": 0}

    def embed(self, data: FusionData) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted()
        return _l2(self._std_img(data.image_vecs) @ self._x_rot), _l2(self._std_txt(data.text_vecs) @ self._y_rot)


def _inverse_sqrt(x: np.ndarray, reg: float) -> np.ndarray:
    """(Cov(x) + reg·mean variance·I)^(-1/2) by eigendecomposition."""
    cov = x.T @ x / max(len(x) - 1, 1)
    cov += np.eye(len(cov)) * reg * max(float(np.trace(cov)) / len(cov), 1e-12)
    values, vectors = np.linalg.eigh(cov)
    return (vectors / np.sqrt(np.maximum(values, 1e-12))) @ vectors.T


class _PairHead(_TrainedHead):
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

    def fit(
        self,
        data: FusionData,
        train: PairSet,
        val: PairSet,
        *,
        seed: int,
        device: Device,
        progress: ProgressFn | None = None,
    ) -> dict[str, Any]:
        _require_pairs(train, val, self.name)
        self._check_data(data)
        self._device = torch.device(device)
        torch.manual_seed(seed)
        self.model = self._setup(data, train).to(self._device)
        curves = _train(
            self.model,
            len(train),
            lambda rows: self._loss(data, train.image_idx[rows], train.text_idx[rows], train.label[rows]),
            lambda: _chunked_mean(
                len(val),
                SCORE_CHUNK,
                lambda p: self._loss(data, val.image_idx[p], val.text_idx[p], val.label[p]),
            ),
            self.options,
            seed,
            progress,
        )
        self._fitted = True
        return curves

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


class _VectorPairHead(_PairHead):
    """A pair scorer over the pooled image and text vectors (standardised as the module docstring says)."""

    @abstractmethod
    def _build(self, d_img: int, d_txt: int, data: FusionData) -> nn.Module:
        """The model, given input dimensions."""

    def _setup(self, data: FusionData, train: PairSet) -> nn.Module:
        self._std_img = _Standardizer(data.image_vecs[np.unique(train.image_idx)])
        self._std_txt = _Standardizer(data.text_vecs[np.unique(train.text_idx)])
        return self._build(data.image_vecs.shape[1], data.text_vecs.shape[1], data)

    def _vectors(self, data: FusionData, ii: np.ndarray, tt: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            torch.from_numpy(self._std_img(data.image_vecs[ii])).to(self._device),
            torch.from_numpy(self._std_txt(data.text_vecs[tt])).to(self._device),
        )

    def _inputs(self, data: FusionData, ii: np.ndarray, tt: np.ndarray) -> tuple[torch.Tensor, ...]:
        return self._vectors(data, ii, tt)


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
        return self.match(self.fused(_interactions(self.image(v), self.text(t)))).squeeze(-1)


_MLP_DEFAULTS: dict[str, Any] = {"width": 128, "hidden": 256, "dropout": 0.1, **TRAIN_DEFAULTS}


@register_fusion_head
class ConcatMLPHead(_VectorPairHead):
    name = "concat_mlp"
    description = "MLP classifier over [v, t, v*t, |v-t|] after projecting both modalities to one width; BCE."
    defaults = dict(_MLP_DEFAULTS)

    def _build(self, d_img: int, d_txt: int, data: FusionData) -> nn.Module:
        o = self.options
        return _InteractionMLP(d_img, d_txt, o["width"], o["hidden"], o["dropout"])


@register_fusion_head
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

    def fit(
        self,
        data: FusionData,
        train: PairSet,
        val: PairSet,
        *,
        seed: int,
        device: Device,
        progress: ProgressFn | None = None,
    ) -> dict[str, Any]:
        """As every pair head, plus ``val_category_accuracy`` of the category head on the val images (None when
        no val image has a known category), so that it is stored with the run."""
        curves = super().fit(data, train, val, seed=seed, device=device, progress=progress)
        images = np.unique(val.image_idx)
        known = images[np.asarray(data.image_category)[images] >= 0]
        curves["val_category_accuracy"] = self.category_accuracy(data, known) if len(known) else None
        return curves

    def category_accuracy(self, data: FusionData, image_idx: np.ndarray) -> float:
        """Accuracy of the image-category head over images with a known category."""
        self._check_fitted()
        idx = np.asarray(image_idx, dtype=np.int64)
        idx = idx[np.asarray(data.image_category)[idx] >= 0]
        if len(idx) == 0:
            raise ValueError("no image with a known category (image_category >= 0) among image_idx")
        self.model.eval()
        with torch.inference_mode():
            v = torch.from_numpy(self._std_img(data.image_vecs[idx])).to(self._device)
            predicted = self.model.category(self.model.image(v)).argmax(-1).cpu().numpy()
        return float(np.mean(predicted == np.asarray(data.image_category)[idx]))


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(x.dtype)
    return (x * weights).sum(1) / weights.sum(1)


class _CrossAttention(nn.Module):
    def __init__(self, d_img: int, d_txt: int, width: int, num_heads: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.image = nn.Sequential(nn.LayerNorm(d_img), nn.Linear(d_img, width))
        self.text = nn.Sequential(nn.LayerNorm(d_txt), nn.Linear(d_txt, width))
        self.attention = nn.ModuleList(
            nn.MultiheadAttention(width, num_heads, dropout=dropout, batch_first=True) for _ in range(layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(layers - 1))
        self.out = _mlp(4 * width, 2 * width, 1, dropout)

    def attend(
        self, img: torch.Tensor, img_mask: torch.Tensor, txt: torch.Tensor, *, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Text tokens, their image context from the last layer, and its head-averaged weights (B, Lt, Li)."""
        v, query = self.image(img), self.text(txt)
        x, weights = query, None
        for k, attention in enumerate(self.attention):
            context, weights = attention(x, v, v, key_padding_mask=~img_mask, need_weights=need_weights)
            if k < len(self.norms):
                x = self.norms[k](x + context)
        return query, context, weights

    def forward(
        self, img: torch.Tensor, img_mask: torch.Tensor, txt: torch.Tensor, txt_mask: torch.Tensor
    ) -> torch.Tensor:
        query, context, _ = self.attend(img, img_mask, txt)
        return self.out(_interactions(_masked_mean(query, txt_mask), _masked_mean(context, txt_mask))).squeeze(-1)


def _token_arrays(data: FusionData) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Image tokens, image mask, text tokens, text mask (an absent mask means every token is real)."""
    if data.image_tokens is None or data.text_tokens is None:
        raise ValueError(
            "cross_attention needs token-level features; data.image_tokens/text_tokens are None "
            "(choose token-level encoders)"
        )
    img, txt = data.image_tokens, data.text_tokens
    img_mask = np.ones(img.shape[:2], dtype=bool) if data.image_mask is None else np.asarray(data.image_mask, bool)
    txt_mask = np.ones(txt.shape[:2], dtype=bool) if data.text_mask is None else np.asarray(data.text_mask, bool)
    return img, img_mask, txt, txt_mask


@register_fusion_head
class CrossAttentionHead(_PairHead):
    name = "cross_attention"
    description = (
        "Text tokens attend to image region tokens (1-2 multi-head attention layers); pooled text and "
        "attended context feed an MLP logit; BCE on labelled pairs."
    )
    defaults = {"width": 64, "num_heads": 4, "layers": 1, "dropout": 0.1, **TRAIN_DEFAULTS, "batch_size": 128}
    needs_tokens = True

    def _check_data(self, data: FusionData) -> None:
        img, img_mask, txt, txt_mask = _token_arrays(data)
        for side, mask in (("image", img_mask), ("text", txt_mask)):
            empty = np.flatnonzero(~mask.any(axis=1))
            if len(empty):
                raise ValueError(
                    f"cross_attention needs at least one unmasked token per item; {side} rows "
                    f"{empty[:10].tolist()} have none"
                )

    def _setup(self, data: FusionData, train: PairSet) -> nn.Module:
        o = self.options
        if o["layers"] not in (1, 2):
            raise ValueError(f"cross_attention layers must be 1 or 2; got {o['layers']}")
        img, _, txt, _ = _token_arrays(data)
        return _CrossAttention(img.shape[2], txt.shape[2], o["width"], o["num_heads"], o["layers"], o["dropout"])

    def _inputs(self, data: FusionData, ii: np.ndarray, tt: np.ndarray) -> tuple[torch.Tensor, ...]:
        img, img_mask, txt, txt_mask = _token_arrays(data)
        arrays = (
            np.asarray(img[ii], dtype=np.float32),
            img_mask[ii],
            np.asarray(txt[tt], dtype=np.float32),
            txt_mask[tt],
        )
        return tuple(torch.from_numpy(a).to(self._device) for a in arrays)

    def attention_weights(self, data: FusionData, image_idx: np.ndarray, text_idx: np.ndarray) -> np.ndarray:
        """(N, Lt, Li) last-layer weights (averaged over heads); rows sum to 1 over unmasked image regions."""
        self._check_fitted()
        self._check_data(data)
        ii, tt = as_pair_index(image_idx, text_idx)
        img, _, txt, _ = _token_arrays(data)
        out = np.empty((len(ii), txt.shape[1], img.shape[1]), dtype=np.float32)
        self.model.eval()
        with torch.inference_mode():
            for s in range(0, len(ii), SCORE_CHUNK):
                part = slice(s, s + SCORE_CHUNK)
                v, v_mask, t, _ = self._inputs(data, ii[part], tt[part])
                out[part] = self.model.attend(v, v_mask, t, need_weights=True)[2].cpu().numpy()
        return out


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


@register_fusion_head
class AttributeTagsHead(_VectorPairHead):
    name = "attribute_tags"
    description = (
        "Bilinear score r_img^T W r_txt over [proj(v), image tags] and [proj(t), text tags]; trained "
        "with -log σ(s+) - log(1 - σ(s-)) on labelled pairs."
    )
    defaults = {"width": 64, **TRAIN_DEFAULTS}

    def _build(self, d_img: int, d_txt: int, data: FusionData) -> nn.Module:
        return _TagBilinear(d_img, d_txt, data.image_tags.shape[1], self.options["width"])

    def _inputs(self, data: FusionData, ii: np.ndarray, tt: np.ndarray) -> tuple[torch.Tensor, ...]:
        v, t = self._vectors(data, ii, tt)
        v_tags = torch.from_numpy(np.asarray(data.image_tags[ii], dtype=np.float32)).to(self._device)
        t_tags = torch.from_numpy(np.asarray(data.text_tags[tt], dtype=np.float32)).to(self._device)
        return v, v_tags, t, t_tags


def _tagged(progress: ProgressFn | None, head: str, index: int) -> ProgressFn | None:
    """Forward a sub-head's progress with its name and position added to the info."""
    if progress is None:
        return None
    return lambda epoch, epochs, info: progress(epoch, epochs, {**info, "head": head, "head_index": index})


@register_fusion_head
class LateFusionHead(_TrainedHead):
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

    def fit(
        self,
        data: FusionData,
        train: PairSet,
        val: PairSet,
        *,
        seed: int,
        device: Device,
        progress: ProgressFn | None = None,
    ) -> dict[str, Any]:
        _require_pairs(train, val, self.name)
        if len(np.unique(val.label)) < 2:
            raise ValueError("late_fusion fits its combiner on val and needs both labels there")
        curves = [
            head.fit(data, train, val, seed=seed, device=device, progress=_tagged(progress, head.name, k))
            for k, head in enumerate(self.sub_heads)
        ]
        scores = self._sub_scores(data, val.image_idx, val.text_idx)
        std = scores.std(axis=0)
        self._mean, self._std = scores.mean(axis=0), np.where(std > 1e-12, std, 1.0)
        self.combiner = LogisticRegression(C=self.options["C"]).fit((scores - self._mean) / self._std, val.label)
        self._fitted = True
        return {
            "train_loss": [],
            "val_loss": [],
            "best_epoch": 0,
            "heads": curves,
            "weights": self.combiner.coef_[0].tolist(),
        }

    def _sub_scores(self, data: FusionData, image_idx: np.ndarray, text_idx: np.ndarray) -> np.ndarray:
        return np.stack([head.score_pairs(data, image_idx, text_idx) for head in self.sub_heads], axis=1)

    def score_pairs(self, data: FusionData, image_idx: np.ndarray, text_idx: np.ndarray) -> np.ndarray:
        self._check_fitted()
        ii, tt = as_pair_index(image_idx, text_idx)
        scores = (self._sub_scores(data, ii, tt) - self._mean) / self._std
        return self.combiner.decision_function(scores).astype(np.float32)


def _require_tokens(data: FusionData, head: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`_token_arrays` with the head's own name in the error, plus at least one real token per item."""
    if data.image_tokens is None or data.text_tokens is None:
        raise ValueError(
            f"{head} needs token-level features; data.image_tokens/text_tokens are None (choose token-level encoders)"
        )
    arrays = _token_arrays(data)
    for side, mask in (("image", arrays[1]), ("text", arrays[3])):
        empty = np.flatnonzero(~mask.any(axis=1))
        if len(empty):
            raise ValueError(
                f"{head} needs at least one unmasked token per item; {side} rows {empty[:10].tolist()} have none"
            )
    return arrays


class _TokenPairHead(_PairHead):
    """A pair scorer over image region tokens and text tokens (with masks).

    Its model exposes ``encode_image(tokens, mask)`` and ``encode_text(tokens, mask)`` (per item, independent of
    the pair) and ``match(image, image_mask, text, text_mask)``; scoring encodes each distinct item of a chunk
    once, which matters when a whole retrieval gallery (every text × every image) is scored.
    """

    needs_tokens = True

    def _check_data(self, data: FusionData) -> None:
        _require_tokens(data, self.name)

    def _inputs(self, data: FusionData, ii: np.ndarray, tt: np.ndarray) -> tuple[torch.Tensor, ...]:
        img, img_mask, txt, txt_mask = _token_arrays(data)
        arrays = (np.asarray(img[ii], np.float32), img_mask[ii], np.asarray(txt[tt], np.float32), txt_mask[tt])
        return tuple(torch.from_numpy(a).to(self._device) for a in arrays)

    def _encoded(self, data: FusionData, ii: np.ndarray, tt: np.ndarray) -> tuple[torch.Tensor, ...]:
        """The model's per-item encodings of the pairs' images and texts, each distinct item encoded once."""
        img, img_mask, txt, txt_mask = _token_arrays(data)
        ui, inv_i = np.unique(ii, return_inverse=True)
        ut, inv_t = np.unique(tt, return_inverse=True)
        v_mask = torch.from_numpy(img_mask[ui]).to(self._device)
        t_mask = torch.from_numpy(txt_mask[ut]).to(self._device)
        v = self.model.encode_image(torch.from_numpy(np.asarray(img[ui], np.float32)).to(self._device), v_mask)
        t = self.model.encode_text(torch.from_numpy(np.asarray(txt[ut], np.float32)).to(self._device), t_mask)
        inv_i, inv_t = torch.from_numpy(inv_i).to(self._device), torch.from_numpy(inv_t).to(self._device)
        return v[inv_i], v_mask[inv_i], t[inv_t], t_mask[inv_t]

    def _score_chunk(self, data: FusionData, ii: np.ndarray, tt: np.ndarray) -> torch.Tensor:
        return self.model.match(*self._encoded(data, ii, tt))


class _TokenModel(nn.Module):
    """A token pair model: per-item ``encode_image`` / ``encode_text`` and a ``match`` of encoded pairs."""

    def forward(
        self, img: torch.Tensor, img_mask: torch.Tensor, txt: torch.Tensor, txt_mask: torch.Tensor
    ) -> torch.Tensor:
        return self.match(self.encode_image(img, img_mask), img_mask, self.encode_text(txt, txt_mask), txt_mask)


class _SoftAttentionCosine(_TokenModel):
    """Pooled text → query; scaled dot-product soft attention over image regions; cosine × learnable scale."""

    def __init__(self, d_img: int, d_txt: int, width: int, temperature: float) -> None:
        super().__init__()
        self.image = nn.Sequential(nn.LayerNorm(d_img), nn.Linear(d_img, width))
        self.text = nn.Sequential(nn.LayerNorm(d_txt), nn.Linear(d_txt, width))
        self.key = nn.Linear(width, width, bias=False)
        self.query = nn.Linear(width, width, bias=False)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))
        self.bias = nn.Parameter(torch.zeros(()))

    def encode_image(self, img: torch.Tensor, img_mask: torch.Tensor) -> torch.Tensor:
        return self.image(img)

    def encode_text(self, txt: torch.Tensor, txt_mask: torch.Tensor) -> torch.Tensor:
        return _masked_mean(self.text(txt), txt_mask)

    def attend(
        self, regions: torch.Tensor, img_mask: torch.Tensor, text: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attended image vector (B, w) and the weights (B, Li) of the pooled text over the image regions."""
        logits = torch.einsum("bd,bld->bl", self.query(text), self.key(regions)) / math.sqrt(regions.shape[-1])
        weights = logits.masked_fill(~img_mask, float("-inf")).softmax(dim=-1)
        return torch.einsum("bl,bld->bd", weights, regions), weights

    def match(
        self, regions: torch.Tensor, img_mask: torch.Tensor, text: torch.Tensor, txt_mask: torch.Tensor
    ) -> torch.Tensor:
        attended, _ = self.attend(regions, img_mask, text)
        scale = self.log_scale.clamp(max=math.log(100.0)).exp()
        return scale * F.cosine_similarity(attended, text, dim=-1) + self.bias


@register_fusion_head
class SoftAttentionCosineHead(_TokenPairHead):
    name = "soft_attention_cosine"
    description = (
        "The pooled text attends (soft attention, softmax over image regions) to the image's region tokens; "
        "score = learnable scale × cosine(attended image, text) + bias (a logit); BCE on labelled pairs."
    )
    defaults = {"width": 64, "temperature": 0.1, **TRAIN_DEFAULTS, "batch_size": 128}

    def _setup(self, data: FusionData, train: PairSet) -> nn.Module:
        img, _, txt, _ = _token_arrays(data)
        o = self.options
        return _SoftAttentionCosine(img.shape[2], txt.shape[2], o["width"], o["temperature"])

    def attention_weights(self, data: FusionData, image_idx: np.ndarray, text_idx: np.ndarray) -> np.ndarray:
        """(N, Li) weights of each pair's text over its image's regions; rows sum to 1 over unmasked regions."""
        self._check_fitted()
        self._check_data(data)
        ii, tt = as_pair_index(image_idx, text_idx)
        out = np.empty((len(ii), data.image_tokens.shape[1]), dtype=np.float32)
        self.model.eval()
        with torch.inference_mode():
            for s in range(0, len(ii), SCORE_CHUNK):
                part = slice(s, s + SCORE_CHUNK)
                regions, mask, text, _ = self._encoded(data, ii[part], tt[part])
                out[part] = self.model.attend(regions, mask, text)[1].cpu().numpy()
        return out


class _AttentionFusion(_TokenModel):
    """Image and text tokens (projected, plus a modality embedding) are concatenated, mixed by ``layers``
    Transformer encoder layers, and pooled by a learned query (multi-head attention) into one product vector."""

    def __init__(
        self, d_img: int, d_txt: int, width: int, num_heads: int, layers: int, hidden: int, dropout: float
    ) -> None:
        super().__init__()
        self.image = nn.Sequential(nn.LayerNorm(d_img), nn.Linear(d_img, width))
        self.text = nn.Sequential(nn.LayerNorm(d_txt), nn.Linear(d_txt, width))
        self.modality = nn.Parameter(0.02 * torch.randn(2, width))
        self.mixer = nn.ModuleList(
            nn.TransformerEncoderLayer(width, num_heads, 2 * width, dropout, batch_first=True, norm_first=True)
            for _ in range(layers)
        )
        self.query = nn.Parameter(0.02 * torch.randn(1, 1, width))
        self.pool = nn.MultiheadAttention(width, num_heads, dropout=dropout, batch_first=True)
        self.out = _mlp(width, hidden, 1, dropout)

    def encode_image(self, img: torch.Tensor, img_mask: torch.Tensor) -> torch.Tensor:
        return self.image(img) + self.modality[0]

    def encode_text(self, txt: torch.Tensor, txt_mask: torch.Tensor) -> torch.Tensor:
        return self.text(txt) + self.modality[1]

    def fuse(
        self, img: torch.Tensor, img_mask: torch.Tensor, txt: torch.Tensor, txt_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """From encoded tokens: one product vector (B, width) and the pooling weights (B, Li + Lt)."""
        tokens = torch.cat([img, txt], dim=1)
        padding = ~torch.cat([img_mask, txt_mask], dim=1)
        for layer in self.mixer:
            tokens = layer(tokens, src_key_padding_mask=padding)
        query = self.query.expand(len(tokens), -1, -1)
        pooled, weights = self.pool(query, tokens, tokens, key_padding_mask=padding)
        return pooled[:, 0], weights[:, 0]

    def match(
        self, img: torch.Tensor, img_mask: torch.Tensor, txt: torch.Tensor, txt_mask: torch.Tensor
    ) -> torch.Tensor:
        return self.out(self.fuse(img, img_mask, txt, txt_mask)[0]).squeeze(-1)


@register_fusion_head
class AttentionFusionHead(_TokenPairHead):
    name = "attention_fusion"
    description = (
        "Image region tokens and text tokens, projected to one width, are concatenated and fused by attention "
        "(Transformer layers, then a learned query) into one product representation → MLP → match logit; BCE."
    )
    defaults = {
        "width": 64,
        "num_heads": 4,
        "layers": 1,
        "hidden": 64,
        "dropout": 0.1,
        **TRAIN_DEFAULTS,
        "batch_size": 128,
    }

    def _setup(self, data: FusionData, train: PairSet) -> nn.Module:
        o = self.options
        if not 0 <= int(o["layers"]) <= 4:
            raise ValueError(f"attention_fusion layers must be in [0, 4]; got {o['layers']}")
        img, _, txt, _ = _token_arrays(data)
        return _AttentionFusion(
            img.shape[2], txt.shape[2], o["width"], o["num_heads"], int(o["layers"]), o["hidden"], o["dropout"]
        )

    def fused(self, data: FusionData, image_idx: np.ndarray, text_idx: np.ndarray) -> np.ndarray:
        """(N, width) fused product representations of the pairs (before the match MLP)."""
        self._check_fitted()
        self._check_data(data)
        ii, tt = as_pair_index(image_idx, text_idx)
        self.model.eval()
        with torch.inference_mode():
            parts = [
                self.model.fuse(*self._encoded(data, ii[s : s + SCORE_CHUNK], tt[s : s + SCORE_CHUNK]))[0].cpu().numpy()
                for s in range(0, len(ii), SCORE_CHUNK)
            ]
        return np.concatenate(parts) if parts else np.zeros((0, self.options["width"]), np.float32)
