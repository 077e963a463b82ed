"""Safe image loading, probing, hashing and a download cache for URL images.

Every failure is an :class:`ImageError` with a stable ``code`` (the validation issue code) and a message
that says what is wrong and what to do about it.

Size policy: an image is accepted up to Pillow's own decompression-bomb limit (``2 * Image.MAX_IMAGE_PIXELS``,
about 179 megapixels by default), read from the header before anything is decoded. JPEGs are decoded at reduced
scale (``Image.draft``: 1/2 to 1/8 of each side), so a 94-megapixel phone photo costs about 1.5 megapixels of
memory. Formats without reduced decoding (PNG, WebP, TIFF …) must be decoded in full; those above
:data:`LARGE_DECODE_PIXELS` are decoded one at a time, so concurrent probes hold at most one such image in memory.

:class:`PixelSpec` is the second half of preprocessing: how an encoder resizes and crops a decoded image into its
uint8 input, shared by the encoders, the CPU and GPU decoders and the decoded-pixel cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

LARGE_DECODE_PIXELS = 16_000_000  # full decodes above this (≈ 48 MB as RGB) are serialised
_CHUNK = 1 << 20
_PROBE_SIDE = 32
_bomb_guard_lock = threading.Lock()
_large_decode_lock = threading.Lock()


class ImageError(ValueError):
    """An image that cannot be used; ``code`` is the validation issue code (e.g. ``"corrupt_image"``)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    format: str
    sha256: str


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    """Hex sha256 of the UTF-8 encoding of ``text``."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@contextlib.contextmanager
def _pillow_bomb_check_disabled() -> Iterator[None]:
    """Switch off Pillow's own pixel limit while a header is parsed; the caller applies its limit itself.

    Pillow warns above ``MAX_IMAGE_PIXELS`` and refuses above twice that before we can see the size, which would
    make an explicit ``max_pixels`` above Pillow's limit unusable and turn accepted photos into warnings. The lock
    keeps concurrent callers from restoring a stale value.
    """
    with _bomb_guard_lock:
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ImageError(f"file not found: {path}; check the path and the image root", code="missing_file")
    if not path.is_file():
        raise ImageError(f"not a regular file: {path}", code="missing_file")
    if path.stat().st_size == 0:
        raise ImageError(f"file is empty (0 bytes): {path}; re-export or re-download it", code="zero_bytes")


def _pixel_limit(max_pixels: int | None) -> tuple[int | None, str]:
    """The limit in force and how to raise it: ``max_pixels`` if given, else Pillow's decompression-bomb limit
    (read at call time, so a changed ``Image.MAX_IMAGE_PIXELS`` applies; ``None`` there switches it off)."""
    if max_pixels is not None:
        return max_pixels, "max_pixels"
    if Image.MAX_IMAGE_PIXELS is None:
        return None, ""
    return 2 * Image.MAX_IMAGE_PIXELS, "Pillow's decompression-bomb limit, 2 × PIL.Image.MAX_IMAGE_PIXELS"


def _open_checked(path: Path, max_pixels: int | None) -> Image.Image:
    """Open lazily (header only) and refuse images over the pixel limit before anything is decoded."""
    limit, source = _pixel_limit(max_pixels)
    try:
        with _pillow_bomb_check_disabled():
            im = Image.open(path)
    except UnidentifiedImageError:
        raise ImageError(
            f"not an image or an unsupported format: {path}; convert it to JPEG or PNG", code="not_image"
        ) from None
    except Exception as exc:  # damaged headers raise assorted errors inside Pillow's plugins
        raise ImageError(
            f"corrupt image header in {path}: {exc}; re-export the file", code="corrupt_image"
        ) from exc
    width, height = im.size
    if limit is not None and width * height > limit:
        im.close()
        raise ImageError(
            f"too large: {width}×{height} = {width * height / 1e6:.1f} megapixels > limit "
            f"{limit / 1e6:.1f} ({source}); downscale the image, or raise the limit if you trust the file",
            code="too_large",
        )
    return im


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any mode (palette, alpha, CMYK, 16-bit, grayscale) to RGB; transparency becomes white."""
    if im.mode == "RGB":
        return im
    if im.mode.startswith("I") or im.mode == "F":
        arr = np.asarray(im).astype(np.float64)
        if im.mode.startswith("I;16") or (im.mode == "I" and arr.max(initial=0) > 255):
            arr = arr / 257.0
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L").convert("RGB")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return im.convert("RGB")


def _decode(path: Path, max_side: int, max_pixels: int | None) -> tuple[Image.Image, int, int, str]:
    """Decode once at reduced size; return the RGB thumbnail with the original width, height and format.

    The JPEG draft is set before any pixel is read, so the decode itself happens at reduced scale.
    """
    _check_file(path)
    im = _open_checked(path, max_pixels)
    width, height, fmt = im.size[0], im.size[1], im.format or "unknown"
    try:
        with im:
            if fmt == "JPEG":
                im.draft("RGB", (max_side, max_side))
            large = im.size[0] * im.size[1] > LARGE_DECODE_PIXELS
            with _large_decode_lock if large else contextlib.nullcontext():
                im.thumbnail((max_side, max_side))
                rgb = _to_rgb(im)
                rgb.load()
    except Image.DecompressionBombError as exc:
        raise ImageError(f"too large: {path}: {exc}", code="too_large") from exc
    except Exception as exc:  # damaged data makes Pillow's plugins raise struct.error, IndexError, …
        raise ImageError(
            f"corrupt or truncated image {path}: {exc}; re-export or re-download it", code="corrupt_image"
        ) from exc
    return rgb, width, height, fmt


def load_image(
    path: str | os.PathLike[str], *, max_side: int = 256, max_pixels: int | None = None
) -> Image.Image:
    """Load an image as RGB with its long side at most ``max_side``.

    JPEGs are decoded at reduced scale (``Image.draft``); other formats are decoded once and thumbnailed.
    ``max_pixels`` defaults to Pillow's decompression-bomb limit. Raises :class:`ImageError` for missing,
    empty, non-image, corrupt or over-limit files.
    """
    return _decode(Path(path), max_side, max_pixels)[0]


@dataclass(frozen=True)
class PixelSpec:
    """How an encoder turns a decoded RGB image into its uint8 input: a resize to a fixed ``size`` (width, height)
    or to a ``shortest_edge``, then an optional centre ``crop`` (height, width), with a PIL ``resample`` filter.

    One implementation for the encoders' own preprocessing, the decode workers and the decoded-pixel cache (whose
    key includes :attr:`key`), so every path produces the same pixels.
    """

    size: tuple[int, int] | None = None
    shortest_edge: int | None = None
    crop: tuple[int, int] | None = None
    resample: int = int(Image.Resampling.BICUBIC)

    def __post_init__(self) -> None:
        if (self.size is None) == (self.shortest_edge is None):
            raise ValueError(f"PixelSpec needs exactly one of size or shortest_edge, got size={self.size!r}, "
                             f"shortest_edge={self.shortest_edge!r}")
        sides = [*(self.size or ()), *([self.shortest_edge] if self.shortest_edge else []), *(self.crop or ())]
        if any(int(side) < 1 for side in sides):
            raise ValueError(f"PixelSpec sides must be >= 1, got size={self.size!r}, "
                             f"shortest_edge={self.shortest_edge!r}, crop={self.crop!r}")

    def target(self, size: tuple[int, int]) -> tuple[int, int]:
        """The (width, height) an image of ``size`` is resized to before the crop."""
        if self.size is not None:
            return int(self.size[0]), int(self.size[1])
        edge = int(self.shortest_edge)
        width, height = size
        ratio = edge / min(width, height)
        return max(edge, round(width * ratio)), max(edge, round(height * ratio))

    @property
    def shape(self) -> tuple[int, int] | None:
        """(height, width) of every output, or None when it varies with the image (shortest edge, no crop)."""
        if self.crop is not None:
            return int(self.crop[0]), int(self.crop[1])
        return (int(self.size[1]), int(self.size[0])) if self.size is not None else None

    @property
    def key(self) -> str:
        """A stable text naming this resize policy (part of the decoded-pixel cache key)."""
        return (f"size={self.size}|shortest_edge={self.shortest_edge}|crop={self.crop}|"
                f"resample={int(self.resample)}")

    def apply(self, image: Image.Image) -> np.ndarray:
        """(H, W, 3) uint8: the image resized and centre-cropped."""
        image = image.convert("RGB")
        image = image.resize(self.target(image.size), resample=self.resample)
        if self.crop is not None:
            ch, cw = self.crop
            left, top = (image.width - cw) // 2, (image.height - ch) // 2
            image = image.crop((left, top, left + cw, top + ch))
        return np.asarray(image, dtype=np.uint8).copy()


def thumbnail_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """The (width, height) ``Image.thumbnail((max_side, max_side))`` gives an image of ``size`` (never larger)."""
    width, height = size
    if width <= max_side and height <= max_side:
        return width, height
    aspect = width / height
    if aspect >= 1:  # Pillow's rounding: of floor and ceil, the one whose aspect ratio is closer
        h = max(min(math.floor(max_side / aspect), math.ceil(max_side / aspect),
                    key=lambda n: 0 if n == 0 else abs(aspect - max_side / n)), 1)
        return max_side, h
    w = max(min(math.floor(max_side * aspect), math.ceil(max_side * aspect),
                key=lambda n: abs(aspect - n / max_side)), 1)
    return w, max_side


def read_image_file(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> tuple[bytes, str, int, int]:
    """A file's bytes with its format, width and height, checked like :func:`load_image` (missing, empty, not an
    image, over the pixel limit) but not decoded: what a GPU decoder needs."""
    path = Path(path)
    _check_file(path)
    with _open_checked(path, max_pixels) as im:
        fmt, width, height = im.format or "unknown", im.size[0], im.size[1]
    return path.read_bytes(), fmt, width, height


def probe_image(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> ImageInfo:
    """Validate an image fully (header and a reduced decode) and hash its bytes; limits as :func:`load_image`."""
    path = Path(path)
    _, width, height, fmt = _decode(path, _PROBE_SIDE, max_pixels)
    return ImageInfo(width=width, height=height, format=fmt, sha256=sha256_file(path))


def is_url(value: str) -> bool:
    """True for values with a URL scheme (``http://``, ``ftp://`` …); Windows drive letters do not count."""
    return re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]+://", value) is not None


class ImageCache:
    """Downloads http(s) images once into ``cache_dir``; later fetches of a URL are served from disk."""

    def __init__(
        self, cache_dir: str | os.PathLike[str], *, timeout: float = 10.0, max_bytes: int = 20_000_000
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def path_for(self, url: str) -> Path:
        """Where ``url`` is (or would be) cached: sha256 of the URL plus the URL's file extension."""
        suffix = Path(urllib.parse.urlsplit(url).path).suffix.lower()
        if not re.fullmatch(r"\.[a-z0-9]{1,5}", suffix):
            suffix = ""
        return self.cache_dir / f"{hashlib.sha256(url.encode('utf-8')).hexdigest()}{suffix}"

    def fetch(self, url: str) -> Path:
        """Return the local path of ``url``, downloading it on first use; raises ImageError ``url_failed``."""
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            raise ImageError(
                f"unsupported URL scheme {scheme or '(none)'!r} in {url}; only http(s) images are fetched",
                code="url_failed",
            )
        target = self.path_for(url)
        with self._lock_for(url):
            if target.exists():
                return target
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            self._download(url, target)
        return target

    def _lock_for(self, url: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(url, threading.Lock())

    def _download(self, url: str, target: Path) -> None:
        fd, tmp_name = tempfile.mkstemp(dir=self.cache_dir, prefix=".part-", suffix=target.suffix)
        try:
            with os.fdopen(fd, "wb") as out:
                self._stream(url, out)
            os.replace(tmp_name, target)
        finally:
            Path(tmp_name).unlink(missing_ok=True)

    def _stream(self, url: str, out: BinaryIO) -> None:
        request = urllib.request.Request(url, headers={"User-Agent": "workbench-image-cache/1"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                length = response.headers.get("Content-Length")
                if length is not None and length.isdigit() and int(length) > self.max_bytes:
                    raise ImageError(
                        f"download too large: {url} is {int(length):,} bytes > limit {self.max_bytes:,}",
                        code="url_failed",
                    )
                received = 0
                while chunk := response.read(64 * 1024):
                    received += len(chunk)
                    if received > self.max_bytes:
                        raise ImageError(
                            f"download too large: {url} exceeded {self.max_bytes:,} bytes; aborted",
                            code="url_failed",
                        )
                    out.write(chunk)
        except urllib.error.HTTPError as exc:
            raise ImageError(f"HTTP {exc.code} {exc.reason} for {url}", code="url_failed") from exc
        except urllib.error.URLError as exc:
            reason = "timed out" if isinstance(exc.reason, TimeoutError) else str(exc.reason)
            raise ImageError(f"could not fetch {url}: {reason}", code="url_failed") from exc
        except TimeoutError as exc:
            raise ImageError(f"timed out after {self.timeout:g} s fetching {url}", code="url_failed") from exc
        except OSError as exc:
            raise ImageError(f"could not fetch {url}: {exc}", code="url_failed") from exc
