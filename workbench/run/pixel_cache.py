"""Decode once, encode many: decoded, resized and cropped uint8 pixels stored next to the database.

Two image encoders with the same input (e.g. CLIP B/32 then SigLIP B/16, both 224 px) need the same pixels; the
second one reads them here instead of decoding every JPEG again. An entry is keyed by (content hash, resize
policy): the policy covers the decode size (``max_side``), the encoder's :class:`~workbench.data.images.PixelSpec`
(input size, resize filter, crop) and :data:`DECODE_VERSION`.

Layout: ``<db folder>/pixel_cache/<policy>/<hash[:2]>/<hash>.npy``, one uint8 (H, W, 3) ``.npy`` per image, read
memory-mapped. Bounded: :data:`DEFAULT_MAX_BYTES` (10 GiB, about 70,000 images at 224 px) unless the constructor or
``$WORKBENCH_PIXEL_CACHE_GB`` says otherwise (``0`` turns the cache off). Eviction is least-recently-used by file
modification time, which every hit refreshes: when the bytes written push the total over the bound, the oldest
files go until the cache is at :data:`LOW_WATER` of it. Concurrency: a file is written under a temporary name and
renamed into place, so readers (threads or processes) see a whole entry or none; an evicted file that a reader has
mapped stays readable until it is closed (POSIX unlink semantics); a damaged entry counts as a miss and is removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import threading
from pathlib import Path

import numpy as np

from workbench import store
from workbench.data.images import PixelSpec

DECODE_VERSION = "1"  # bump when decoding changes the pixels, so older entries are not reused
DEFAULT_MAX_BYTES = 10 * 2**30
LOW_WATER = 0.9
ENV_MAX_GB = "WORKBENCH_PIXEL_CACHE_GB"
DIR_NAME = "pixel_cache"
_SAFE_NAME = re.compile(r"[0-9A-Za-z_-]{1,128}")


def policy_key(spec: PixelSpec, max_side: int) -> str:
    """The resize-policy part of the key: decode size, input size, filter and crop, and the decoder's version."""
    text = f"v{DECODE_VERSION}|max_side={int(max_side)}|{spec.key}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def max_bytes_from_env() -> int:
    """The bound from ``$WORKBENCH_PIXEL_CACHE_GB`` (GiB, may be fractional), else :data:`DEFAULT_MAX_BYTES`."""
    raw = os.environ.get(ENV_MAX_GB)
    if raw is None or not raw.strip():
        return DEFAULT_MAX_BYTES
    try:
        gib = float(raw)
    except ValueError:
        raise ValueError(
            f"${ENV_MAX_GB}={raw!r} is not a number of GiB; e.g. 10, 0.5, or 0 to turn the cache off"
        ) from None
    if gib < 0:
        raise ValueError(f"${ENV_MAX_GB}={raw!r} must be >= 0 (0 turns the cache off)")
    return int(gib * 2**30)


class PixelCache:
    """A bounded on-disk cache of decoded pixels; thread- and process-safe for readers and writers."""

    def __init__(self, root: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be > 0, got {max_bytes}; to turn the cache off, use no cache")
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()  # guards the byte count below, touched once per write
        self._written_since_check = 0
        self._known_bytes: int | None = None

    @classmethod
    def for_db(cls, db: str | os.PathLike[str] | None) -> PixelCache | None:
        """The cache next to ``db`` (``<db folder>/pixel_cache``), or None when ``$WORKBENCH_PIXEL_CACHE_GB`` is 0."""
        limit = max_bytes_from_env()
        if limit == 0:
            return None
        return cls(store.resolve_db_path(db).parent / DIR_NAME, max_bytes=limit)

    def path(self, policy: str, content_hash: str) -> Path:
        name = content_hash if _SAFE_NAME.fullmatch(content_hash) else hashlib.sha256(content_hash.encode()).hexdigest()
        return self.root / policy / name[:2] / f"{name}.npy"

    def get(self, policy: str, content_hash: str) -> np.ndarray | None:
        """The cached pixels (a read-only memory map), or None; a hit refreshes the entry's place in the LRU order."""
        path = self.path(policy, content_hash)
        try:
            pixels = np.load(path, mmap_mode="r", allow_pickle=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (ValueError, EOFError, OSError):  # truncated or foreign file: drop it, decode again
            self._drop(path)
            return None
        if pixels.dtype != np.uint8 or pixels.ndim != 3:
            self._drop(path)
            return None
        try:
            os.utime(path)
        except OSError:  # evicted meanwhile by another process; the open map stays valid
            pass
        return pixels

    @staticmethod
    def _drop(path: Path) -> None:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)

    def put(self, policy: str, content_hash: str, pixels: np.ndarray) -> bool:
        """Store ``pixels`` (uint8, H × W × 3) atomically; evicts old entries when over the bound. Best effort: a
        full or read-only disk costs the entry (returns False), never the encoding."""
        if pixels.dtype != np.uint8 or pixels.ndim != 3:
            raise ValueError(f"pixels must be a uint8 (H, W, C) array, got {pixels.dtype} {pixels.shape}")
        path = self.path(policy, content_hash)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-", suffix=".npy")
            try:
                with os.fdopen(fd, "wb") as out:
                    np.save(out, np.ascontiguousarray(pixels), allow_pickle=False)
                os.replace(tmp, path)
            finally:
                Path(tmp).unlink(missing_ok=True)
            size = path.stat().st_size
        except OSError:
            return False
        with self._lock:  # the first write scans once; later ones when over the bound or after 5 % of it
            first = self._known_bytes is None
            self._known_bytes = (self._known_bytes or 0) + size
            self._written_since_check += size
            due = first or self._known_bytes > self.max_bytes or self._written_since_check > self.max_bytes // 20
            if due:
                self._written_since_check = 0
        if due:
            self.evict()
        return True

    def _entries(self) -> list[tuple[float, int, Path]]:
        entries = []
        for dirpath, _, files in os.walk(self.root):
            for name in files:
                if name.endswith(".npy") and not name.startswith(".part-"):
                    path = Path(dirpath) / name
                    try:
                        stat = path.stat()
                    except FileNotFoundError:
                        continue
                    entries.append((stat.st_mtime, stat.st_size, path))
        return entries

    def size_bytes(self) -> int:
        """Bytes held by complete entries now (a scan)."""
        return sum(size for _, size, _ in self._entries())

    def evict(self) -> int:
        """Remove least-recently-used entries until the cache is at ``LOW_WATER × max_bytes``; returns how many."""
        entries = self._entries()
        total = sum(size for _, size, _ in entries)
        removed = 0
        if total > self.max_bytes:
            target = int(self.max_bytes * LOW_WATER)
            for _, size, path in sorted(entries, key=lambda e: e[0]):
                if total <= target:
                    break
                path.unlink(missing_ok=True)
                total -= size
                removed += 1
        with self._lock:
            self._known_bytes = total
        return removed
