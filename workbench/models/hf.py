"""Hugging Face encoders loaded with transformers' Auto classes (safetensors only, lazily, thread-safe).

``model`` is a Hub id or a local folder. Fingerprints cover the model id/path and revision plus, for local
folders, sha256 hashes of the weight files and of the tokenizer/processor configs; for Hub ids, the resolved
commit hash. The encoder classes live here and nowhere else: a class's module path enters its fingerprint, which
keys the embedding cache. Loading helpers are in :mod:`~workbench.models.hf_loading`, input and output helpers
in :mod:`~workbench.models.hf_inputs`.
"""

from __future__ import annotations

import inspect
import json
import threading
from abc import abstractmethod
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from workbench.data.images import PixelSpec
from workbench.models.base import Encoder, OfflineModelError, register_encoder
from workbench.models.hf_inputs import (
    TEXT_POOLINGS,
    FastImageTransform,
    fast_pixel_spec,
    image_batch,
    input_embeddings,
    l2_normalize,
    pixel_values,
    pool_tokens,
    projected_features,
    seen_box,
    tokenizer_offsets,
    use_eager_attention,
)
from workbench.models.hf_loading import (
    folder_hashes,
    hub_unreachable,
    incomplete_folder,
    looks_like_path,
    minilm_path,
    missing_folder,
    offline_message,
    read_st_modules,
)

VISION_POOLINGS = ("cls", "mean", "pooler")
MAX_PADDING_TYPES = ("siglip", "siglip2")  # trained on max_length-padded text without attention masks
PREPROCESS_VERSION = "2"  # bump when preprocessing changes outputs, so cached embeddings are not reused


def _hub_defaults(model: str) -> dict[str, Any]:
    """The options every transformers-backed encoder shares: which model, at which revision, and whether its own
    code may run (never by default)."""
    return {"model": model, "revision": None, "trust_remote_code": False}


def _check_choice(option: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{option} must be one of {list(allowed)}, got {value!r}")
    return value


class HFEncoder(Encoder):
    """Shared lazy loading, offline handling and fingerprinting of transformers-backed encoders."""

    offline = False
    model: str
    revision: str | None
    trust_remote_code: bool

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.model = str(self.model)
        self.trust_remote_code = bool(self.trust_remote_code)
        self._lock = threading.Lock()
        self._tokenizer_lock = threading.Lock()  # fast tokenizers are not safe to call from several threads
        self._loaded: dict[str, Any] | None = None
        self._hub_probe: tuple[str | None] | None = None  # (why the Hub is unreachable,) once probed

    @property
    def _local_dir(self) -> Path | None:
        path = Path(self.model).expanduser()
        return path.resolve() if path.is_dir() else None

    def _source(self) -> str:
        """What ``from_pretrained`` loads: the local folder or the Hub id."""
        local = self._local_dir
        return str(local) if local else self.model

    def _components(self) -> dict[str, Any]:
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    self._loaded = self._load()
        return self._loaded

    @abstractmethod
    def _load(self) -> dict[str, Any]:
        """Load model and processors; must set "model" and "dim"."""

    def _from_pretrained(self, auto_class: str, **kwargs: Any) -> Any:
        import transformers

        factory = getattr(transformers, auto_class)
        source = self._source()
        unreachable = None
        if self._local_dir is None and looks_like_path(source):  # a path, never a Hub id: nothing to download
            raise missing_folder(source)
        if self._local_dir is not None and not (Path(source) / "config.json").is_file():
            raise incomplete_folder(Path(source), FileNotFoundError(f"{Path(source) / 'config.json'} is missing"))
        if self._local_dir is None:
            if self._hub_probe is None:  # once per encoder: model, tokenizer and processor share the answer
                self._hub_probe = (hub_unreachable(source, self.revision),)
            unreachable = self._hub_probe[0]
        try:
            return factory.from_pretrained(
                source, revision=self.revision, trust_remote_code=self.trust_remote_code,
                local_files_only=unreachable is not None, **kwargs,
            )
        except OSError as error:
            if self._local_dir is not None:
                raise incomplete_folder(self._local_dir, error) from error
            self._hub_probe = None  # ask again next time: the network may be back
            raise OfflineModelError(f"{offline_message(source)} Cause: {unreachable or error}") from error

    def _load_model(self) -> torch.nn.Module:
        return self._from_pretrained("AutoModel", use_safetensors=True).eval()

    @property
    def dim(self) -> int:  # type: ignore[override]
        return self._components()["dim"]

    def _state_fingerprint(self) -> str:
        # The preprocessing code's version; whether FastImageTransform applies follows from the processor config,
        # which the folder hash / commit already covers.
        state = {"preprocess_version": PREPROCESS_VERSION}
        local = self._local_dir
        if local is not None:
            return json.dumps({**folder_hashes(local), **state}, sort_keys=True)
        config = self._components()["model"].config
        return json.dumps({"commit": getattr(config, "_commit_hash", None), **state})

    def _module_on(self, device: torch.device) -> torch.nn.Module:
        return self._components()["model"].to(device)


@register_encoder
class HFTextEncoder(HFEncoder):
    """Any transformers text model: AutoModel + AutoTokenizer, padded to the longest text of the batch, pooled
    over the last hidden state."""

    name = "hf_text"
    modality = "text"
    description = "Hugging Face text model (AutoModel + AutoTokenizer) with mean/CLS pooling."
    defaults = {
        **_hub_defaults("sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2"),
        "pooling": "mean", "max_length": None, "normalize": False,
    }
    token_level = True
    pooling: str
    max_length: int | None
    normalize: bool

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.pooling = _check_choice("pooling", self.pooling, TEXT_POOLINGS)
        self.normalize = bool(self.normalize)
        self.normalizes = self.normalize  # type: ignore[misc]  # decided by an option, so per instance

    def _load(self) -> dict[str, Any]:
        tokenizer = self._from_pretrained("AutoTokenizer")
        model = self._load_model()
        limits = [tokenizer.model_max_length, getattr(model.config, "max_position_embeddings", None)]
        if self.max_length:
            limits.append(self.max_length)
        max_length = min(int(x) for x in limits if x)
        return {"tokenizer": tokenizer, "model": model, "dim": model.config.hidden_size, "max_length": max_length}

    def preprocess(self, items: list[str]) -> dict[str, torch.Tensor]:
        parts = self._components()
        with self._tokenizer_lock:
            encoded = parts["tokenizer"](
                list(items), padding="longest", truncation=True, max_length=parts["max_length"], return_tensors="pt"
            )
        return dict(encoded)

    @torch.inference_mode()
    def forward_tokens(self, batch: dict[str, torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = {k: v.to(device) for k, v in batch.items()}
        hidden = self._module_on(device)(**inputs).last_hidden_state.float()
        return hidden, inputs["attention_mask"].bool()

    @torch.inference_mode()
    def forward(self, batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
        return self.forward_grad(batch, device)[0]

    def forward_grad(
        self, batch: dict[str, torch.Tensor], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Vector, tokens and mask with autograd on (the differentiable path explanations use)."""
        inputs = {k: v.to(device) for k, v in batch.items()}
        hidden = self._module_on(device)(**inputs).last_hidden_state.float()
        mask = inputs["attention_mask"].bool()
        pooled = pool_tokens(hidden, mask, self.pooling)
        return (l2_normalize(pooled) if self.normalize else pooled), hidden, mask

    def word_embeddings(self) -> torch.nn.Module:
        """The token embedding layer (integrated gradients attribute at its output)."""
        return input_embeddings(self._components()["model"])

    @property
    def pad_token_id(self) -> int:
        return int(self._components()["tokenizer"].pad_token_id or 0)

    def token_offsets(self, text: str) -> list[tuple[int, int] | None]:
        """Character span of each token ``preprocess([text])`` produces (None for special tokens)."""
        parts = self._components()
        return tokenizer_offsets(parts["tokenizer"], self._tokenizer_lock, text, max_length=parts["max_length"])


@register_encoder
class MiniLMEncoder(HFTextEncoder):
    """sentence-transformers/all-MiniLM-L6-v2 from the bundled package: mean pooling, L2-normalised. Only
    ``max_length`` is an option; the model and its pooling are fixed (class attributes)."""

    name = "minilm"
    description = "all-MiniLM-L6-v2 (bundled weights, 384-d, English), mean pooled and L2-normalised."
    defaults = {"max_length": 256}
    offline = True
    normalizes = True
    revision = None
    trust_remote_code = False
    pooling = "mean"
    normalize = True

    def __init__(self, **options: Any) -> None:
        self.model = str(minilm_path())
        super().__init__(**options)


@register_encoder
class STFolderEncoder(HFTextEncoder):
    """A sentence-transformers model folder, read without sentence-transformers: modules.json locates the
    Transformer module, 1_Pooling/config.json gives the pooling, a Normalize module turns on L2 normalisation."""

    name = "st_folder"
    description = "sentence-transformers model folder (pooling and normalisation read from modules.json)."
    defaults = {"model": None, "max_length": None}
    offline = True
    revision = None
    trust_remote_code = False

    def __init__(self, **options: Any) -> None:
        model = self.resolve_options(options)["model"]
        if model is None:
            raise ValueError("st_folder needs model = the path of a local sentence-transformers folder")
        folder = Path(model).expanduser()
        if not folder.is_dir():
            raise missing_folder(str(model), "modules.json, 1_Pooling/config.json and the transformer's config.json "
                                 "and weights (a sentence-transformers folder)")
        modules_file = folder / "modules.json"
        if not modules_file.is_file():
            raise FileNotFoundError(
                f"{modules_file} not found: st_folder needs a local sentence-transformers folder "
                "(use hf_text for plain transformers models)"
            )
        transformer_dir, self.pooling, self.normalize = read_st_modules(folder, json.loads(modules_file.read_text()))
        self._transformer_dir = transformer_dir.resolve()
        super().__init__(**options)
        st_config = transformer_dir / "sentence_bert_config.json"
        if self.max_length is None and st_config.is_file():
            self.max_length = json.loads(st_config.read_text()).get("max_seq_length")

    def _source(self) -> str:
        return str(self._transformer_dir)


@register_encoder
class HFVisionEncoder(HFEncoder):
    """Any transformers vision backbone (ViT, DINOv2, ResNet, ConvNeXt, ...): AutoModel + AutoImageProcessor.
    Tokens are the last hidden state's tokens, or the last feature map's cells for CNNs."""

    name = "hf_vision"
    modality = "image"
    description = "Hugging Face vision backbone (AutoModel + AutoImageProcessor) with CLS/mean/pooler pooling."
    defaults = {**_hub_defaults("facebook/dinov2-small"), "pooling": "mean"}
    token_level = True
    pooling: str

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.pooling = _check_choice("pooling", self.pooling, VISION_POOLINGS)

    def _load(self) -> dict[str, Any]:
        processor = self._from_pretrained("AutoImageProcessor")
        model = self._load_model()
        config = model.config
        dim = getattr(config, "hidden_size", None) or config.hidden_sizes[-1]
        return {"processor": processor, "fast": FastImageTransform.from_processor(processor), "model": model,
                "dim": int(dim)}

    def preprocess(self, items: list[Image.Image]) -> dict[str, torch.Tensor]:
        return image_batch(self._components(), items)

    def pixel_spec(self) -> PixelSpec | None:
        return fast_pixel_spec(self._components())

    def batch_from_pixels(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"pixel_uint8": pixels}

    def _outputs(self, batch: dict[str, torch.Tensor], device: torch.device, **kwargs: Any) -> Any:
        return self._module_on(device)(pixel_values=pixel_values(self._components(), batch, device), **kwargs)

    @staticmethod
    def _tokens(hidden: torch.Tensor) -> torch.Tensor:
        # CNN backbones return (N, C, H, W) feature maps: their cells are the tokens.
        return hidden.flatten(2).transpose(1, 2) if hidden.ndim == 4 else hidden

    @torch.inference_mode()
    def forward_tokens(self, batch: dict[str, torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self._tokens(self._outputs(batch, device).last_hidden_state.float())
        return tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)

    @torch.inference_mode()
    def forward(self, batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
        return self._vector(self._outputs(batch, device))

    def forward_with_attentions(self, batch: dict[str, torch.Tensor], device: torch.device) -> tuple[Any, ...]:
        """With autograd on: vector, tokens, mask and the per-layer attention maps (B, heads, L, L) — empty for
        CNN backbones, whose tokens are feature-map cells."""
        model = self._module_on(device)
        attends = getattr(model.config, "num_attention_heads", None) is not None
        if attends:
            use_eager_attention(model)
        outputs = self._outputs(batch, device, **({"output_attentions": True} if attends else {}))
        tokens = self._tokens(outputs.last_hidden_state.float())
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return self._vector(outputs), tokens, mask, tuple(getattr(outputs, "attentions", None) or ())

    def view_box(self, size: tuple[int, int]) -> tuple[float, float, float, float]:
        """The part of a (width, height) photo the model sees, as fractions (left, top, right, bottom)."""
        return seen_box(self._components(), size)

    def _vector(self, outputs: Any) -> torch.Tensor:
        if self.pooling == "pooler":
            if getattr(outputs, "pooler_output", None) is None:
                raise ValueError(f"'{self.model}' has no pooler output; use pooling='cls' or 'mean'")
            return outputs.pooler_output.flatten(1).float()
        hidden = outputs.last_hidden_state
        if self.pooling == "cls":
            if hidden.ndim != 3:
                raise ValueError(f"'{self.model}' returns feature maps, not tokens; use pooling='mean' or 'pooler'")
            return hidden[:, 0].float()
        return self._tokens(hidden).mean(1).float()


class DualEncoder(HFEncoder):
    """One tower of a CLIP-style dual encoder (CLIP, SigLIP, Chinese-CLIP): get_image_features /
    get_text_features, L2-normalised, so image and text vectors share one space."""

    normalizes = True

    def _load(self) -> dict[str, Any]:
        model = self._load_model()
        parts = {"model": model, **self._load_processor(model)}
        with torch.inference_mode():
            parts["dim"] = int(self._project(parts, self._preprocess_with(parts, self._probe_items())).shape[-1])
        return parts

    @abstractmethod
    def _load_processor(self, model: torch.nn.Module) -> dict[str, Any]:
        """Processor parts of the components."""

    @abstractmethod
    def _probe_items(self) -> list:
        """One dummy item, used to learn the output dimension at load time."""

    @abstractmethod
    def _preprocess_with(self, parts: dict[str, Any], items: list) -> dict[str, torch.Tensor]:
        """Preprocess with already loaded parts."""

    @abstractmethod
    def _project(self, parts: dict[str, Any], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Unnormalised projected features (``parts["model"]`` is already on the batch's device)."""

    def preprocess(self, items: list) -> dict[str, torch.Tensor]:
        return self._preprocess_with(self._components(), items)

    @torch.inference_mode()
    def forward(self, batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
        self._module_on(device)
        return l2_normalize(self._project(self._components(), {k: v.to(device) for k, v in batch.items()}).float())


@register_encoder
class CLIPImageEncoder(DualEncoder):
    """Image tower of a dual encoder."""

    name = "clip_image"
    modality = "image"
    description = "Image tower of a CLIP/SigLIP/Chinese-CLIP dual encoder (get_image_features), L2-normalised."
    defaults = _hub_defaults("openai/clip-vit-base-patch32")

    def _load_processor(self, model: torch.nn.Module) -> dict[str, Any]:
        processor = self._from_pretrained("AutoImageProcessor")
        return {"processor": processor, "fast": FastImageTransform.from_processor(processor)}

    def _probe_items(self) -> list:
        return [Image.new("RGB", (32, 32))]

    def _preprocess_with(self, parts: dict[str, Any], items: list[Image.Image]) -> dict[str, torch.Tensor]:
        return image_batch(parts, items)

    def pixel_spec(self) -> PixelSpec | None:
        return fast_pixel_spec(self._components())

    def batch_from_pixels(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"pixel_uint8": pixels}

    def _project(self, parts: dict[str, Any], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        model = parts["model"]
        device = next(model.parameters()).device
        return projected_features(model.get_image_features(pixel_values=pixel_values(parts, batch, device)))

    def forward_with_attentions(self, batch: dict[str, torch.Tensor], device: torch.device) -> tuple[Any, ...]:
        """With autograd on: the vector, no tokens, and the vision tower's per-layer attention maps."""
        model = self._module_on(device)
        use_eager_attention(model)
        parts = self._components()
        output = model.get_image_features(pixel_values=pixel_values(parts, batch, device), output_attentions=True)
        vector = l2_normalize(projected_features(output).float())
        return vector, None, None, tuple(getattr(output, "attentions", None) or ())

    def view_box(self, size: tuple[int, int]) -> tuple[float, float, float, float]:
        """The part of a (width, height) photo the model sees, as fractions (left, top, right, bottom)."""
        return seen_box(self._components(), size)


@register_encoder
class CLIPTextEncoder(DualEncoder):
    """Text tower of a dual encoder; SigLIP-type models get max_length padding, as they were trained."""

    name = "clip_text"
    modality = "text"
    description = "Text tower of a CLIP/SigLIP/Chinese-CLIP dual encoder (get_text_features), L2-normalised."
    defaults = {**_hub_defaults("openai/clip-vit-base-patch32"), "max_length": None}
    max_length: int | None

    def _load_processor(self, model: torch.nn.Module) -> dict[str, Any]:
        text_config = getattr(model.config, "text_config", model.config)
        limit = self.max_length or getattr(text_config, "max_position_embeddings", None) or 77
        accepted = {
            name
            for name, p in inspect.signature(model.get_text_features).parameters.items()
            if p.kind is not inspect.Parameter.VAR_KEYWORD
        }
        return {
            "tokenizer": self._from_pretrained("AutoTokenizer"),
            "max_length": int(limit),
            "padding": "max_length" if model.config.model_type in MAX_PADDING_TYPES else "longest",
            "accepted": accepted,
        }

    def _probe_items(self) -> list:
        return ["a"]

    def _preprocess_with(self, parts: dict[str, Any], items: list[str]) -> dict[str, torch.Tensor]:
        with self._tokenizer_lock:
            encoded = parts["tokenizer"](
                list(items),
                padding=parts["padding"],
                truncation=True,
                max_length=parts["max_length"],
                return_tensors="pt",
            )
        return {k: v for k, v in encoded.items() if k in parts["accepted"]}

    def _project(self, parts: dict[str, Any], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return projected_features(parts["model"].get_text_features(**batch))

    def forward_grad(self, batch: dict[str, torch.Tensor], device: torch.device) -> tuple[torch.Tensor, None, None]:
        """The vector with autograd on (this tower has no tokens)."""
        self._module_on(device)
        inputs = {k: v.to(device) for k, v in batch.items()}
        return l2_normalize(self._project(self._components(), inputs).float()), None, None

    def word_embeddings(self) -> torch.nn.Module:
        """The text tower's token embedding layer (integrated gradients attribute at its output)."""
        return input_embeddings(self._components()["model"])

    @property
    def pad_token_id(self) -> int:
        return int(self._components()["tokenizer"].pad_token_id or 0)

    def token_offsets(self, text: str) -> list[tuple[int, int] | None]:
        """Character span of each token ``preprocess([text])`` produces (None for special and padding tokens)."""
        parts = self._components()
        return tokenizer_offsets(parts["tokenizer"], self._tokenizer_lock, text, padding=parts["padding"],
                              max_length=parts["max_length"])
