"""The encoder contract and its registry.

An encoder turns a list of PIL RGB images or strings into one float32 vector each (and, when ``token_level``,
into per-token vectors with a mask). Encoders register themselves by name; configs refer to them by that name
(``type``) plus keyword options. Each encoder declares its options once, with their defaults, in ``defaults`` (as
fusion heads do); the resolved options (``get_config_dict``: defaults filled in, values normalised) are saved
with every run and enter the fingerprint that keys the embedding cache.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import json
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np
import torch

from workbench.data.images import PixelSpec

MODALITIES = ("image", "text")

ProgressFn = Callable[[float, str], None]
"""Training progress callback: fraction done in [0, 1] and a short message."""


class OfflineModelError(RuntimeError):
    """A model could not be loaded because it is not available locally and the Hub cannot be reached."""


class ModelFolderError(FileNotFoundError):
    """A model named by a local path whose folder is missing or lacks what loading it needs."""


class Encoder(ABC):
    """Base class of all encoders (see docs/ARCHITECTURE.md for the contract).

    Subclasses declare ``defaults`` (option name → JSON-serialisable default); ``config_keys`` is derived from it.
    ``__init__`` takes the options as keywords, fills in the defaults and stores each as an attribute of the same
    name; a subclass's ``__init__`` calls it first, then validates and normalises those attributes.
    ``normalizes`` (whether outputs are L2-normalised) is the class default; an encoder whose options decide it
    sets it per instance. An encoder that trains by epochs sets ``fit_curves`` in ``fit`` (``{"train_loss": [one
    value per epoch]}``); the run stores them beside the fusion head's curves.
    """

    name: ClassVar[str]
    modality: ClassVar[str]
    description: ClassVar[str] = ""
    offline: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {}
    config_keys: ClassVar[tuple[str, ...]] = ()
    normalizes: ClassVar[bool] = False
    requires_fit: ClassVar[bool] = False
    token_level: ClassVar[bool] = False
    fit_curves: dict[str, list[float]] | None = None
    dim: int

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "config_keys" in vars(cls):
            raise TypeError(
                f"{cls.__qualname__} sets config_keys; declare its options with their defaults in `defaults` "
                "instead (config_keys is derived from it)"
            )
        cls.config_keys = tuple(cls.defaults)

    def __init__(self, **options: Any) -> None:
        for key, value in self.resolve_options(options).items():
            setattr(self, key, value)

    @classmethod
    def resolve_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` with the defaults filled in (a deep copy); an unknown option is an error naming valid ones."""
        unknown = sorted(set(options) - set(cls.config_keys))
        if unknown:
            raise ValueError(
                f"Unknown option(s) {unknown} for encoder '{cls.name}'. Valid config_keys: {list(cls.config_keys)}"
            )
        return copy.deepcopy({**cls.defaults, **options})

    def get_config_dict(self) -> dict[str, Any]:
        """The resolved options that define this encoder (defaults filled in, values normalised), JSON-serialisable;
        ``create_encoder(self.name, **config)`` rebuilds it."""
        return {key: getattr(self, key) for key in self.config_keys}

    def fit(
        self,
        items: list,
        *,
        targets: dict[str, np.ndarray],
        seed: int,
        device: torch.device | str | None = None,
        progress: ProgressFn | None = None,
    ) -> None:
        """Fit on the train split's items; weight-free encoders need nothing."""
        if self.requires_fit:
            raise NotImplementedError(f"Encoder '{self.name}' sets requires_fit but does not implement fit()")

    def fingerprint(self) -> str:
        """sha256 hex over the class, the config and the weights / revision / fitted state."""
        cls = type(self)
        payload = {
            "class": f"{cls.__module__}.{cls.__qualname__}",
            "config": self.get_config_dict(),
            "state": self._state_fingerprint(),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()

    def _state_fingerprint(self) -> str:
        """What beyond the config determines the outputs (weights hash, revision, fitted state)."""
        return ""

    @abstractmethod
    def preprocess(self, items: list) -> Any:
        """Turn PIL RGB images or strings into a CPU batch; thread-safe."""

    @abstractmethod
    def forward(self, batch: Any, device: torch.device) -> torch.Tensor:
        """(N, dim) float32 vectors for a preprocessed batch."""

    def forward_tokens(self, batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, L, dim) float32 token vectors and an (N, L) bool mask of real tokens."""
        raise NotImplementedError(
            f"Encoder '{self.name}' is not token-level (token_level=False); use forward() for pooled vectors "
            f"or pick a token-level encoder: {list_encoders(token_level=True)}"
        )

    def pixel_spec(self) -> PixelSpec | None:
        """For image encoders whose ``preprocess`` is a resize/crop to uint8 followed by :meth:`batch_from_pixels`:
        that resize and crop. Runs then decode on every core or on the GPU and share decoded pixels between
        encoders of the same input. None (the default): the encoder needs the decoded PIL images themselves."""
        return None

    def batch_from_pixels(self, pixels: torch.Tensor) -> Any:
        """The batch ``preprocess`` gives for images whose :meth:`pixel_spec` pixels are ``pixels`` ((N, H, W, 3)
        uint8, on the CPU or already on the device)."""
        raise NotImplementedError(f"Encoder '{self.name}' declares no pixel_spec(); call preprocess() on images")

    def encode(self, items: Sequence, device: torch.device | str | None = None, batch_size: int = 64) -> np.ndarray:
        """Preprocess and forward ``items`` in batches; (N, dim) float32 numpy array."""
        device = torch.device(device or "cpu")
        if not len(items):
            return np.zeros((0, self.dim), dtype=np.float32)
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(items), batch_size):
                batch = self.preprocess(list(items[start : start + batch_size]))
                chunks.append(self.forward(batch, device).float().cpu().numpy())
        return np.concatenate(chunks).astype(np.float32, copy=False)

    def _require_fitted(self, fitted: bool) -> None:
        if not fitted:
            raise RuntimeError(f"Encoder '{self.name}' must be fitted on the train split first: call fit().")


@dataclass(frozen=True)
class EncoderSpec:
    """Every registry fact about one encoder class."""

    name: str
    modality: str
    description: str
    offline: bool
    config_keys: tuple[str, ...]
    defaults: dict[str, Any]
    normalizes: bool
    requires_fit: bool
    token_level: bool
    cls: type[Encoder]


_REGISTRY: dict[str, type[Encoder]] = {}
BUILTIN_MODULES = ("workbench.models.encoders", "workbench.models.towers", "workbench.models.hf")


def _registry() -> dict[str, type[Encoder]]:
    """The registry, with the built-in encoders imported (they register themselves on import)."""
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    return _REGISTRY


E = TypeVar("E", bound=type[Encoder])


def register_encoder(cls: E) -> E:
    """Class decorator adding an encoder to the registry under ``cls.name``."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{cls.__qualname__} needs a non-empty ClassVar 'name'")
    if getattr(cls, "modality", None) not in MODALITIES:
        modality = getattr(cls, "modality", None)
        raise ValueError(f"Encoder '{name}' has modality {modality!r}; allowed: {MODALITIES}")
    previous = _REGISTRY.get(name)
    if previous is not None and _qualified(previous) != _qualified(cls):
        raise ValueError(f"Encoder name '{name}' is already registered by {_qualified(previous)}")
    _REGISTRY[name] = cls
    return cls


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def list_encoders(modality: str | None = None, *, token_level: bool | None = None) -> list[str]:
    """Registered encoder names, sorted; optionally only one modality / only token-level ones."""
    if modality is not None and modality not in MODALITIES:
        raise ValueError(f"Unknown modality {modality!r}; allowed: {MODALITIES}")
    return sorted(
        name
        for name, cls in _registry().items()
        if (modality is None or cls.modality == modality) and (token_level is None or cls.token_level == token_level)
    )


def get_encoder_class(name: str) -> type[Encoder]:
    try:
        return _registry()[name]
    except KeyError:
        raise KeyError(f"Encoder '{name}' not found. Available: {list_encoders()}") from None


def get_encoder_spec(name: str) -> EncoderSpec:
    """The registry facts of one encoder (a copy of its defaults, safe to change)."""
    cls = get_encoder_class(name)
    return EncoderSpec(
        name=cls.name,
        modality=cls.modality,
        description=cls.description,
        offline=cls.offline,
        config_keys=tuple(cls.config_keys),
        defaults=copy.deepcopy(cls.defaults),
        normalizes=cls.normalizes,
        requires_fit=cls.requires_fit,
        token_level=cls.token_level,
        cls=cls,
    )


def create_encoder(name: str, **options: Any) -> Encoder:
    """Instantiate a registered encoder; options must be among its ``config_keys``, missing ones take defaults."""
    return get_encoder_class(name)(**options)


class Configurable(Protocol):
    """What encoders and fusion heads share: a registry name and their resolved options."""

    name: str

    def get_config_dict(self) -> dict[str, Any]: ...


def resolved_options(plugin: Configurable) -> dict[str, Any]:
    """A plug-in's config section as it runs: its registry name under ``type`` and every option, defaults filled
    in (what a run records, next to the config as written)."""
    return {"type": plugin.name, **plugin.get_config_dict()}


def load_plugin(module_or_path: str | Path) -> list[str]:
    """Import a user module (dotted name or ``.py`` path) whose import registers encoders.

    Returns the names registered (or re-registered) by this import.
    """
    before = dict(_registry())
    target = str(module_or_path)
    path = Path(target).expanduser()
    if target.endswith(".py") or path.is_file():
        _import_file(path)
    else:
        importlib.import_module(target)
    return sorted(name for name, cls in _REGISTRY.items() if before.get(name) is not cls)


def _import_file(path: Path) -> ModuleType:
    path = path.resolve()
    if not path.is_file():
        raise FileNotFoundError(f"Plug-in file not found: {path}")
    # A stable per-path module name keeps class identities (and fingerprints) the same across re-loads.
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:10]
    module_name = f"workbench_plugin_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"Cannot import plug-in {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def hash_state_dict(state: dict[str, torch.Tensor]) -> str:
    """sha256 over a state dict's names, dtypes, shapes and values."""
    h = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous().reshape(-1)
        h.update(f"{key}:{tensor.dtype}:{tuple(state[key].shape)}".encode())
        h.update(tensor.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
