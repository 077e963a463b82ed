"""The encoding pipeline: who does which work on which thread, texts in length order yet returned in input order,
the GPU decode path's batching (with a CPU stand-in decoder), batch-size probing and the GPU forward set-up."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from photos import CountingDecode, make_photos, save_tiny_vit

from workbench.data.images import load_image
from workbench.models import base, create_encoder
from workbench.run import device as device_module
from workbench.run.device import ForwardOptions, inference_module, inference_modules, probe_batch_size
from workbench.run.encoding import (
    SORT_WINDOW_BATCHES,
    decode_side,
    encode_with_cache,
    length_sorted,
    tile_batch,
)
from workbench.run.pixel_cache import PixelCache

CPU = torch.device("cpu")


class RecordingText(base.Encoder):
    """Vectors (length, first letter code, 1); records each batch it tokenises and the thread it ran on."""

    name = "test_recording_text"
    modality = "text"
    description = "test"
    dim = 3

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []
        self.threads: set[str] = set()

    def preprocess(self, items):
        self.batches.append(list(items))
        self.threads.add(threading.current_thread().name)
        return list(items)

    def forward(self, batch, device):
        return torch.tensor([[len(t), ord(t[0]), 1.0] for t in batch], dtype=torch.float32)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, str]:
    return make_photos(tmp_path_factory.mktemp("photos"))


def test_texts_are_tokenised_in_length_order_by_one_producer_and_returned_in_input_order(db):
    rng = np.random.default_rng(0)
    texts = ["abcdefghij"[: 1 + int(n)] + f" {i}" for i, n in enumerate(rng.integers(0, 10, 300))]
    encoder = RecordingText()
    vectors, _, stats = encode_with_cache(encoder, texts, [f"t{i}" for i in range(300)], db=db, cache_key="rec",
                                          device=CPU, batch_size=8)
    assert stats.decoder == "tokenizer" and stats.n_encoded == 300
    assert vectors[:, 0].tolist() == [float(len(t)) for t in texts]
    assert encoder.threads == {"inputs_0"}  # one producer thread; the model's thread never tokenises
    lengths = [[len(t) for t in batch] for batch in encoder.batches]
    assert all(b == sorted(b) for b in lengths)
    padded = sum(len(b) * max(b) for b in lengths)
    unsorted = sum(len(texts[i : i + 8]) * max(len(t) for t in texts[i : i + 8]) for i in range(0, 300, 8))
    assert padded < unsorted


def test_length_sorting_moves_items_only_within_their_window():
    todo = [(f"h{i}", "x" * (100 - i)) for i in range(100)]
    ordered = length_sorted(todo, batch_size=2)
    window = 2 * SORT_WINDOW_BATCHES
    assert sorted(ordered) == sorted(todo)
    for start in range(0, 100, window):
        part = ordered[start : start + window]
        assert set(part) == set(todo[start : start + window])
        assert [len(s) for _, s in part] == sorted(len(s) for _, s in part)


def test_images_are_decoded_on_worker_threads_and_match_the_encoders_own_path(photos, tmp_path, monkeypatch):
    threads: list[str] = []
    from workbench.run import encoding

    original = encoding.decode_pixels

    def recording(path, max_side, spec):
        threads.append(threading.current_thread().name)
        return original(path, max_side, spec)

    monkeypatch.setattr(encoding, "decode_pixels", recording)
    encoder = create_encoder("hf_vision", model=save_tiny_vit(tmp_path / "vit", seed=0), pooling="cls")
    paths = list(photos.values())
    vectors, _, stats = encode_with_cache(encoder, paths, [f"i{i}" for i in range(len(paths))],
                                          db=tmp_path / "wb.duckdb", cache_key="vit", device=CPU, batch_size=3,
                                          workers=2)
    assert stats.decoder == "cpu-pixels" and stats.n_decoded == len(paths) and stats.decode_s > 0
    assert len(threads) == len(paths) and all(name.startswith("decode_") for name in threads)
    # bit for bit what the encoder computes from its own preprocessing, batch by batch
    images = [load_image(p, max_side=decode_side(encoder)) for p in paths]
    expected = encoder.encode(images, batch_size=3)
    assert np.array_equal(vectors, expected)


def test_the_gpu_decode_path_batches_and_falls_back(photos, tmp_path):
    encoder = create_encoder("hf_vision", model=save_tiny_vit(tmp_path / "vit", seed=0), pooling="mean")
    paths = list(photos.values())  # 7 JPEGs (one CMYK) and a PNG
    decode = CountingDecode()
    cache = PixelCache(tmp_path / "pixel_cache")
    hashes = [f"g{i}" for i in range(len(paths))]
    gpu, _, stats = encode_with_cache(encoder, paths, hashes, db=tmp_path / "a.duckdb", cache_key="gpu",
                                      device=CPU, batch_size=4, gpu_decode_fn=decode, pixel_cache=cache)
    assert stats.decoder == "gpu-pixels"
    assert sum(decode.calls) == stats.n_gpu_decoded == 7 and stats.n_gpu_fallback == 0
    assert max(decode.calls) > 1  # whole batches per call
    assert stats.pixel_cache_writes == len(paths)
    cpu, _, _ = encode_with_cache(encoder, paths, hashes, db=tmp_path / "b.duckdb", cache_key="cpu", device=CPU,
                                  batch_size=4)
    cosine = (gpu * cpu).sum(1) / np.linalg.norm(gpu, axis=1) / np.linalg.norm(cpu, axis=1)
    assert cosine.min() >= 0.99, cosine


def test_tile_batch_repeats_every_kind_of_batch():
    assert tile_batch({"ids": torch.arange(3).view(3, 1)}, 7)["ids"].view(-1).tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert tile_batch((torch.zeros(2, 4),), 5)[0].shape == (5, 4)
    assert tile_batch(np.arange(2), 3).tolist() == [0, 1, 0]
    assert tile_batch(["a", "b"], 3) == ["a", "b", "a"]
    with pytest.raises(TypeError, match="cannot tile"):
        tile_batch(object(), 4)


def test_batch_size_probing_doubles_until_out_of_memory():
    tried: list[int] = []

    def forward(n: int) -> None:
        tried.append(n)
        if n > 48:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    assert probe_batch_size(forward, 8, limit=1024) == 32
    assert tried == [16, 32, 64]
    assert probe_batch_size(forward, 8, limit=20) == 16
    with pytest.raises(ValueError, match="start and limit"):
        probe_batch_size(forward, 0, limit=8)

    def broken(n: int) -> None:
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        probe_batch_size(broken, 8, limit=64)


class TwoModules(base.Encoder):
    name = "test_two_modules"
    modality = "image"
    description = "test"
    dim = 2

    def __init__(self) -> None:
        super().__init__()
        self._module = torch.nn.Linear(2, 2)
        self._loaded = {"model": torch.nn.Linear(2, 2), "processor": "not a module"}

    def preprocess(self, items):
        return items

    def forward(self, batch, device):
        return self._module(batch)


def test_inference_copies_replace_the_modules_on_cuda_only_and_are_restored(monkeypatch):
    encoder = TwoModules()
    originals = (encoder._module, encoder._loaded["model"])
    with inference_modules(encoder, CPU, ForwardOptions()):
        assert (encoder._module, encoder._loaded["model"]) == originals  # nothing changes on the CPU
    monkeypatch.setattr(device_module, "inference_module", lambda module, device, options: torch.nn.Identity())
    with inference_modules(encoder, torch.device("cuda"), ForwardOptions()):
        assert isinstance(encoder._module, torch.nn.Identity)
        assert isinstance(encoder._loaded["model"], torch.nn.Identity)
        assert encoder._loaded["processor"] == "not a module"
    assert (encoder._module, encoder._loaded["model"]) == originals


def test_inference_module_is_a_channels_last_copy_for_cnns_only():
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3))
    fast = inference_module(cnn, CPU, ForwardOptions())
    assert fast is not cnn and fast[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert cnn[0].weight.is_contiguous() and fast[0].weight.dtype == torch.float32  # bf16 only on CUDA
    patchify = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 4, stride=4), torch.nn.Flatten())
    assert inference_module(patchify, CPU, ForwardOptions())[0].weight.is_contiguous()
