"""What transformers-backed encoders do to their inputs and outputs, apart from loading: a fast image transform,
pixel batches, token spans, pooling and the projection of dual encoders.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import torch
from PIL import Image

from workbench.data.images import PixelSpec

TEXT_POOLINGS = ("mean", "cls", "max", "mean_sqrt_len")


class FastImageTransform:
    """The resize / centre-crop / rescale / normalise of common image processors (ViT, CLIP, SigLIP, DINOv2 …),
    split so that worker threads only resize and crop uint8 images and the device does the arithmetic.

    transformers' processors convert every image to float numpy arrays on the CPU, which starves a GPU; this keeps
    the CPU work to one PIL resize per image. Processors with other steps (e.g. ConvNeXt's crop_pct) are not
    handled: :meth:`from_processor` returns None and the processor itself is used.
    """

    def __init__(self, resize: dict, crop: tuple[int, int] | None, resample: int, scale: float, mean, std) -> None:
        self.crop, self.scale = crop, scale
        if "shortest_edge" in resize:
            self.spec = PixelSpec(shortest_edge=int(resize["shortest_edge"]), crop=crop, resample=resample)
        else:
            self.spec = PixelSpec(size=(int(resize["width"]), int(resize["height"])), crop=crop, resample=resample)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    @classmethod
    def from_processor(cls, processor: Any) -> FastImageTransform | None:
        size = size_dict(getattr(processor, "size", None))
        if (getattr(processor, "crop_pct", None) is not None or not getattr(processor, "do_resize", False)
                or not getattr(processor, "do_normalize", False) or getattr(processor, "do_pad", False)
                or not ({"shortest_edge"} == set(size) or {"height", "width"} == set(size))):
            return None
        crop = None
        if getattr(processor, "do_center_crop", False):
            crop_size = size_dict(processor.crop_size)
            crop = (int(crop_size["height"]), int(crop_size["width"]))
        scale = float(processor.rescale_factor) if getattr(processor, "do_rescale", True) else 1.0
        resample = int(getattr(processor, "resample", Image.Resampling.BICUBIC))
        return cls(dict(size), crop, resample, scale, processor.image_mean, processor.image_std)

    def view_box(self, size: tuple[int, int]) -> tuple[float, float, float, float]:
        """The part of a (width, height) image the model sees after resize and centre crop, as fractions
        (left, top, right, bottom); explanations place their patch grid there."""
        if self.crop is None:
            return 0.0, 0.0, 1.0, 1.0
        (tw, th), (ch, cw) = self.spec.target(size), self.crop
        left, top = (tw - cw) // 2, (th - ch) // 2
        return max(0.0, left / tw), max(0.0, top / th), min(1.0, (left + cw) / tw), min(1.0, (top + ch) / th)

    def __call__(self, images: list[Image.Image]) -> torch.Tensor:
        """(N, H, W, 3) uint8, resized and cropped (:class:`PixelSpec`, which decode workers apply too)."""
        return torch.from_numpy(np.stack([self.spec.apply(image) for image in images]))

    def to_pixel_values(self, batch: torch.Tensor, device: torch.device) -> torch.Tensor:
        x = batch.to(device, non_blocking=True).permute(0, 3, 1, 2).float() * self.scale
        return (x - self.mean.to(device)) / self.std.to(device)


def size_dict(size: Any) -> dict[str, int]:
    """A processor's size (a dict, a transformers SizeDict or an int) as a dict of the keys that are set."""
    if size is None:
        return {}
    if isinstance(size, int):
        return {"height": size, "width": size}
    items = size.items() if isinstance(size, dict) else vars(size).items()
    return {k: int(v) for k, v in items if v is not None}


def image_batch(parts: dict[str, Any], images: list[Image.Image]) -> dict[str, torch.Tensor]:
    fast = parts.get("fast")
    if fast is not None:
        return {"pixel_uint8": fast(images)}
    rgb = [image.convert("RGB") for image in images]
    return {"pixel_values": parts["processor"](images=rgb, return_tensors="pt")["pixel_values"]}


def fast_pixel_spec(parts: dict[str, Any]) -> PixelSpec | None:
    """The resize and crop of an image encoder whose processor :class:`FastImageTransform` handles, else None."""
    fast = parts.get("fast")
    return fast.spec if fast is not None else None


def pixel_values(parts: dict[str, Any], batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
    if "pixel_uint8" in batch:
        return parts["fast"].to_pixel_values(batch["pixel_uint8"], device)
    return batch["pixel_values"].to(device)

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


def projected_features(output: Any) -> torch.Tensor:
    """get_*_features returns a tensor in older transformers and an output with the projection as pooler_output
    in newer ones."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def input_embeddings(model: torch.nn.Module) -> torch.nn.Module:
    """The token embedding layer of a text model or of a dual encoder's text tower."""
    try:
        return model.get_input_embeddings()
    except NotImplementedError:  # dual encoders (CLIP, SigLIP) leave it to their text tower
        return model.text_model.get_input_embeddings()


def use_eager_attention(model: torch.nn.Module) -> None:
    """Attention maps with gradients need the eager implementation (SDPA returns none); same outputs."""
    if getattr(model.config, "_attn_implementation", "eager") != "eager" and hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")


def tokenizer_offsets(tokenizer: Any, lock: threading.Lock, text: str, **kwargs: Any) -> list[tuple[int, int] | None]:
    """Character span of each token of ``text`` as the encoder tokenizes it (None for special and padding)."""
    if not getattr(tokenizer, "is_fast", False):
        raise NotImplementedError("token spans need a fast (Rust) tokenizer")
    with lock:
        encoded = tokenizer([text], truncation=True, return_offsets_mapping=True, **kwargs)
    return [(int(a), int(b)) if b > a else None for a, b in encoded["offset_mapping"][0]]


def seen_box(parts: dict[str, Any], size: tuple[int, int]) -> tuple[float, float, float, float]:
    fast = parts.get("fast")
    return fast.view_box(size) if fast is not None else (0.0, 0.0, 1.0, 1.0)
