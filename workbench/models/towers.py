"""Small trainable towers: CNNs (plain, VGG-style, residual) for images, a character GRU and a word LSTM for texts.

Each is trained on the train split with one cross-entropy head per target (category, attributes); after ``fit``
the heads are dropped and the encoder returns the penultimate features. Training is deterministic for a seed on
CPU. The torch networks are in :mod:`~workbench.models.tower_nets`; the encoder classes stay here because a
class's module path enters its fingerprint, which keys the embedding cache.
"""

from __future__ import annotations

import hashlib
import json
from abc import abstractmethod
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from PIL import Image
from torch import nn

from workbench.data.images import PixelSpec
from workbench.models.base import Encoder, ProgressFn, hash_state_dict, register_encoder
from workbench.models.tower_nets import CharGRU, ConvNet, ResNet, VGGNet, WordLSTM

Batch = tuple[torch.Tensor, ...]
WEIGHTS_FILE = "model.safetensors"


def _training_defaults(lr: float) -> dict[str, Any]:
    """The options of the shared training loop (``TowerEncoder.fit``), declared once for every tower."""
    return {"epochs": 5, "batch_size": 32, "lr": lr}


@contextmanager
def seeded_deterministic(seed: int) -> Iterator[torch.Generator]:
    """Seed torch inside a forked RNG with deterministic algorithms on; yields a generator for shuffling."""
    previous = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield torch.Generator().manual_seed(seed)
        finally:
            torch.use_deterministic_algorithms(previous, warn_only=warn_only)


def _target_heads(targets: dict[str, np.ndarray], n_items: int) -> dict[str, tuple[int, torch.Tensor]]:
    """Targets usable as classification heads (>= 2 known classes): name -> (n_classes, labels)."""
    heads = {}
    for key, values in sorted(targets.items()):
        labels = np.asarray(values, dtype=np.int64)
        if labels.shape != (n_items,):
            raise ValueError(f"target '{key}' has shape {labels.shape}; expected ({n_items},)")
        known = labels[labels >= 0]
        if np.unique(known).size >= 2:
            heads[key] = (int(known.max()) + 1, torch.from_numpy(labels))
    return heads


class TowerEncoder(Encoder):
    """Shared training, pooling, fingerprinting and safetensors save/load of the trainable towers.

    Every option is a count or a rate: ``__init__`` casts each to the type of its default (int or float).
    """

    requires_fit = True
    token_level = True
    pad_token_id = 0  # the text towers' vocabularies reserve id 0 for padding (it embeds to zeros)
    dim: int
    epochs: int
    batch_size: int
    lr: float

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        for key, default in self.defaults.items():
            setattr(self, key, type(default)(getattr(self, key)))
        self._module: nn.Module | None = None

    @abstractmethod
    def _prepare(self, items: list) -> None:
        """Build what the module depends on from the train items (e.g. a vocabulary)."""

    @abstractmethod
    def _make_module(self) -> nn.Module:
        """A fresh module mapping a batch to (tokens (N, L, dim), mask (N, L))."""

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what ``_extra_state`` returned."""

    def fit(
        self,
        items: list,
        *,
        targets: dict[str, np.ndarray],
        seed: int,
        device: torch.device | str | None = None,
        progress: ProgressFn | None = None,
    ) -> None:
        device = torch.device(device or "cpu")
        heads_spec = _target_heads(targets, len(items))
        with seeded_deterministic(seed) as generator:
            self._prepare(items)
            module = self._make_module().to(device)
            heads = nn.ModuleList(nn.Linear(self.dim, n) for n, _ in heads_spec.values()).to(device)
            inputs = self.preprocess(items)
            self.fit_curves = {"train_loss": []}
            if heads_spec:
                optimizer = torch.optim.Adam([*module.parameters(), *heads.parameters()], lr=self.lr)
                module.train()
                for epoch in range(self.epochs):
                    order = torch.randperm(len(items), generator=generator)
                    total = 0.0
                    for start in range(0, len(items), self.batch_size):
                        idx = order[start : start + self.batch_size]
                        tokens, mask = module(*(t[idx].to(device) for t in inputs))
                        pooled = _masked_mean(tokens, mask)
                        loss = pooled.new_zeros(())
                        for head, (_, labels) in zip(heads, heads_spec.values(), strict=True):
                            y = labels[idx].to(device)
                            if (y >= 0).any():
                                logits = head(pooled)
                                loss = loss + nn.functional.cross_entropy(logits, y, ignore_index=-1)
                        optimizer.zero_grad()
                        loss.backward()
                        optimizer.step()
                        total += loss.item() * len(idx)
                    self.fit_curves["train_loss"].append(total / len(items))
                    if progress:
                        message = f"{self.name} epoch {epoch + 1}: loss {total / len(items):.4f}"
                        progress((epoch + 1) / self.epochs, message)
        self._module = module.eval()

    def forward(self, batch: Batch, device: torch.device) -> torch.Tensor:
        return _masked_mean(*self.forward_tokens(batch, device))

    @torch.inference_mode()
    def forward_tokens(self, batch: Batch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        return self._fitted_module(device)(*(t.to(device) for t in batch))

    def forward_grad(self, batch: Batch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Vector, tokens and mask with autograd on: the differentiable path explanations use."""
        tokens, mask = self._fitted_module(device)(*(t.to(device) for t in batch))
        return _masked_mean(tokens, mask), tokens, mask

    def _fitted_module(self, device: torch.device) -> nn.Module:
        self._require_fitted(self._module is not None)
        return self._module.to(device)

    def word_embeddings(self) -> nn.Embedding:
        """The embedding layer of a text tower (id 0, padding, embeds to zeros: the attribution baseline)."""
        self._require_fitted(self._module is not None)
        embed = getattr(self._module, "embed", None)
        if not isinstance(embed, nn.Embedding):
            raise TypeError(f"Encoder '{self.name}' has no token embedding layer")
        return embed

    def _state_fingerprint(self) -> str:
        if self._module is None:
            return "unfitted"
        extra = json.dumps(self._extra_state(), sort_keys=True)
        return hashlib.sha256((hash_state_dict(self._module.state_dict()) + extra).encode()).hexdigest()

    def save(self, directory: str | Path) -> Path:
        """Write the trained weights, config and extra state to ``directory/model.safetensors``."""
        from safetensors.torch import save_file

        self._require_fitted(self._module is not None)
        path = Path(directory) / WEIGHTS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self._module.state_dict().items()}
        metadata = {
            "encoder": self.name,
            "config": json.dumps(self.get_config_dict()),
            "extra": json.dumps(self._extra_state()),
        }
        save_file(state, str(path), metadata=metadata)
        return path

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        """Rebuild a fitted encoder written by ``save``."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(directory) / WEIGHTS_FILE
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata()
        if metadata.get("encoder") != cls.name:
            raise ValueError(f"{path} holds encoder {metadata.get('encoder')!r}, not '{cls.name}'")
        encoder = cls(**json.loads(metadata["config"]))
        encoder._set_extra_state(json.loads(metadata["extra"]))
        module = encoder._make_module()
        module.load_state_dict(load_file(str(path)))
        encoder._module = module.eval()
        return encoder


def _masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def _pixel_spec(image_size: int) -> PixelSpec:
    """The towers' input: a bilinear resize to a square."""
    return PixelSpec(size=(image_size, image_size), resample=int(Image.Resampling.BILINEAR))


def _scaled(pixels: torch.Tensor) -> Batch:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) in [-1, 1]."""
    return ((pixels.permute(0, 3, 1, 2).float() / 127.5 - 1.0).contiguous(),)


def _pixels(items: list[Image.Image], image_size: int) -> Batch:
    """Resize to a square and scale to [-1, 1]: (N, 3, size, size)."""
    spec = _pixel_spec(image_size)
    return _scaled(torch.from_numpy(np.stack([spec.apply(im) for im in items])))


class _ImageTower(TowerEncoder):
    """A trained image tower with ``blocks`` down-sampling stages; ``image_size`` must be divisible by 2**blocks."""

    modality = "image"
    image_size: int
    blocks: int
    width: int

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._check_size()

    def _check_size(self) -> None:
        if self.blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {self.blocks}")
        step = 2**self.blocks
        if self.image_size < step or self.image_size % step:
            raise ValueError(f"image_size must be a positive multiple of 2**blocks = {step}, got {self.image_size}")

    def _prepare(self, items: list) -> None:
        """Nothing depends on the data before training."""

    def preprocess(self, items: list[Image.Image]) -> Batch:
        return _pixels(items, self.image_size)

    def pixel_spec(self) -> PixelSpec:
        return _pixel_spec(self.image_size)

    def batch_from_pixels(self, pixels: torch.Tensor) -> Batch:
        return _scaled(pixels)

    def forward_regions(self, batch: Batch, device: torch.device) -> tuple[torch.Tensor, ...]:
        """With autograd on: the last feature map's cells (N, h*w, C) before projection (what Grad-CAM weighs),
        then the vector, tokens and mask that ``forward_grad`` returns. Cells are row-major over an h×h grid."""
        cells = self._fitted_module(device).feature_map(batch[0].to(device)).flatten(2).transpose(1, 2)
        return (cells, *self.tokens_from_cells(cells))

    def tokens_from_cells(self, cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Vector, tokens and mask from feature-map cells (N, L, C), with autograd on: the rest of the tower."""
        tokens = self._fitted_module(cells.device).proj(cells)
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return _masked_mean(tokens, mask), tokens, mask


@register_encoder
class SmallCNNEncoder(_ImageTower):
    """Four conv blocks (conv-BN-ReLU-pool); the last feature map's cells, projected to ``dim``, are the
    region tokens ((image_size / 16)^2 of them) and their mean is the image vector."""

    name = "small_cnn"
    blocks = 4
    description = "Small 4-block CNN trained on the train split's category/attribute labels."
    defaults = {"dim": 128, "width": 16, "image_size": 64, **_training_defaults(lr=1e-3)}

    def _make_module(self) -> nn.Module:
        return ConvNet(self.width, self.dim)


@register_encoder
class GRUTextEncoder(TowerEncoder):
    """Character embedding + bidirectional GRU over a character vocabulary built from the train texts (so it
    handles Chinese); per-character states projected to ``dim`` are the tokens, their mean the text vector."""

    name = "gru_text"
    modality = "text"
    description = "Character-level bidirectional GRU trained on the train split's category/attribute labels."
    defaults = {
        "dim": 128, "hidden": 64, "embed_dim": 32, "max_length": 64, "max_vocab": 5000, **_training_defaults(lr=2e-3)
    }
    hidden: int
    embed_dim: int
    max_length: int
    max_vocab: int

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._vocab: dict[str, int] = {}

    def _prepare(self, items: list[str]) -> None:
        counts = Counter(ch for text in items for ch in text.lower())
        chars = sorted(counts, key=lambda ch: (-counts[ch], ch))[: self.max_vocab]
        self._vocab = {ch: i + 2 for i, ch in enumerate(chars)}  # 0 = padding, 1 = unknown

    def _extra_state(self) -> dict[str, Any]:
        return {"chars": list(self._vocab)}

    def _set_extra_state(self, state: dict[str, Any]) -> None:
        self._vocab = {ch: i + 2 for i, ch in enumerate(state["chars"])}

    def _make_module(self) -> nn.Module:
        return CharGRU(len(self._vocab) + 2, self.embed_dim, self.hidden, self.dim)

    def token_offsets(self, text: str) -> list[tuple[int, int] | None]:
        """Character span of each token ``preprocess([text])`` produces: one per character."""
        return [(i, i + 1) for i in range(min(len(text.lower()), self.max_length))] or [None]

    def preprocess(self, items: list[str]) -> Batch:
        self._require_fitted(bool(self._vocab))
        rows = [[self._vocab.get(ch, 1) for ch in text.lower()[: self.max_length]] or [1] for text in items]
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        ids = torch.zeros((len(rows), int(lengths.max()) if rows else 1), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return ids, lengths


@register_encoder
class VGGCNNEncoder(_ImageTower):
    """VGG-style CNN: ``blocks`` blocks of ``convs_per_block`` 3×3 conv-BN-ReLU layers, each block ending in a 2×2
    max-pool (channels width, 2·width, 4·width, 8·width, ...). The last feature map's cells, projected to ``dim``,
    are the region tokens ((image_size / 2**blocks)^2 of them); their mean is the image vector. A scaled-down
    VGG (VGG-16 is 5 blocks of 2-3 convs at 64-512 channels on 224 px), trained on the train split's labels."""

    name = "vgg_cnn"
    description = "VGG-style CNN (stacked 3x3 conv blocks + max-pool) trained on the train split's labels; regions."
    defaults = {
        "dim": 128, "width": 16, "blocks": 4, "convs_per_block": 2, "image_size": 64, **_training_defaults(lr=1e-3)
    }
    convs_per_block: int

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.convs_per_block < 1:
            raise ValueError(f"convs_per_block must be >= 1, got {self.convs_per_block}")

    def _make_module(self) -> nn.Module:
        return VGGNet(self.width, self.blocks, self.convs_per_block, self.dim)


@register_encoder
class SmallResNetEncoder(_ImageTower):
    """A small ResNet: a 3×3 stem, then ``blocks`` stages of ``blocks_per_stage`` basic residual blocks, each stage
    halving the resolution with a stride-2 first block (channels width, 2·width, 4·width, 8·width). Region tokens
    are the last feature map's cells projected to ``dim``. A scaled-down ResNet-18/50, trained on the train split."""

    name = "small_resnet"
    description = "Small residual CNN (basic blocks, stride-2 stages) trained on the train split's labels; regions."
    defaults = {
        "dim": 128, "width": 16, "blocks": 4, "blocks_per_stage": 1, "image_size": 64, **_training_defaults(lr=1e-3)
    }
    blocks_per_stage: int

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.blocks_per_stage < 1:
            raise ValueError(f"blocks_per_stage must be >= 1, got {self.blocks_per_stage}")

    def _make_module(self) -> nn.Module:
        return ResNet(self.width, self.blocks, self.blocks_per_stage, self.dim)


@register_encoder
class LSTMTextEncoder(TowerEncoder):
    """Word embeddings + bidirectional LSTM. Words: jieba segmentation for texts with Chinese characters,
    lowercased ``\\w+`` words otherwise (``workbench.models.encoders.tokenize``); the vocabulary is the train
    texts' words seen at least ``min_count`` times (at most ``max_vocab``). Per-word states projected to ``dim``
    are the tokens, their mean the text vector."""

    name = "lstm_text"
    modality = "text"
    description = "Word-level (jieba for Chinese) bidirectional LSTM trained on the train split's labels."
    defaults = {
        "dim": 128, "hidden": 64, "embed_dim": 64, "max_length": 32, "max_vocab": 20000, "min_count": 1,
        **_training_defaults(lr=2e-3),
    }
    hidden: int
    embed_dim: int
    max_length: int
    max_vocab: int
    min_count: int

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._vocab: dict[str, int] = {}

    @staticmethod
    def words(text: str) -> list[str]:
        """The word tokens the encoder sees (jieba for Chinese)."""
        from workbench.models.encoders import tokenize

        return tokenize(text)

    def _prepare(self, items: list[str]) -> None:
        counts = Counter(word for text in items for word in self.words(text))
        kept = [w for w in counts if counts[w] >= self.min_count]
        words = sorted(kept, key=lambda w: (-counts[w], w))[: self.max_vocab]
        self._vocab = {w: i + 2 for i, w in enumerate(words)}  # 0 = padding, 1 = unknown

    @property
    def vocabulary(self) -> list[str]:
        return list(self._vocab)

    def _extra_state(self) -> dict[str, Any]:
        return {"words": list(self._vocab)}

    def _set_extra_state(self, state: dict[str, Any]) -> None:
        self._vocab = {w: i + 2 for i, w in enumerate(state["words"])}

    def _make_module(self) -> nn.Module:
        return WordLSTM(len(self._vocab) + 2, self.embed_dim, self.hidden, self.dim)

    def token_offsets(self, text: str) -> list[tuple[int, int] | None]:
        """Character span of each word ``preprocess([text])`` produces (found in order in the lowercased text)."""
        lowered, spans, cursor = text.lower(), [], 0
        for word in self.words(text)[: self.max_length]:
            start = lowered.find(word, cursor)
            spans.append(None if start < 0 else (start, start + len(word)))
            cursor = cursor if start < 0 else start + len(word)
        return spans or [None]

    def preprocess(self, items: list[str]) -> Batch:
        self._require_fitted(bool(self._vocab))
        rows = [[self._vocab.get(w, 1) for w in self.words(text)[: self.max_length]] or [1] for text in items]
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        ids = torch.zeros((len(rows), int(lengths.max()) if rows else 1), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return ids, lengths
