"""The artifacts stage: what evaluation needs from a run's models is stored with the run, so metrics are
recomputed from stored results alone; a pair-scoring head gets a CCA view for its joint space."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from workbench import store
from workbench.config import config_from_dict
from workbench.data.vocab import text_tags
from workbench.evaluation.aggregate import compute_metrics, load_metrics
from workbench.evaluation.results import get_artifact
from workbench.metrics import zeroshot_metrics_from_ranks
from workbench.models.fusion import FusionData, create_fusion_head
from workbench.run import runner
from workbench.run.artifacts import _zeroshot

PAIR_HEAD = {
    "name": "keyword-concat-mlp", "seed": 2,
    "image_encoder": {"type": "keyword_image"}, "text_encoder": {"type": "keyword_text"},
    "fusion": {"type": "concat_mlp", "width": 8, "hidden": 16, "epochs": 3},
}
MODEL_ARTIFACTS = {"retrieval/t2i", "retrieval/i2t", "gallery_curves", "zeroshot", "diagnostics"}


@pytest.fixture(scope="module")
def pair_head_run(catalog_db, tmp_path_factory):
    path, name = catalog_db
    db = tmp_path_factory.mktemp("artifacts") / "runs.duckdb"
    db.write_bytes(path.read_bytes())
    run_id = runner.run(config_from_dict(PAIR_HEAD), name, db=db, device="cpu")
    record = runner.get_run(run_id, db=db)
    assert record["status"] == "done", record["error"]
    return db, run_id, record


def _kinds(db, run_id: str) -> set[str]:
    with store.connect(db) as con:
        return {r[0] for r in con.execute("SELECT kind FROM run_artifacts WHERE run_id = ?", [run_id]).fetchall()}


def test_a_pair_head_run_stores_its_model_artifacts_and_a_cca_view(pair_head_run):
    db, run_id, record = pair_head_run
    assert MODEL_ARTIFACTS <= _kinds(db, run_id)
    assert {"artifacts_s", "metrics_s"} <= set(record["timings"])
    assert get_artifact(run_id, "retrieval/t2i", db=db)["method"].startswith("pair scorer")
    assert get_artifact(run_id, "diagnostics", db=db)["space"].startswith("CCA view")
    with store.connect(db) as con:
        dims = con.execute("SELECT DISTINCT len(vector) FROM run_embeddings WHERE run_id = ?", [run_id]).fetchall()
        n_rows = con.execute("SELECT count(*) FROM run_embeddings WHERE run_id = ?", [run_id]).fetchone()[0]
    assert len(dims) == 1 and 1 <= dims[0][0] <= 16 and n_rows > 0  # CCA components, capped at 16


def test_metrics_are_recomputed_from_stored_results_alone(pair_head_run, two_runs_copy):
    """Evaluation reads what the run stored: recomputing gives the run's own numbers, value for value."""
    for db, run_id in ((pair_head_run[0], pair_head_run[1]), (two_runs_copy.path, two_runs_copy.kwc_run)):
        before = load_metrics(run_id, db=db, slices=True)
        compute_metrics(run_id, db=db)
        after = load_metrics(run_id, db=db, slices=True)
        pd.testing.assert_frame_equal(after, before)


def test_zero_shot_of_an_all_zero_scorer_is_zero() -> None:
    """The run path: category prompts scored by a real cosine head; a text encoder that returns zero vectors makes
    every class score 0, which used to give acc@1 = 1.0 (strict > ranking)."""
    class ZeroText:
        requires_fit = False

        def encode(self, texts: list[str], *, device: str) -> np.ndarray:
            return np.zeros((len(texts), 4), dtype=np.float32)

    products = pd.DataFrame({"product_id": ["p1", "p2", "p3"], "category": ["mug", "chair", "mug"]})
    n_tags = text_tags("mug").shape[0]
    images = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    fusion_data = FusionData(
        image_vecs=images, text_vecs=np.zeros((1, 4), np.float32), image_tokens=None, image_mask=None,
        text_tokens=None, text_mask=None, image_tags=np.zeros((3, n_tags), np.float32),
        text_tags=np.zeros((1, n_tags), np.float32), image_product=np.array(["p1", "p2", "p3"], dtype=object),
        text_product=np.array(["p1"], dtype=object), image_category=np.array([0, 1, 0]),
    )
    out = _zeroshot(create_fusion_head("cosine"), fusion_data, SimpleNamespace(products=products), np.arange(3),
                    ZeroText(), "cpu")
    assert out["ties"] == "pessimistic" and out["categories"] == ["chair", "mug"]
    for res in out["by_language"].values():
        assert res["rank"] == [2.0, 2.0, 2.0] and res["group"] == ["p1", "p2", "p3"]
        assert zeroshot_metrics_from_ranks(res["rank"], np.asarray(res["truth"]))["acc@1"] == 0.0
