from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image, ImageFile
from PIL.JpegImagePlugin import JpegImageFile

from workbench.data.images import (
    LARGE_DECODE_PIXELS,
    ImageCache,
    ImageError,
    load_image,
    probe_image,
    sha256_file,
    sha256_text,
)

if TYPE_CHECKING:
    from tests.data.conftest import LocalServer, MakeImage


def _error_code(path: Path, **kwargs: int) -> ImageError:
    with pytest.raises(ImageError) as info:
        load_image(path, **kwargs)
    return info.value


@pytest.fixture
def count_loads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Records the size of every image whose pixel data Pillow actually decodes (after any JPEG draft)."""
    sizes: list[tuple[int, int]] = []
    original = ImageFile.ImageFile.load

    def load(self: ImageFile.ImageFile) -> object:
        if self.tile:
            sizes.append(self.size)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return sizes


def test_jpeg_is_drafted_and_thumbnailed(make_image: MakeImage, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_image("photo.jpg", size=(1600, 1200))
    calls = []
    original = JpegImageFile.draft

    def draft(self: JpegImageFile, mode: str | None, size: tuple[int, int] | None) -> object:
        calls.append((mode, size))
        return original(self, mode, size)

    monkeypatch.setattr(JpegImageFile, "draft", draft)
    im = load_image(path, max_side=128)
    assert im.mode == "RGB"
    assert max(im.size) == 128 and im.size == (128, 96)
    assert calls[0] == ("RGB", (128, 128))


@pytest.mark.parametrize(
    ("mode", "suffix"), [("RGBA", ".png"), ("L", ".png"), ("CMYK", ".jpg"), ("RGB", ".webp"), ("L", ".jpg")]
)
def test_modes_become_rgb(make_image: MakeImage, mode: str, suffix: str) -> None:
    im = load_image(make_image(f"x{suffix}", size=(300, 100), mode=mode), max_side=64)
    assert im.mode == "RGB" and im.size == (64, 21)


def test_transparency_and_palette_become_white_rgb(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    rgba.save(tmp_path / "clear.png")
    palette = Image.new("P", (10, 10), 0)
    palette.putpalette([0, 0, 0] * 256)
    palette.info["transparency"] = 0
    palette.save(tmp_path / "pal.png", transparency=0)
    assert load_image(tmp_path / "clear.png").getpixel((5, 5)) == (255, 255, 255)
    assert load_image(tmp_path / "pal.png").getpixel((5, 5)) == (255, 255, 255)


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    Image.fromarray(np.full((8, 8), 40_000, dtype=np.uint16)).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    assert load_image(tmp_path / "deep.png").getpixel((0, 0)) == (155, 155, 155)


def test_one_bit_image(tmp_path: Path) -> None:
    Image.new("1", (20, 20), 1).save(tmp_path / "bw.png")
    assert load_image(tmp_path / "bw.png").getpixel((3, 3)) == (255, 255, 255)


def test_missing_file(tmp_path: Path) -> None:
    err = _error_code(tmp_path / "nope.jpg")
    assert isinstance(err, ValueError) and err.code == "missing_file" and "not found" in str(err)


def test_zero_bytes(zero_byte_file: Path) -> None:
    err = _error_code(zero_byte_file)
    assert err.code == "zero_bytes" and "0 bytes" in str(err)


def test_text_file_named_jpg(text_as_jpg: Path) -> None:
    err = _error_code(text_as_jpg)
    assert err.code == "not_image" and "not an image" in str(err)


def test_truncated_jpeg(truncated_jpeg: Path) -> None:
    err = _error_code(truncated_jpeg)
    assert err.code == "corrupt_image" and "truncated" in str(err)
    with pytest.raises(ImageError, match="truncated"):
        probe_image(truncated_jpeg)


def test_huge_jpeg_under_pillows_limit_is_decoded_at_reduced_size(huge_jpeg: Path, count_loads: list) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # accepted, not merely tolerated
        info = probe_image(huge_jpeg)
        im = load_image(huge_jpeg, max_side=256)
    assert (info.width, info.height, info.format) == (11000, 8600, "JPEG")
    assert info.width * info.height > Image.MAX_IMAGE_PIXELS  # above Pillow's warning level
    assert im.mode == "RGB" and im.size == (256, 200)
    # Drafted to 1/8 before anything was decoded: 1.5 megapixels in memory instead of 94.6.
    assert count_loads == [(1375, 1075), (1375, 1075)]


def test_bomb_is_refused_from_the_header(bomb_png: Path, count_loads: list) -> None:
    err = _error_code(bomb_png)
    assert err.code == "too_large"
    limit = 2 * Image.MAX_IMAGE_PIXELS / 1e6
    assert f"100000×100000 = 10000.0 megapixels > limit {limit:.1f} (Pillow's decompression-bomb limit" in str(err)
    with pytest.raises(ImageError, match="too large"):
        probe_image(bomb_png)
    assert count_loads == []  # refused before any pixel was decoded


def test_the_default_limit_follows_pillows_setting(
    huge_jpeg: Path, monkeypatch: pytest.MonkeyPatch, count_loads: list
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40_000_000)  # refusal level 80 megapixels
    err = _error_code(huge_jpeg)
    assert err.code == "too_large" and "11000×8600 = 94.6 megapixels > limit 80.0" in str(err)
    assert count_loads == []
    assert Image.MAX_IMAGE_PIXELS == 40_000_000


def test_max_pixels_is_configurable(make_image: MakeImage) -> None:
    path = make_image("small.png", size=(100, 100))
    assert _error_code(path, max_pixels=5_000).code == "too_large"
    with pytest.raises(ImageError, match="too large"):
        probe_image(path, max_pixels=5_000)
    assert load_image(path, max_pixels=10_000).size == (100, 100)


def test_large_image_is_decoded_once(large_palette_png: Path, count_loads: list) -> None:
    im = load_image(large_palette_png, max_side=256)
    assert im.mode == "RGB" and max(im.size) <= 256
    assert count_loads == [(6000, 4000)]


def test_large_full_decodes_run_one_at_a_time(
    large_palette_png: Path, make_image: MakeImage, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A PNG cannot be decoded at reduced size, so big ones take a process-wide lock: concurrent probes then
    hold at most one full-size image in memory. Small images and drafted JPEGs never wait for it."""
    from workbench.data import images

    held: dict[tuple[int, int], bool] = {}
    original = ImageFile.ImageFile.load

    def load(self: ImageFile.ImageFile) -> object:
        if self.tile:
            held[self.size] = images._large_decode_lock.locked()
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    big_jpeg = tmp_path / "big.jpg"
    Image.new("RGB", (6000, 3000), (90, 30, 10)).save(big_jpeg)  # 18 MP, drafted to 750×375
    for path in (large_palette_png, make_image("small.png", size=(300, 200)), big_jpeg):
        load_image(path)
    assert 6000 * 4000 > LARGE_DECODE_PIXELS > 750 * 375
    assert held == {(6000, 4000): True, (300, 200): False, (750, 375): False}
    assert not images._large_decode_lock.locked()


def test_pillow_bomb_limit_is_lifted_only_inside_the_call(
    make_image: MakeImage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    path = make_image("p.png", size=(100, 100))
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)
    assert _error_code(path).code == "too_large"  # the default limit is Pillow's: 2 × 1,000 pixels
    assert load_image(path, max_pixels=20_000).size == (100, 100)  # an explicit limit may exceed Pillow's
    assert Image.MAX_IMAGE_PIXELS == 1_000


def test_probe_image_reports_original_size_and_hash(make_image: MakeImage) -> None:
    path = make_image("shot.jpg", size=(640, 480))
    info = probe_image(path)
    assert (info.width, info.height, info.format) == (640, 480, "JPEG")
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_sha256_helpers(tmp_path: Path) -> None:
    data = bytes(range(256)) * 5000  # spans several read chunks
    (tmp_path / "blob").write_bytes(data)
    assert sha256_file(tmp_path / "blob") == hashlib.sha256(data).hexdigest()
    assert sha256_text("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert sha256_text("红色马克杯") == hashlib.sha256("红色马克杯".encode()).hexdigest()


def test_cache_downloads_once(local_server: LocalServer, tmp_path: Path) -> None:
    url = f"{local_server.base_url}/img/a.PNG"
    cache = ImageCache(tmp_path / "cache")
    first = cache.fetch(url)
    assert first.read_bytes() == local_server.png
    assert first.name == hashlib.sha256(url.encode()).hexdigest() + ".png"
    assert cache.fetch(url) == first
    assert ImageCache(tmp_path / "cache").fetch(url) == first  # a new cache over the same folder too
    assert local_server.requests["/img/a.PNG"] == 1
    assert load_image(first).size == (24, 24)


def test_cache_http_error(local_server: LocalServer, tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="HTTP 404") as info:
        ImageCache(tmp_path).fetch(f"{local_server.base_url}/missing.jpg")
    assert info.value.code == "url_failed"


@pytest.mark.parametrize("path", ["/declared-big.png", "/stream-big.png"])
def test_cache_size_limit(local_server: LocalServer, tmp_path: Path, path: str) -> None:
    cache = ImageCache(tmp_path / "c", max_bytes=100_000)
    with pytest.raises(ImageError, match="too large"):
        cache.fetch(local_server.base_url + path)
    assert list((tmp_path / "c").iterdir()) == []  # nothing partial left behind


def test_cache_timeout(local_server: LocalServer, tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="timed out") as info:
        ImageCache(tmp_path, timeout=0.2).fetch(f"{local_server.base_url}/slow.png")
    assert info.value.code == "url_failed"


@pytest.mark.parametrize("url", ["ftp://example.com/a.jpg", "file:///etc/passwd", "javascript:alert(1)"])
def test_cache_rejects_other_schemes(tmp_path: Path, url: str) -> None:
    with pytest.raises(ImageError, match="only http") as info:
        ImageCache(tmp_path).fetch(url)
    assert info.value.code == "url_failed"
