"""CPU and GPU decoding: the same pixels as before on the CPU, batching and per-image fallback on the GPU path (run
here with a CPU stand-in for torchvision's decoder), and embeddings that agree between the two paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from photos import CountingDecode, make_photos, pil_decode, save_tiny_vit
from PIL import Image

from workbench.data.images import ImageError, PixelSpec, load_image, thumbnail_size
from workbench.models import create_encoder
from workbench.run.decode import (
    GpuJpegDecoder,
    RawImage,
    decode_pixels,
    decode_workers,
    fixed_pixel_spec,
    gpu_decode_available,
    read_for_gpu,
)
from workbench.run.encoding import decode_side

SPEC = PixelSpec(size=(32, 32))
CROP_SPEC = PixelSpec(shortest_edge=36, crop=(32, 32))


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, str]:
    return make_photos(tmp_path_factory.mktemp("photos"))


def test_thumbnail_size_follows_pillow():
    for size, side in (((1152, 864), 256), ((4000, 3000), 224), ((300, 200), 256), ((2048, 512), 256),
                       ((480, 800), 256), ((1001, 999), 37)):
        with Image.new("RGB", size) as im:
            im.thumbnail((side, side))
            assert thumbnail_size(size, side) == im.size


def test_pixel_spec_validates_and_names_its_policy():
    with pytest.raises(ValueError, match="exactly one of size or shortest_edge"):
        PixelSpec()
    with pytest.raises(ValueError, match=">= 1"):
        PixelSpec(size=(0, 32))
    assert SPEC.shape == (32, 32) and CROP_SPEC.shape == (32, 32) and PixelSpec(shortest_edge=32).shape is None
    assert SPEC.key != CROP_SPEC.key != PixelSpec(size=(32, 32), resample=2).key
    assert CROP_SPEC.target((400, 300)) == (48, 36)


@pytest.mark.parametrize("crop", [False, True])
def test_worker_pixels_are_the_encoders_own_preprocessing(photos, tmp_path, crop):
    """decode_pixels + batch_from_pixels (what decode workers and the cache produce) == preprocess(load_image)."""
    encoder = create_encoder("hf_vision", model=save_tiny_vit(tmp_path / "vit", seed=0, crop=crop), pooling="cls")
    spec = fixed_pixel_spec(encoder)
    assert (spec.size, spec.shortest_edge, spec.crop) == ((None, 36, (32, 32)) if crop else ((32, 32), None, None))
    side = decode_side(encoder)
    paths = list(photos.values())
    expected = encoder.preprocess([load_image(p, max_side=side) for p in paths])["pixel_uint8"]
    pixels = torch.from_numpy(np.stack([decode_pixels(p, side, spec) for p in paths]))
    assert torch.equal(encoder.batch_from_pixels(pixels)["pixel_uint8"], expected)


def test_tower_pixels_are_the_towers_own_preprocessing(photos):
    encoder = create_encoder("small_cnn", image_size=32)
    spec = fixed_pixel_spec(encoder)
    paths = list(photos.values())
    expected = encoder.preprocess([load_image(p, max_side=256) for p in paths])[0]
    pixels = torch.from_numpy(np.stack([decode_pixels(p, 256, spec) for p in paths]))
    assert torch.equal(encoder.batch_from_pixels(pixels)[0], expected)


def test_encoders_without_a_fixed_shape_use_their_own_preprocessing():
    assert fixed_pixel_spec(create_encoder("color_histogram")) is None
    assert fixed_pixel_spec(create_encoder("keyword_text")) is None


def test_cpu_decoding_uses_every_core(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(6)), raising=False)
    assert decode_workers() == 6


def test_gpu_decoding_needs_cuda_and_torchvision():
    assert not gpu_decode_available(torch.device("cpu"))
    if not torch.cuda.is_available():
        assert not gpu_decode_available(torch.device("cuda"))


def test_workers_send_only_small_jpegs_to_the_gpu(photos, monkeypatch):
    assert isinstance(read_for_gpu(photos["baseline"], 256, SPEC), RawImage)
    png = read_for_gpu(photos["alpha"], 256, SPEC)
    assert isinstance(png, np.ndarray) and png.shape == (32, 32, 3)
    monkeypatch.setattr("workbench.run.decode.GPU_MAX_PIXELS", 500_000)  # the 1-MP photo is now "huge"
    assert isinstance(read_for_gpu(photos["baseline"], 256, SPEC), np.ndarray)


def test_gpu_decoder_decodes_a_batch_in_one_call_and_falls_back_per_image(photos):
    decode = CountingDecode(reject={Path(photos["progressive"]).read_bytes()})
    decoder = GpuJpegDecoder(SPEC, 256, torch.device("cpu"), decode_fn=decode)
    names = ["baseline", "progressive", "alpha", "grey", "portrait"]
    items = [read_for_gpu(photos[n], 256, SPEC) for n in names]
    result = decoder(items)
    # one batched call for the four JPEGs; it fails on the rejected one, so each is retried alone
    assert decode.calls == [4, 1, 1, 1, 1]
    assert (result.n_gpu, result.n_fallback) == (3, 1)
    assert result.pixels.shape == (5, 32, 32, 3) and result.pixels.dtype == torch.uint8
    cpu = np.stack([decode_pixels(photos[n], 256, SPEC) for n in names])
    # the CPU-decoded ones are the CPU's pixels exactly; the device-decoded ones close to them
    for i in (1, 2):
        assert np.array_equal(result.pixels[i].numpy(), cpu[i])
    diff = np.abs(result.pixels.numpy().astype(int) - cpu.astype(int))
    assert diff.mean() < 3.0, diff.mean()

    clean = CountingDecode()
    GpuJpegDecoder(SPEC, 256, torch.device("cpu"), decode_fn=clean)(items)
    assert clean.calls == [4]


def test_gpu_decoder_crops_like_the_cpu(photos):
    decoder = GpuJpegDecoder(CROP_SPEC, 256, torch.device("cpu"), decode_fn=pil_decode)
    names = ["baseline", "portrait", "small"]
    result = decoder([read_for_gpu(photos[n], 256, CROP_SPEC) for n in names])
    cpu = np.stack([decode_pixels(photos[n], 256, CROP_SPEC) for n in names])
    assert result.pixels.shape == cpu.shape
    assert np.abs(result.pixels.numpy().astype(int) - cpu.astype(int)).mean() < 3.0


def test_gpu_decoder_refuses_a_variable_output_shape():
    with pytest.raises(ValueError, match="fixed output shape"):
        GpuJpegDecoder(PixelSpec(shortest_edge=32), 256, torch.device("cpu"), decode_fn=pil_decode)


def test_a_file_neither_path_can_read_is_an_image_error(tmp_path, photos):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(Path(photos["baseline"]).read_bytes()[:600])
    decoder = GpuJpegDecoder(SPEC, 256, torch.device("cpu"), decode_fn=pil_decode)
    with pytest.raises(ImageError):
        decoder([read_for_gpu(str(broken), 256, SPEC)])


def test_gpu_and_cpu_paths_give_the_same_embeddings(photos, tmp_path):
    """The issue's check, with the CPU stand-in for nvjpeg (a full-resolution decode, as on the device): per-image
    cosine >= 0.99 between the embeddings of the same random ViT fed by either path."""
    encoder = create_encoder("hf_vision", model=save_tiny_vit(tmp_path / "vit", seed=1), pooling="mean")
    spec, side = fixed_pixel_spec(encoder), decode_side(encoder)
    names = [n for n in photos if n != "cmyk"]
    cpu = torch.from_numpy(np.stack([decode_pixels(photos[n], side, spec) for n in names]))
    gpu = GpuJpegDecoder(spec, side, torch.device("cpu"), decode_fn=pil_decode)(
        [read_for_gpu(photos[n], side, spec) for n in names]).pixels
    device = torch.device("cpu")
    a = encoder.forward(encoder.batch_from_pixels(cpu), device)
    b = encoder.forward(encoder.batch_from_pixels(gpu), device)
    cosine = torch.nn.functional.cosine_similarity(a, b, dim=1)
    assert cosine.min().item() >= 0.99, cosine
