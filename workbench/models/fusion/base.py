"""The fusion-head contract (`FusionData`, `PairSet`, `FusionHead`) and the registry.

A fusion head turns encoded images and texts into match scores (higher = more likely a match). This module
knows no head: the package registers the built-ins on import, and plug-ins call `register_fusion_head`.

Normalisation, stated once: heads never assume encoder outputs are L2-normalised or standardised; each head
normalises its own inputs. `embed()` returns L2-normalised joint vectors, so for embedding heads a score is
the cosine (dot product) there.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

ProgressFn = Callable[[int, int, dict[str, float]], None]
"""`progress(epoch, epochs, info)`: epoch is 1-based; info holds `train_loss`, `val_loss`, `best_epoch`."""

Device = torch.device | str


@dataclass
class FusionData:
    """One eval set's encoded items, all splits.

    Token masks are True for real tokens and False for padding. Tags are multi-hot over one shared
    vocabulary. Product ids may be None (texts only in labelled negatives); categories: int codes, -1 unknown.
    """

    image_vecs: np.ndarray  # (Ni, Di)
    text_vecs: np.ndarray  # (Nt, Dt)
    image_tokens: np.ndarray | None  # (Ni, Li, D)
    image_mask: np.ndarray | None  # (Ni, Li)
    text_tokens: np.ndarray | None  # (Nt, Lt, D)
    text_mask: np.ndarray | None  # (Nt, Lt)
    image_tags: np.ndarray  # (Ni, T)
    text_tags: np.ndarray  # (Nt, T)
    image_product: np.ndarray  # (Ni,) object
    text_product: np.ndarray  # (Nt,) object
    image_category: np.ndarray  # (Ni,) int

    def __post_init__(self) -> None:
        for name in ("image_vecs", "text_vecs", "image_tags", "text_tags"):
            if np.ndim(getattr(self, name)) != 2:
                raise ValueError(f"{name} must be 2-D; got shape {np.shape(getattr(self, name))}")
        n_img, n_txt = len(self.image_vecs), len(self.text_vecs)
        rows = {
            "image_tags": n_img,
            "image_product": n_img,
            "image_category": n_img,
            "text_tags": n_txt,
            "text_product": n_txt,
        }
        for side, n in (("image", n_img), ("text", n_txt)):
            tokens, mask = getattr(self, f"{side}_tokens"), getattr(self, f"{side}_mask")
            if tokens is not None and np.ndim(tokens) != 3:
                raise ValueError(f"{side}_tokens must be 3-D (N, L, D); got shape {np.shape(tokens)}")
            if mask is not None and (tokens is None or np.shape(mask) != np.shape(tokens)[:2]):
                raise ValueError(
                    f"{side}_mask shape {np.shape(mask)} does not match {side}_tokens "
                    f"{None if tokens is None else np.shape(tokens)}"
                )
            if tokens is not None:
                rows[f"{side}_tokens"] = n
        for name, n in rows.items():
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows; expected {n}")
        if self.image_tags.shape[1] != self.text_tags.shape[1]:
            raise ValueError(
                f"image_tags and text_tags need one vocabulary; got widths "
                f"{self.image_tags.shape[1]} and {self.text_tags.shape[1]}"
            )


@dataclass
class PairSet:
    """Labelled (image, text) pairs of one split; indices are rows of `FusionData`."""

    image_idx: np.ndarray
    text_idx: np.ndarray
    label: np.ndarray

    def __post_init__(self) -> None:
        self.image_idx = np.asarray(self.image_idx, dtype=np.int64)
        self.text_idx = np.asarray(self.text_idx, dtype=np.int64)
        self.label = np.asarray(self.label, dtype=np.int64)
        shapes = {a.shape for a in (self.image_idx, self.text_idx, self.label)}
        if len(shapes) != 1 or self.label.ndim != 1:
            raise ValueError(
                f"image_idx, text_idx and label must be 1-D of one length; got shapes "
                f"{self.image_idx.shape}, {self.text_idx.shape}, {self.label.shape}"
            )
        if not np.isin(self.label, (0, 1)).all():
            raise ValueError(f"labels must be 0 or 1; got {sorted(set(np.unique(self.label).tolist()) - {0, 1})}")

    def __len__(self) -> int:
        return len(self.label)

    def subset(self, mask: np.ndarray) -> PairSet:
        """The pairs selected by a boolean mask or an index array."""
        return PairSet(self.image_idx[mask], self.text_idx[mask], self.label[mask])

    def positives(self) -> PairSet:
        return self.subset(self.label == 1)


@dataclass
class PairTensors:
    """Aligned pairs as torch tensors on one device: the inputs of a head's differentiable scoring path
    (`FusionHead.score_tensors`), which explanations differentiate through. Absent masks mean all tokens are real."""

    image_vecs: torch.Tensor  # (N, Di)
    text_vecs: torch.Tensor  # (N, Dt)
    image_tokens: torch.Tensor | None = None  # (N, Li, D)
    image_mask: torch.Tensor | None = None  # (N, Li) bool
    text_tokens: torch.Tensor | None = None  # (N, Lt, D)
    text_mask: torch.Tensor | None = None  # (N, Lt) bool
    image_tags: torch.Tensor | None = None  # (N, T)
    text_tags: torch.Tensor | None = None  # (N, T)

    @classmethod
    def from_fusion_data(
        cls, data: FusionData, image_idx: np.ndarray, text_idx: np.ndarray, device: Device = "cpu"
    ) -> PairTensors:
        """The rows of pairs (image_idx, text_idx) of `data` as tensors."""
        ii, tt = as_pair_index(image_idx, text_idx)

        def tensor(array: np.ndarray | None, rows: np.ndarray, dtype: type = np.float32) -> torch.Tensor | None:
            return None if array is None else torch.from_numpy(np.asarray(array[rows], dtype=dtype)).to(device)

        return cls(
            image_vecs=tensor(data.image_vecs, ii),
            text_vecs=tensor(data.text_vecs, tt),
            image_tokens=tensor(data.image_tokens, ii),
            image_mask=tensor(data.image_mask, ii, bool),
            text_tokens=tensor(data.text_tokens, tt),
            text_mask=tensor(data.text_mask, tt, bool),
            image_tags=tensor(data.image_tags, ii),
            text_tags=tensor(data.text_tags, tt),
        )

    def masks(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Image and text token masks (all True where absent); needs the tokens."""
        if self.image_tokens is None or self.text_tokens is None:
            raise ValueError("token heads need image_tokens and text_tokens (choose token-level encoders)")
        img = (
            self.image_mask
            if self.image_mask is not None
            else self.image_tokens.new_ones(self.image_tokens.shape[:2], dtype=torch.bool)
        )
        txt = (
            self.text_mask
            if self.text_mask is not None
            else self.text_tokens.new_ones(self.text_tokens.shape[:2], dtype=torch.bool)
        )
        return img, txt


def as_pair_index(image_idx: np.ndarray, text_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert two aligned 1-D index arrays."""
    ii, tt = np.asarray(image_idx, dtype=np.int64), np.asarray(text_idx, dtype=np.int64)
    if ii.ndim != 1 or ii.shape != tt.shape:
        raise ValueError(f"image_idx and text_idx must be 1-D of one length; got shapes {ii.shape} and {tt.shape}")
    return ii, tt


class FusionHead(ABC):
    """Scores (image, text) pairs from `FusionData`.

    Subclasses declare `defaults` (option name → default); `config_keys` is derived from it. Embedding heads
    (`embeds = True`) implement `embed()` and inherit cosine scoring; pair scorers implement `score_pairs()`.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    config_keys: ClassVar[tuple[str, ...]] = ()
    embeds: ClassVar[bool] = False
    needs_tokens: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.config_keys = tuple(cls.defaults)

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.config_keys))
        if unknown:
            raise ValueError(
                f"Unknown option(s) {unknown} for fusion head '{self.name}'. Valid keys: {list(self.config_keys)}"
            )
        self.options: dict[str, Any] = copy.deepcopy({**self.defaults, **options})

    def get_config_dict(self) -> dict[str, Any]:
        """All options, defaults filled in; `create_fusion_head(name, **config)` rebuilds the head."""
        return copy.deepcopy(self.options)

    @property
    def uses_tokens(self) -> bool:
        """Whether this instance needs token-level features (a combination can need them via a sub-head)."""
        return self.needs_tokens

    @abstractmethod
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
        """Train on `train`, early-stop on `val`; return curves {"train_loss", "val_loss", "best_epoch"}."""

    def embed(self, data: FusionData) -> tuple[np.ndarray, np.ndarray] | None:
        """L2-normalised joint-space vectors (Ni, d), (Nt, d); None for heads without a joint space."""
        return None

    def score_pairs(self, data: FusionData, image_idx: np.ndarray, text_idx: np.ndarray) -> np.ndarray:
        """(N,) float32 scores, higher = more likely a match. Default: cosine in the joint space."""
        ii, tt = as_pair_index(image_idx, text_idx)
        joint = self.embed(data)
        if joint is None:
            raise NotImplementedError(f"fusion head '{self.name}' has no joint space and must define score_pairs")
        img, txt = joint
        return np.einsum("nd,nd->n", img[ii], txt[tt]).astype(np.float32)

    def score_tensors(self, pairs: PairTensors) -> torch.Tensor:
        """(N,) scores as a differentiable function of the pair tensors, equal to `score_pairs` on the same rows.

        Explanations differentiate through it; a head without one can still score, but not be explained by
        gradients.
        """
        raise NotImplementedError(
            f"fusion head '{self.name}' has no differentiable scoring path (score_tensors), so gradient-based "
            "explanations cannot pass through it"
        )

    def score_matrix(
        self, data: FusionData, image_idx: np.ndarray, text_idx: np.ndarray, *, chunk: int = 65536
    ) -> np.ndarray:
        """(len(text_idx), len(image_idx)) scores of every text against every image, `chunk` pairs a call."""
        image_idx = np.asarray(image_idx, dtype=np.int64)
        text_idx = np.asarray(text_idx, dtype=np.int64)
        joint = self.embed(data)
        if joint is not None:
            img, txt = joint
            return (txt[text_idx] @ img[image_idx].T).astype(np.float32)
        n_img = len(image_idx)
        out = np.empty((len(text_idx), n_img), dtype=np.float32)
        rows = max(1, chunk // max(1, n_img))
        for start in range(0, len(text_idx), rows):
            texts = text_idx[start : start + rows]
            scores = self.score_pairs(data, np.tile(image_idx, len(texts)), np.repeat(texts, n_img))
            out[start : start + len(texts)] = scores.reshape(len(texts), n_img)
        return out


@dataclass(frozen=True)
class FusionSpec:
    """Every registry fact about one fusion head."""

    name: str
    description: str
    config_keys: tuple[str, ...]
    defaults: dict[str, Any]
    embeds: bool
    needs_tokens: bool
    cls: type[FusionHead]


_REGISTRY: dict[str, type[FusionHead]] = {}


def register_fusion_head(cls: type[FusionHead]) -> type[FusionHead]:
    """Class decorator adding a head to the registry under `cls.name`."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} needs a non-empty `name` to be registered")
    existing = _REGISTRY.get(cls.name)
    if existing is not None and (existing.__module__, existing.__qualname__) != (
        cls.__module__,
        cls.__qualname__,
    ):
        raise ValueError(f"Fusion head '{cls.name}' is already registered by {existing.__qualname__}")
    _REGISTRY[cls.name] = cls
    return cls


def list_fusion_heads() -> list[str]:
    """Names of the registered heads, sorted."""
    return sorted(_REGISTRY)


def get_fusion_class(name: str) -> type[FusionHead]:
    """The head class registered under `name`; the error lists the available names."""
    if name not in _REGISTRY:
        raise KeyError(f"Fusion head '{name}' not found. Available: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def get_fusion_spec(name: str) -> FusionSpec:
    """The registry facts of one head (a copy of its defaults, safe to change)."""
    cls = get_fusion_class(name)
    return FusionSpec(
        cls.name,
        cls.description,
        cls.config_keys,
        copy.deepcopy(cls.defaults),
        cls.embeds,
        cls.needs_tokens,
        cls,
    )


def create_fusion_head(name: str, **options: Any) -> FusionHead:
    """A new, unfitted head; unknown options are an error that lists the valid keys."""
    return get_fusion_class(name)(**options)
