from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from workbench import store
from workbench.config import config_from_dict
from workbench.evaluation.aggregate import load_metrics
from workbench.models import base
from workbench.models.encoders import KeywordImageEncoder, KeywordTextEncoder
from workbench.run import runner
from workbench.run.encoding import encode_with_cache

KEYWORD = {
    "name": "keyword-cosine",
    "image_encoder": {"type": "keyword_image", "min_share": 0.1},
    "text_encoder": {"type": "keyword_text"},
    "fusion": {"type": "cosine"},
}
FITTED = {
    "name": "tfidf-hist-cca",
    "image_encoder": {"type": "color_histogram"},
    "text_encoder": {"type": "tfidf", "dim": 32},
    "fusion": {"type": "cca", "n_components": 8},
    "seed": 1,
}


@pytest.fixture
def run_db(catalog_db, tmp_path):
    """A private copy of the catalogue database (runs write to it)."""
    path, name = catalog_db
    copy = tmp_path / "runs.duckdb"
    copy.write_bytes(path.read_bytes())
    return copy, name


def _scores(db, run_id: str) -> dict[str, float]:
    with store.connect(db) as con:
        return dict(con.execute("SELECT pair_id, score FROM scores WHERE run_id = ?", [run_id]).fetchall())


def test_keyword_run_scores_are_hand_checkable(run_db):
    db, name = run_db
    run_id = runner.run(config_from_dict(KEYWORD), name, db=db, device="cpu")
    record = runner.get_run(run_id, db=db)
    assert record["status"] == "done", record["error"]
    with store.connect(db) as con:
        row = con.execute(
            "SELECT s.score, i.path, t.text FROM scores s JOIN pairs p ON p.pair_id = s.pair_id AND p.eval_set = ? "
            "JOIN images i ON i.image_id = p.image_id AND i.eval_set = p.eval_set "
            "JOIN texts t ON t.text_id = p.text_id AND t.eval_set = p.eval_set WHERE s.run_id = ? LIMIT 1",
            [name, run_id],
        ).fetchone()
    from workbench.data.images import load_image

    v = KeywordImageEncoder().encode([load_image(row[1])])[0]
    t = KeywordTextEncoder().encode([row[2]])[0]
    expected = float(v @ t / max(np.linalg.norm(v) * np.linalg.norm(t), 1e-12))
    assert row[0] == pytest.approx(expected, abs=1e-5)
    names = set(load_metrics(run_id, db=db)["name"])
    for metric in ("pair/accuracy", "pair/f1", "pair/roc_auc", "t2i/success@5", "t2i/recall@5", "i2t/mrr",
                   "t2i/ndcg@10", "zeroshot/acc@1"):
        assert metric in names
    slices = load_metrics(run_id, db=db, slices=True)
    assert {"category", "pair_kind", "language", "attr.color", "gallery_random", "gallery_same_category"} <= set(
        slices["slice_kind"])
    assert record["environment"]["torch"] == torch.__version__
    assert record["eval_set_hash"]


def test_cache_hits_skip_encoder_forward_passes(run_db, monkeypatch):
    db, name = run_db
    calls = {"image": 0, "text": 0}
    for cls, key in ((KeywordImageEncoder, "image"), (KeywordTextEncoder, "text")):
        original = cls.forward

        def counting(self, batch, device, _original=original, _key=key):
            calls[_key] += 1
            return _original(self, batch, device)

        monkeypatch.setattr(cls, "forward", counting)
    first = runner.run(config_from_dict(KEYWORD), name, db=db, device="cpu")
    assert calls["image"] > 0 and calls["text"] > 0
    calls.update(image=0, text=0)
    other_head = {**KEYWORD, "name": "keyword-contrastive", "fusion": {"type": "contrastive", "dim": 8, "epochs": 3}}
    second = runner.run(config_from_dict(other_head), name, db=db, device="cpu")
    assert runner.get_run(second, db=db)["status"] == "done"
    # no item is re-encoded; the only text forward passes are the two zero-shot prompt batches (en, zh)
    assert calls == {"image": 0, "text": 2}
    timings = runner.get_run(second, db=db)["timings"]
    assert timings["image_encoder"]["n_encoded"] == 0 and timings["image_encoder"]["n_cached"] > 0
    assert runner.get_run(first, db=db)["timings"]["image_encoder"]["n_encoded"] > 0


def test_same_config_and_seed_give_same_numbers(run_db):
    db, name = run_db
    a = runner.run(config_from_dict(FITTED), name, db=db, device="cpu")
    b = runner.run(config_from_dict(FITTED), name, db=db, device="cpu")
    assert runner.get_run(a, db=db)["status"] == "done", runner.get_run(a, db=db)["error"]
    assert _scores(db, a) == pytest.approx(_scores(db, b), abs=1e-6)
    ma = load_metrics(a, db=db).set_index("name")["value"]
    mb = load_metrics(b, db=db).set_index("name")["value"]
    assert ma.to_dict() == pytest.approx(mb.to_dict(), nan_ok=True)


class _OomOver4(base.Encoder):
    """Raises a CUDA-style out-of-memory error for batches larger than 4."""

    name = "test_oom"
    modality = "text"
    description = "test"
    dim = 3

    def preprocess(self, items):
        return list(items)

    def forward(self, batch, device):
        if len(batch) > 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return torch.tensor([[len(t), t.count("a"), 1.0] for t in batch], dtype=torch.float32)


def test_out_of_memory_halves_the_batch_size(db):
    texts = [f"text {'a' * i}" for i in range(23)]
    hashes = [f"h{i}" for i in range(23)]
    vectors, _, stats = encode_with_cache(_OomOver4(), texts, hashes, db=db, cache_key="oom",
                                          device=torch.device("cpu"), batch_size=16)
    assert stats.batch_size == 4
    assert vectors[:, 1].tolist() == [float(i) for i in range(23)]


def test_cancelled_encoding_resumes_from_cache_without_duplicates(db):
    texts = [f"item {i}" for i in range(40)]
    hashes = [f"c{i}" for i in range(40)]
    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        if done >= 8:
            cancel.set()

    from workbench.run.encoding import Cancelled

    with pytest.raises(Cancelled):
        encode_with_cache(_OomOver4(), texts, hashes, db=db, cache_key="resume", device=torch.device("cpu"),
                          batch_size=4, write_every=4, progress=progress, cancel=cancel)
    with store.connect(db) as con:
        partial = con.execute("SELECT count(*) FROM embedding_cache WHERE encoder_fp = 'resume'").fetchone()[0]
    assert 0 < partial < 40
    vectors, _, stats = encode_with_cache(_OomOver4(), texts, hashes, db=db, cache_key="resume",
                                          device=torch.device("cpu"), batch_size=4)
    assert stats.n_cached == partial and stats.n_encoded == 40 - partial
    with store.connect(db) as con:
        assert con.execute("SELECT count(*) FROM embedding_cache WHERE encoder_fp = 'resume'").fetchone()[0] == 40
    assert len(vectors) == 40


def test_cancel_request_stops_a_run(run_db):
    db, name = run_db
    run_id = runner.create_run(config_from_dict(KEYWORD), name, db=db, device="cpu")
    runner.request_cancel(run_id, db=db)
    assert runner.execute_run(run_id, db=db, device="cpu") == "cancelled"
    assert runner.get_run(run_id, db=db)["status"] == "cancelled"


def test_failed_run_is_recorded_with_a_readable_error(run_db):
    db, name = run_db
    bad = {**KEYWORD, "image_encoder": {"type": "no_such_encoder"}}
    run_id = runner.run(config_from_dict(bad), name, db=db, device="cpu")
    record = runner.get_run(run_id, db=db)
    assert record["status"] == "failed"
    assert "no_such_encoder" in record["error"] and "Available" in record["error"]
    assert "Traceback" in record["log"]


def test_dead_process_shows_as_interrupted(run_db):
    db, name = run_db
    run_id = runner.create_run(config_from_dict(KEYWORD), name, db=db)
    with store.connect(db) as con:
        con.execute("UPDATE runs SET status = 'running', pid = 999999, started_at = now() WHERE run_id = ?", [run_id])
    runs = runner.list_runs(db=db).set_index("run_id")
    assert runs.at[run_id, "status"] == "interrupted"


def test_background_run_finishes_in_a_thread(run_db):
    db, name = run_db
    run_id = runner.start_background_run(config_from_dict(KEYWORD), name, db=db, device="cpu")
    for worker in threading.enumerate():  # the run's thread, unless it has already finished
        if worker.name == f"run-{run_id}":
            worker.join()
    assert runner.get_run(run_id, db=db)["status"] == "done"


def test_cuda_request_without_gpu_is_a_clear_error():
    from workbench.run.device import resolve_device

    if torch.cuda.is_available():
        assert resolve_device("cuda").type == "cuda"
    else:
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="Available"):
        resolve_device("tpu")


def test_config_plugins_are_loaded_by_the_runner(run_db, isolated_registry):
    from pathlib import Path

    from workbench.config import dump_config_toml, load_config

    db, name = run_db
    plugin = Path(__file__).resolve().parents[2] / "examples" / "my_encoder_plugin.py"
    config = config_from_dict({**KEYWORD, "name": "plugin", "plugins": [str(plugin)],
                               "image_encoder": {"type": "example_grid_rgb", "grid": 2},
                               "fusion": {"type": "contrastive", "dim": 4, "epochs": 2}})
    toml = db.parent / "plugin.toml"
    toml.write_text(dump_config_toml(config), encoding="utf-8")
    assert load_config(toml) == config
    run_id = runner.run(load_config(toml), name, db=db, device="cpu")
    record = runner.get_run(run_id, db=db)
    assert record["status"] == "done", record["error"]
    assert "example_grid_rgb" in record["log"]
