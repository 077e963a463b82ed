"""What every built-in head shares: the training options, the fit template, the input normaliser and the loop.

Input policy for trained heads: every vector row is L2-normalised, then z-scored per feature with the mean and
standard deviation of the items that occur in the train pairs (`Standardizer`). Token features pass through a
LayerNorm. Tags are used as given (multi-hot). Training is deterministic for a seed on CPU:
`torch.manual_seed(seed)` before the weights are built and an explicit `torch.Generator` for shuffling; early
stopping keeps the weights of the epoch with the lowest val loss (`best_epoch`, 1-based; 0 when nothing is trained).
"""

from __future__ import annotations

import dataclasses
import math
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from workbench.models.fusion.base import Device, FusionData, FusionHead, PairSet, ProgressFn

SCORE_CHUNK = 8192
"""Pairs (or items) scored per forward pass."""


@dataclass(frozen=True)
class TrainOptions:
    """The options of the shared training loop, declared once; heads add them to `defaults` via `defaults()`."""

    epochs: int = 30
    lr: float = 1e-3
    batch_size: int = 256
    weight_decay: float = 1e-4
    patience: int = 5

    def __post_init__(self) -> None:
        if min(self.epochs, self.batch_size, self.patience) < 1:
            raise ValueError(
                f"epochs, batch_size and patience must be >= 1; got {self.epochs}, {self.batch_size}, {self.patience}"
            )

    @classmethod
    def defaults(cls, **overrides: Any) -> dict[str, Any]:
        """The flat option dict (field order kept) with a head's own defaults for some fields."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise ValueError(f"Unknown training option(s) {unknown}; valid: {names}")
        return {**dataclasses.asdict(cls()), **overrides}

    @classmethod
    def of(cls, options: dict[str, Any]) -> TrainOptions:
        """The training options among a head's options (counts as int, rates as given)."""
        return cls(
            epochs=int(options["epochs"]),
            lr=options["lr"],
            batch_size=int(options["batch_size"]),
            weight_decay=options["weight_decay"],
            patience=int(options["patience"]),
        )


@dataclass(frozen=True)
class FitContext:
    """The per-call arguments of `FusionHead.fit` that a built-in head's `_fit` needs."""

    seed: int
    device: torch.device
    progress: ProgressFn | None = None


class TrainedHead(FusionHead):
    """A built-in head: `fit` resolves the device, calls `_fit`, and marks the head fitted; use before is an error."""

    _fitted: bool = False

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
        self._device = torch.device(device)
        curves = self._fit(data, train, val, FitContext(seed, self._device, progress))
        self._fitted = True
        return curves

    @abstractmethod
    def _fit(self, data: FusionData, train: PairSet, val: PairSet, context: FitContext) -> dict[str, Any]:
        """Train on `train`, early-stop on `val`; return the curves `fit` returns."""

    def _check_fitted(self) -> None:
        if not self._fitted:
            raise RuntimeError(f"fusion head '{self.name}' is not fitted; call fit() first")


def no_curves() -> dict[str, Any]:
    """The curves of a head that trains nothing."""
    return {"train_loss": [], "val_loss": [], "best_epoch": 0}


def l2(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32; zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class Standardizer:
    """L2-normalise rows, then z-score features with statistics of the rows seen at construction."""

    def __init__(self, x: np.ndarray) -> None:
        x = l2(x).astype(np.float64)
        self.mean = x.mean(axis=0)
        std = x.std(axis=0)
        self.std = np.where(std > 1e-8, std, 1.0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((l2(x) - self.mean) / self.std).astype(np.float32)

    def on_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """The same transform on a torch tensor (differentiable)."""
        mean = torch.as_tensor(self.mean, dtype=x.dtype, device=x.device)
        std = torch.as_tensor(self.std, dtype=x.dtype, device=x.device)
        return (nn.functional.normalize(x, dim=-1) - mean) / std


def require_pairs(train: PairSet, val: PairSet, head: str) -> None:
    for split, pairs in (("train", train), ("val", val)):
        if len(pairs) == 0:
            raise ValueError(f"{head} needs {split} pairs; the {split} split is empty")


def mlp(d_in: int, hidden: int, d_out: int, dropout: float) -> nn.Sequential:
    """One linear layer (hidden <= 0) or linear → GELU → dropout → linear."""
    if hidden <= 0:
        return nn.Sequential(nn.Linear(d_in, d_out))
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d_out))


def train_module(
    module: nn.Module,
    n_train: int,
    batch_loss: Callable[[np.ndarray], torch.Tensor],
    val_loss: Callable[[], float],
    options: TrainOptions,
    context: FitContext,
) -> dict[str, Any]:
    """AdamW over shuffled mini-batches with early stopping on val loss; restores the best epoch's weights."""
    generator = torch.Generator().manual_seed(context.seed)
    optimizer = torch.optim.AdamW(module.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    curves: dict[str, Any] = no_curves()
    best, best_state, waited = math.inf, None, 0
    for epoch in range(1, options.epochs + 1):
        module.train()
        order = torch.randperm(n_train, generator=generator).numpy()
        total = 0.0
        for start in range(0, n_train, options.batch_size):
            rows = order[start : start + options.batch_size]
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
        if context.progress is not None:
            info = {"train_loss": curves["train_loss"][-1], "val_loss": current, "best_epoch": curves["best_epoch"]}
            context.progress(epoch, options.epochs, info)
        if waited >= options.patience or not math.isfinite(current):
            break
    if best_state is not None:
        module.load_state_dict(best_state)
    return curves


def chunked_mean(n: int, size: int, loss: Callable[[slice], torch.Tensor]) -> float:
    """Mean of a per-example loss computed over consecutive chunks (weighted by chunk length)."""
    total = 0.0
    for start in range(0, n, size):
        part = slice(start, min(start + size, n))
        total += loss(part).item() * (part.stop - part.start)
    return total / n
