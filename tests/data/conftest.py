"""Real small image files, malformed files and a local HTTP server for the data tests."""

from __future__ import annotations

import io
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

MakeImage = Callable[..., Path]


def image_bytes(
    size: tuple[int, int] = (40, 30), *, fmt: str = "PNG", mode: str = "RGB", seed: int = 0
) -> bytes:
    """Encoded noise image (noise so that JPEG truncation really damages pixel data)."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "CMYK": 4, "L": 1}[mode]
    arr = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    im = Image.fromarray(arr[..., 0] if channels == 1 else arr, mode=mode)
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture
def make_image(tmp_path: Path) -> MakeImage:
    """``make_image("a/b.jpg", size=(w, h), mode=...)`` writes a real image (format from the suffix)."""

    def make(relative: str, *, size: tuple[int, int] = (40, 30), mode: str = "RGB", seed: int = 0) -> Path:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}[path.suffix.lower()]
        path.write_bytes(image_bytes(size, fmt=fmt, mode=mode, seed=seed))
        return path

    return make


@pytest.fixture
def truncated_jpeg(tmp_path: Path) -> Path:
    data = image_bytes((200, 150), fmt="JPEG")
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture
def zero_byte_file(tmp_path: Path) -> Path:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    return path


@pytest.fixture
def text_as_jpg(tmp_path: Path) -> Path:
    path = tmp_path / "notes.jpg"
    path.write_text("this is not an image\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def huge_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """11000×8600 JPEG (94.6 megapixels, like a real phone photo; above Pillow's warning level, under its
    refusal level): one colour at low quality, 1.5 MB on disk and written in under a second."""
    path = tmp_path_factory.mktemp("huge") / "huge.jpg"
    Image.new("RGB", (11000, 8600), (200, 120, 40)).save(path, quality=10)
    return path


@pytest.fixture(scope="session")
def bomb_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PNG whose header claims 100000×100000 pixels (10 gigapixels) over a few bytes of data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 1, 0, 0, 0, 0)  # 1-bit grayscale
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b"")
    )
    return path


@pytest.fixture(scope="session")
def large_palette_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6000×4000 palette PNG (24 megapixels, under the default limit)."""
    path = tmp_path_factory.mktemp("large") / "large.png"
    Image.new("P", (6000, 4000), 3).save(path)
    return path


@dataclass
class LocalServer:
    base_url: str
    requests: Counter[str]
    png: bytes


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        self.server.requests[self.path] += 1
        try:
            if self.path.startswith("/img"):
                self._send(self.server.png, "image/png")
            elif self.path == "/declared-big.png":
                self.send_response(200)
                self.send_header("Content-Length", str(10_000_000))
                self.end_headers()
                self.wfile.write(b"\0" * 1024)
            elif self.path == "/stream-big.png":
                self.send_response(200)  # no Content-Length: the limit must hold while streaming
                self.end_headers()
                for _ in range(64):
                    self.wfile.write(b"\0" * 4096)
            elif self.path == "/slow.png":
                time.sleep(1.0)
                self._send(self.server.png, "image/png")
            else:
                self.send_error(404, "Not Found")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (size limit or timeout), as the test intends

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    requests: Counter[str]
    png: bytes


@pytest.fixture
def local_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalServer]:
    """ThreadingHTTPServer on 127.0.0.1 (port 0) in a thread, counting requests per path."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.requests = Counter()
    server.png = image_bytes((24, 24), fmt="PNG", seed=7)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield LocalServer(f"http://127.0.0.1:{server.server_address[1]}", server.requests, server.png)
    finally:
        server.shutdown()
        server.server_close()
