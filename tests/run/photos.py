"""Real image files, tiny real ViTs and a CPU stand-in for torchvision's batched JPEG decoder, for the decode,
pixel-cache and encoding-pipeline tests."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

TINY_VIT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
            "image_size": 32, "patch_size": 8}


def photo(size: tuple[int, int], seed: int) -> Image.Image:
    """A smooth random colour field with some texture, like a product photo's gradients and edges."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(small).resize(size, Image.Resampling.BICUBIC), dtype=np.int16)
    noise = rng.integers(-12, 13, base.shape, dtype=np.int16)
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def make_photos(folder: Path) -> dict[str, str]:
    """One file per kind a catalogue holds: baseline / 4:4:4 / progressive / greyscale / CMYK JPEGs, a JPEG smaller
    than the decode size, a portrait JPEG and a PNG with transparency."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}

    def save(name: str, image: Image.Image, **kwargs) -> None:
        path = folder / name
        image.save(path, **kwargs)
        files[path.stem] = str(path)

    save("baseline.jpg", photo((1152, 864), 1), quality=90)
    save("yuv444.jpg", photo((700, 530), 2), quality=92, subsampling=0)
    save("progressive.jpg", photo((900, 600), 3), quality=85, progressive=True)
    save("grey.jpg", photo((640, 480), 4).convert("L"), quality=90)
    save("cmyk.jpg", photo((600, 600), 5).convert("CMYK"), quality=90)
    save("small.jpg", photo((120, 90), 6), quality=90)
    save("portrait.jpg", photo((480, 800), 7), quality=90)
    rgba = photo((500, 400), 8).convert("RGBA")
    rgba.putalpha(Image.new("L", rgba.size, 128))
    save("alpha.png", rgba)
    return files


def save_tiny_vit(folder: Path, *, seed: int, crop: bool = False) -> str:
    """A random tiny ViT saved with its image processor: a 32×32 squash, or (``crop``) shortest edge 36 then a
    32×32 centre crop, as CLIP's processor does."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(seed)
    ViTModel(ViTConfig(**TINY_VIT), add_pooling_layer=False).save_pretrained(folder)
    if crop:
        processor = ViTImageProcessor(size={"shortest_edge": 36}, do_center_crop=True,
                                      crop_size={"height": 32, "width": 32})
    else:
        processor = ViTImageProcessor(size={"height": 32, "width": 32})
    processor.save_pretrained(folder)
    return str(folder)


def pil_decode(datas: list[torch.Tensor]) -> list[torch.Tensor]:
    """Stands in for ``torchvision.io.decode_jpeg(datas, device=...)``: full-resolution RGB (3, H, W) uint8, and an
    error for the whole batch when one file is not a JPEG it can read, as nvjpeg's batched call does."""
    out = []
    for data in datas:
        image = Image.open(io.BytesIO(data.numpy().tobytes()))
        if image.format != "JPEG":
            raise RuntimeError("not a JPEG")
        out.append(torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1))
    return out


class CountingDecode:
    """``pil_decode`` that records the size of every call and rejects the files in ``reject`` (nvjpeg cannot read
    every JPEG the CPU can)."""

    def __init__(self, reject: set[bytes] = frozenset()) -> None:
        self.calls: list[int] = []
        self.reject = reject

    def __call__(self, datas: list[torch.Tensor]) -> list[torch.Tensor]:
        self.calls.append(len(datas))
        if any(d.numpy().tobytes() in self.reject for d in datas):
            raise RuntimeError("nvjpeg: unsupported")
        return pil_decode(datas)
