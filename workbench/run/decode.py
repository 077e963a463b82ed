"""Image decoding for encoding runs: per-image CPU tasks on every core, and batched JPEG decoding on the GPU.

CPU: each image is one task (read, reduced-size decode, thumbnail, the encoder's resize and crop) writing its uint8
pixels straight into its slot of the batch, so the thread that drives the model does no per-image work.

GPU (CUDA with torchvision importable): workers only read the files and check their headers; the JPEGs of a batch
are decoded together by ``torchvision.io.decode_jpeg(..., device="cuda")`` and resized, cropped and rounded on the
device with antialiased interpolation (the same two steps as the CPU path: thumbnail to ``max_side``, then the
encoder's :class:`~workbench.data.images.PixelSpec`). Non-JPEG files, JPEGs above :data:`GPU_MAX_PIXELS` (the CPU
decodes those at reduced scale) and files the GPU decoder rejects fall back, one by one, to the CPU path.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from workbench.data.images import PixelSpec, load_image, read_image_file, thumbnail_size

GPU_MAX_PIXELS = 40_000_000  # full-resolution GPU decodes above this would hold ~120 MB each; the CPU drafts them
_TORCH_MODES = {int(Image.Resampling.NEAREST): "nearest", int(Image.Resampling.BILINEAR): "bilinear",
                int(Image.Resampling.BICUBIC): "bicubic", int(Image.Resampling.LANCZOS): "bicubic",
                int(Image.Resampling.HAMMING): "bilinear", int(Image.Resampling.BOX): "bilinear"}

DecodeFn = Callable[[list[torch.Tensor]], list[torch.Tensor]]
"""Batched JPEG decode: 1-D uint8 CPU tensors of file bytes -> (3, H, W) uint8 tensors on the target device."""


def decode_workers() -> int:
    """Decode threads: one per core this process may use (``os.cpu_count`` when affinity is unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def fixed_pixel_spec(encoder) -> PixelSpec | None:
    """The encoder's :class:`PixelSpec` when it declares one with a fixed output shape (so pixels can be batched
    and cached), else None: the encoder then preprocesses decoded PIL images itself."""
    spec_fn = getattr(encoder, "pixel_spec", None)
    spec = spec_fn() if callable(spec_fn) else None
    return spec if spec is not None and spec.shape is not None else None


def decode_pixels(path: str, max_side: int, spec: PixelSpec) -> np.ndarray:
    """One image on the CPU: reduced-size decode and thumbnail to ``max_side``, then the encoder's resize and crop."""
    return spec.apply(load_image(path, max_side=max_side))


def gpu_decode_available(device: torch.device) -> bool:
    """True on CUDA devices when torchvision (optional; not a requirement) can be imported."""
    return device.type == "cuda" and torch.cuda.is_available() and importlib.util.find_spec("torchvision") is not None


def torchvision_decoder(device: torch.device) -> DecodeFn:
    from torchvision.io import ImageReadMode, decode_jpeg

    def decode(datas: list[torch.Tensor]) -> list[torch.Tensor]:
        return decode_jpeg(datas, mode=ImageReadMode.RGB, device=device)

    return decode


@dataclass
class RawImage:
    """A file read by a CPU worker for the GPU decoder: its bytes and the size from its header."""

    path: str
    data: bytes
    width: int
    height: int


def read_for_gpu(path: str, max_side: int, spec: PixelSpec) -> RawImage | np.ndarray:
    """A worker's part of GPU decoding: JPEGs small enough are read (bytes + header check) for the device; anything
    else is decoded here on the CPU."""
    data, fmt, width, height = read_image_file(path)
    if fmt == "JPEG" and width * height <= GPU_MAX_PIXELS:
        return RawImage(path, data, width, height)
    return decode_pixels(path, max_side, spec)


@dataclass
class GpuDecodeResult:
    pixels: torch.Tensor  # (N, H, W, 3) uint8 on the device
    n_gpu: int  # decoded on the device
    n_fallback: int  # decoded on the CPU after the device decoder rejected them


class GpuJpegDecoder:
    """Batched JPEG decode plus thumbnail, resize and crop on ``device`` (see the module docstring)."""

    def __init__(self, spec: PixelSpec, max_side: int, device: torch.device, *,
                 decode_fn: DecodeFn | None = None) -> None:
        if spec.shape is None:
            raise ValueError(f"GPU decoding needs a fixed output shape; {spec} varies with the image")
        self.spec, self.max_side, self.device = spec, int(max_side), device
        self.decode_fn = decode_fn if decode_fn is not None else torchvision_decoder(device)
        self.mode = _TORCH_MODES.get(int(spec.resample), "bicubic")

    def _decode_all(self, raws: list[RawImage]) -> list[torch.Tensor | None]:
        """One batched call; when it fails, one call per image, so that only the bad files fall back."""
        tensors = [torch.frombuffer(bytearray(raw.data), dtype=torch.uint8) for raw in raws]
        if not tensors:
            return []
        try:
            return list(self.decode_fn(tensors))
        except Exception:  # one bad file fails the whole batch: find it
            out: list[torch.Tensor | None] = []
            for tensor in tensors:
                try:
                    out.append(self.decode_fn([tensor])[0])
                except Exception:
                    out.append(None)
            return out

    def _resize(self, chw: torch.Tensor) -> torch.Tensor:
        """(3, H, W) uint8 -> (H', W', 3) uint8: thumbnail to ``max_side`` (bicubic, like Pillow), the spec's
        resize, centre crop; rounded to uint8 after each resize as the CPU path stores its images."""
        x = chw.unsqueeze(0).float()
        height, width = x.shape[-2:]
        thumb = thumbnail_size((width, height), self.max_side)
        if thumb != (width, height):
            x = _interpolate(x, thumb, "bicubic")
        target = self.spec.target(thumb)
        if target != thumb:
            x = _interpolate(x, target, self.mode)
        if self.spec.crop is not None:
            ch, cw = self.spec.crop
            left, top = (target[0] - cw) // 2, (target[1] - ch) // 2
            x = _crop(x, left, top, cw, ch)
        return x[0].permute(1, 2, 0).to(torch.uint8)

    def __call__(self, items: Sequence[RawImage | np.ndarray]) -> GpuDecodeResult:
        """Pixels for ``items`` in order: RawImages decoded on the device, arrays (CPU-decoded) copied up."""
        raw_index = [i for i, item in enumerate(items) if isinstance(item, RawImage)]
        decoded = self._decode_all([items[i] for i in raw_index])
        out: list[torch.Tensor | None] = [None] * len(items)
        n_fallback = 0
        for i, chw in zip(raw_index, decoded, strict=True):
            if chw is None:
                n_fallback += 1
                raw = items[i]
                out[i] = torch.from_numpy(decode_pixels(raw.path, self.max_side, self.spec)).to(self.device)
            else:
                out[i] = self._resize(chw.to(self.device))
        for i, item in enumerate(items):
            if out[i] is None:
                out[i] = torch.from_numpy(np.array(item)).to(self.device)  # a copy: cache hits are read-only maps
        pixels = torch.stack(out) if out else torch.empty((0, *self.spec.shape, 3), dtype=torch.uint8)
        return GpuDecodeResult(pixels, len(raw_index) - n_fallback, n_fallback)


def _interpolate(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    width, height = size
    antialias = mode in ("bilinear", "bicubic")
    kwargs = {"align_corners": False} if antialias else {}
    x = torch.nn.functional.interpolate(x, size=(height, width), mode=mode, antialias=antialias, **kwargs)
    return x.round_().clamp_(0, 255)


def _crop(x: torch.Tensor, left: int, top: int, width: int, height: int) -> torch.Tensor:
    """Pillow's crop: the box may reach outside the image, where it is zero-filled."""
    out = x.new_zeros((*x.shape[:2], height, width))
    src_top, src_left = max(0, top), max(0, left)
    src_bottom, src_right = min(x.shape[-2], top + height), min(x.shape[-1], left + width)
    if src_bottom > src_top and src_right > src_left:
        out[..., src_top - top : src_bottom - top, src_left - left : src_right - left] = \
            x[..., src_top:src_bottom, src_left:src_right]
    return out
