from __future__ import annotations

import shutil

import numpy as np
import pytest

from workbench import store
from workbench.config import config_from_dict
from workbench.evaluation.aggregate import load_metrics
from workbench.run import runner

CONFIG = {
    "name": "kw",
    "image_encoder": {"type": "color_histogram"},
    "text_encoder": {"type": "tfidf", "dim": 16},
    "fusion": {"type": "cca", "n_components": 4},
}


@pytest.fixture(scope="module")
def tiny_catalog(tmp_path_factory):
    from workbench.data.evalsets import create_catalog_eval_set

    path = tmp_path_factory.mktemp("scale") / "catalog.duckdb"
    create_catalog_eval_set("tiny", db=path, n_products=24, seed=1)
    return path


def _cache(db) -> dict[tuple[str, str], np.ndarray]:
    with store.connect(db) as con:
        rows = con.execute("SELECT encoder_fp, content_hash, vector FROM embedding_cache").fetchall()
    return {(fp, h): np.frombuffer(v, dtype=np.float32) for fp, h, v in rows}


@pytest.mark.slow
def test_ray_backend_matches_local_backend(ray_session, tiny_catalog, tmp_path):
    local_db, ray_db = tmp_path / "local.duckdb", tmp_path / "ray.duckdb"
    shutil.copy(tiny_catalog, local_db)
    shutil.copy(tiny_catalog, ray_db)
    config = config_from_dict(CONFIG)

    local_id = runner.run(config, "tiny", db=local_db, device="cpu")
    ray_id = runner.run(config, "tiny", db=ray_db, device="cpu", backend="ray")
    local_run, ray_run = runner.get_run(local_id, db=local_db), runner.get_run(ray_id, db=ray_db)
    assert local_run["status"] == "done", local_run["error"]
    assert ray_run["status"] == "done", ray_run["error"]
    assert ray_run["timings"]["backend"] == "ray" and local_run["timings"]["backend"] == "local"
    assert ray_run["timings"]["text_encoder"]["n_encoded"] > 0

    local_cache, ray_cache = _cache(local_db), _cache(ray_db)
    assert local_cache.keys() == ray_cache.keys() and local_cache
    for key, vector in local_cache.items():
        np.testing.assert_allclose(ray_cache[key], vector, rtol=0, atol=1e-6)

    cols = ["name", "slice_kind", "slice_value"]
    m_local = load_metrics(local_id, db=local_db).sort_values(cols).reset_index(drop=True)
    m_ray = load_metrics(ray_id, db=ray_db).sort_values(cols).reset_index(drop=True)
    assert list(m_local["name"]) == list(m_ray["name"]) and len(m_local) > 10
    np.testing.assert_allclose(m_ray["value"].to_numpy(float), m_local["value"].to_numpy(float), atol=1e-6,
                               equal_nan=True)
    assert not (ray_db.parent / "ray_work" / f"{ray_id}-image").exists()  # shards removed once loaded

    again = runner.run(config, "tiny", db=ray_db, device="cpu", backend="ray")  # all cached: Ray is not asked
    timings = runner.get_run(again, db=ray_db)["timings"]
    assert timings["image_encoder"]["n_encoded"] == 0 and timings["text_encoder"]["n_encoded"] == 0


def test_unknown_backend_fails_the_run_with_the_choices(tiny_catalog, tmp_path):
    db = tmp_path / "wb.duckdb"
    shutil.copy(tiny_catalog, db)
    run_id = runner.run(config_from_dict(CONFIG), "tiny", db=db, device="cpu", backend="spark")
    record = runner.get_run(run_id, db=db)
    assert record["status"] == "failed" and "Available: ['local', 'ray']" in record["error"]


def test_missing_ray_says_how_to_install(monkeypatch):
    import builtins

    from workbench.scale import ray_backend

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ImportError, match="requirements-scale.txt"):
        ray_backend.import_ray()


def test_cli_run_passes_backend_and_address(monkeypatch):
    from workbench import cli

    seen: dict = {}
    monkeypatch.setattr(runner, "create_run", lambda *a, **k: "r1")
    monkeypatch.setattr(runner, "execute_run", lambda run_id, **kw: seen.update(kw) or "done")
    monkeypatch.setattr(runner, "get_run", lambda run_id, db=None: {"status": "done", "error": None})
    args = cli.build_parser().parse_args(["run", "--eval-set", "tiny", "--config", "kw",
                                          "--backend", "ray", "--ray-address", "ray://head:10001"])
    assert args.backend == "ray" and args.ray_address == "ray://head:10001"
    monkeypatch.setattr("workbench.config.load_config", lambda name, db=None: config_from_dict(CONFIG))
    assert args.handler(args) == 0
    assert seen["backend"] == "ray" and seen["ray_address"] == "ray://head:10001"
    default = cli.build_parser().parse_args(["run", "--eval-set", "tiny", "--config", "x"])
    assert default.backend == "local" and default.ray_address is None


@pytest.mark.slow
def test_cancel_keeps_finished_shards_and_a_rerun_resumes(ray_session, tiny_catalog, tmp_path):
    import threading

    import torch

    from workbench.models import create_encoder
    from workbench.run.encoding import Cancelled, encode_with_cache
    from workbench.scale.ray_backend import encode_with_ray

    db = tmp_path / "wb.duckdb"
    shutil.copy(tiny_catalog, db)
    with store.connect(db) as con:
        texts = [r[0] for r in con.execute("SELECT DISTINCT text FROM texts ORDER BY text").fetchall()]
    hashes = [f"h{i}" for i in range(len(texts))]
    encoder = create_encoder("keyword_text")
    cancel = threading.Event()

    def stop_after_first(done: int, total: int) -> None:
        if done:
            cancel.set()

    common = {"db": db, "cache_key": "kw", "device_type": "cpu", "batch_size": 8, "concurrency": 1,
              "load_every": 1}
    with pytest.raises(Cancelled):
        encode_with_ray(encoder, texts, hashes, progress=stop_after_first, cancel=cancel,
                        work_dir=tmp_path / "shards", **common)
    with store.connect(db) as con:
        kept = con.execute("SELECT count(*) FROM embedding_cache WHERE encoder_fp = 'kw'").fetchone()[0]
    assert 0 < kept < len(texts)
    assert (tmp_path / "shards" / "encoded").exists()  # left for inspection after an interruption

    vectors, _, stats = encode_with_ray(encoder, texts, hashes, **common)
    assert stats.n_cached == kept and stats.n_encoded == len(texts) - kept
    local, _, _ = encode_with_cache(encoder, texts, hashes, db=tmp_path / "local.duckdb", cache_key="kw",
                                    device=torch.device("cpu"))
    np.testing.assert_allclose(vectors, local, atol=1e-6)


class _FakeRay:
    def __init__(self, resources: dict | None):
        self.resources = resources

    def cluster_resources(self) -> dict:
        if self.resources is None:
            raise ConnectionError("cannot list resources")
        return self.resources


def test_actor_plan_follows_cluster_resources(monkeypatch):
    import torch

    from workbench.scale.ray_backend import plan_actors

    monkeypatch.delenv("WORKBENCH_RAY_CONCURRENCY", raising=False)
    gpu = plan_actors(_FakeRay({"CPU": 32, "GPU": 4}))
    assert gpu["use_gpu"] and gpu["num_gpus"] == 1 and gpu["concurrency"] == 4
    assert not plan_actors(_FakeRay({"CPU": 32, "GPU": 4}), device_type="cpu")["use_gpu"]
    cpu = plan_actors(_FakeRay({"CPU": 8}))
    assert not cpu["use_gpu"] and cpu["num_gpus"] == 0 and cpu["concurrency"] == 7
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert not plan_actors(_FakeRay({"CPU": 8}))["use_gpu"]  # a driver GPU does not make a CPU cluster a GPU one
    monkeypatch.setenv("WORKBENCH_RAY_CONCURRENCY", "3")
    assert plan_actors(_FakeRay({"CPU": 8}))["concurrency"] == 3
    with pytest.raises(ValueError, match="concurrency=0"):
        plan_actors(_FakeRay({"CPU": 8}), concurrency=0)
