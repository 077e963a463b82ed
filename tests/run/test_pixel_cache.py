"""The decoded-pixel cache: keys, bounded LRU eviction, safe concurrent reads, and decode-once-encode-many in runs."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
import torch
from photos import make_photos, save_tiny_vit

from workbench.config import config_from_dict
from workbench.data.images import PixelSpec
from workbench.models import create_encoder
from workbench.run import decode, runner
from workbench.run.encoding import encode_with_cache
from workbench.run.pixel_cache import DEFAULT_MAX_BYTES, ENV_MAX_GB, PixelCache, max_bytes_from_env, policy_key

CPU = torch.device("cpu")


def pixels(seed: int, side: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)


def test_entries_round_trip_memory_mapped_and_keyed_by_policy(tmp_path):
    cache = PixelCache(tmp_path / "pc")
    a, b = policy_key(PixelSpec(size=(32, 32)), 256), policy_key(PixelSpec(size=(32, 32)), 384)
    assert a != b != policy_key(PixelSpec(size=(32, 32), resample=2), 256)
    assert a == policy_key(PixelSpec(size=(32, 32)), 256)
    cache.put(a, "h1", pixels(1))
    got = cache.get(a, "h1")
    assert isinstance(got, np.memmap) and np.array_equal(got, pixels(1))
    assert cache.get(b, "h1") is None and cache.get(a, "h2") is None
    assert cache.path(a, "h1").parent.parent.parent == tmp_path / "pc"
    assert cache.path(a, "../../etc/passwd").is_relative_to(tmp_path / "pc" / a)  # odd hashes are hashed again


def test_wrong_input_and_bounds_are_refused(tmp_path):
    cache = PixelCache(tmp_path)
    with pytest.raises(ValueError, match="uint8"):
        cache.put("p", "h", np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="max_bytes must be > 0"):
        PixelCache(tmp_path, max_bytes=0)


def test_least_recently_used_entries_are_evicted_first(tmp_path):
    cache = PixelCache(tmp_path, max_bytes=10**9)
    for i, key in enumerate(("a", "b", "c")):
        cache.put("p", key, pixels(i))
        os.utime(cache.path("p", key), (1_000 + i, 1_000 + i))  # a oldest, c newest
    size = cache.path("p", "a").stat().st_size
    assert cache.get("p", "a") is not None  # a hit makes "a" the most recently used
    cache.max_bytes = int(2.5 * size)  # room for two; evicting goes down to 90 % of that
    assert cache.evict() == 1
    assert cache.get("p", "b") is None
    assert cache.get("p", "a") is not None and cache.get("p", "c") is not None
    assert cache.size_bytes() == 2 * size <= cache.max_bytes


def test_writes_past_the_bound_evict(tmp_path):
    probe = PixelCache(tmp_path / "probe")
    probe.put("p", "x", pixels(0))
    one = probe.path("p", "x").stat().st_size
    cache = PixelCache(tmp_path / "pc", max_bytes=3 * one)
    for i in range(10):
        cache.put("p", f"h{i}", pixels(i))
    assert cache.size_bytes() <= cache.max_bytes
    assert cache.get("p", "h9") is not None  # the newest survive


def test_a_failed_write_costs_the_entry_not_the_encoding(tmp_path):
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where the cache folder should be")
    cache = PixelCache(blocker)
    assert cache.put("p", "h", pixels(0)) is False
    assert cache.get("p", "h") is None


def test_a_damaged_entry_is_a_miss_and_goes(tmp_path):
    cache = PixelCache(tmp_path)
    cache.put("p", "h", pixels(0))
    path = cache.path("p", "h")
    path.write_bytes(path.read_bytes()[:40])
    assert cache.get("p", "h") is None
    assert not path.exists()


def test_concurrent_readers_see_whole_entries_only(tmp_path):
    cache = PixelCache(tmp_path)
    expected = pixels(7, side=128)
    stop = threading.Event()
    seen: list[bool] = []

    def read() -> None:
        while not stop.is_set():
            got = cache.get("p", "h")
            if got is not None:
                seen.append(bool(np.array_equal(got, expected)))

    readers = [threading.Thread(target=read) for _ in range(3)]
    for thread in readers:
        thread.start()
    for _ in range(40):
        cache.put("p", "h", expected)
    stop.set()
    for thread in readers:
        thread.join()
    assert seen and all(seen)
    assert not [p for p in (tmp_path / "p").rglob(".part-*")]


def test_the_bound_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_MAX_GB, raising=False)
    assert max_bytes_from_env() == DEFAULT_MAX_BYTES == 10 * 2**30
    monkeypatch.setenv(ENV_MAX_GB, "0.5")
    assert PixelCache.for_db(tmp_path / "wb.duckdb").max_bytes == 2**29
    assert PixelCache.for_db(tmp_path / "wb.duckdb").root == tmp_path / "pixel_cache"
    monkeypatch.setenv(ENV_MAX_GB, "0")
    assert PixelCache.for_db(tmp_path / "wb.duckdb") is None
    monkeypatch.setenv(ENV_MAX_GB, "lots")
    with pytest.raises(ValueError, match="not a number of GiB"):
        max_bytes_from_env()


@pytest.fixture
def decode_calls(monkeypatch) -> list[str]:
    """Every image the encoding pipeline decodes on the CPU."""
    calls: list[str] = []
    original = decode.decode_pixels

    def counting(path, max_side, spec):
        calls.append(path)
        return original(path, max_side, spec)

    monkeypatch.setattr("workbench.run.encoding.decode_pixels", counting)
    return calls


def test_a_second_encoder_of_the_same_input_decodes_nothing(tmp_path, decode_calls):
    paths = list(make_photos(tmp_path / "photos").values())
    hashes = [f"img{i}" for i in range(len(paths))]
    cache = PixelCache(tmp_path / "pixel_cache")
    first = create_encoder("hf_vision", model=save_tiny_vit(tmp_path / "a", seed=0), pooling="cls")
    second = create_encoder("hf_vision", model=save_tiny_vit(tmp_path / "b", seed=1), pooling="mean")
    db = tmp_path / "wb.duckdb"
    _, _, stats1 = encode_with_cache(first, paths, hashes, db=db, cache_key="first", device=CPU, batch_size=3,
                                     pixel_cache=cache)
    assert len(decode_calls) == len(paths) and stats1.n_decoded == len(paths)
    assert stats1.pixel_cache_writes == len(paths) and stats1.pixel_cache_hits == 0
    decode_calls.clear()
    vectors, _, stats2 = encode_with_cache(second, paths, hashes, db=db, cache_key="second", device=CPU,
                                           batch_size=3, pixel_cache=cache)
    assert decode_calls == []
    assert stats2.pixel_cache_hits == len(paths) and stats2.n_decoded == 0 and stats2.decode_s >= 0
    # the cached pixels are the decoded ones: same vectors as without any cache
    plain, _, _ = encode_with_cache(second, paths, hashes, db=tmp_path / "plain.duckdb", cache_key="second",
                                    device=CPU, batch_size=3)
    assert np.array_equal(vectors, plain)


def test_runs_record_decode_time_and_cache_hits(catalog_db, tmp_path, monkeypatch):
    path, name = catalog_db
    db = tmp_path / "runs.duckdb"
    db.write_bytes(path.read_bytes())
    monkeypatch.delenv(ENV_MAX_GB, raising=False)

    def config(image_encoder: dict, run_name: str) -> dict:
        return {"name": run_name, "image_encoder": image_encoder, "text_encoder": {"type": "keyword_text"},
                "fusion": {"type": "cca", "n_components": 4}}

    cnn = {"type": "small_cnn", "width": 8, "dim": 16, "image_size": 32, "epochs": 1}
    vgg = {"type": "vgg_cnn", "width": 8, "dim": 16, "image_size": 32, "epochs": 1}
    first = runner.run(config_from_dict(config(cnn, "cnn")), name, db=db, device="cpu")
    second = runner.run(config_from_dict(config(vgg, "vgg")), name, db=db, device="cpu")
    a = runner.get_run(first, db=db)
    b = runner.get_run(second, db=db)
    assert a["status"] == b["status"] == "done", (a["error"], b["error"])
    ta, tb = a["timings"]["image_encoder"], b["timings"]["image_encoder"]
    assert ta["decoder"] == "cpu-pixels" and ta["n_decoded"] == ta["n_encoded"] > 0 and ta["decode_s"] > 0
    assert ta["pixel_cache_writes"] == ta["n_encoded"] and ta["pixel_cache_hits"] == 0
    assert tb["n_decoded"] == 0 and tb["pixel_cache_hits"] == tb["n_encoded"] == ta["n_encoded"]
    assert a["timings"]["text_encoder"]["decoder"] == "tokenizer"
    assert (tmp_path / "pixel_cache").is_dir()
