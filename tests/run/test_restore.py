"""Restoring a finished run's models: stored scores reproduced, new content scored, errors that say what to do."""

from __future__ import annotations

import numpy as np
import pytest

from workbench import store
from workbench.config import config_from_dict
from workbench.data.vocab import tag_names
from workbench.run import runner
from workbench.run.restore import NewImage, NewText, RestoreError, restore_run_models

WEIGHT_FREE = {"name": "wf", "image_encoder": {"type": "color_histogram"},
               "text_encoder": {"type": "tfidf", "dim": 32}, "fusion": {"type": "cca", "n_components": 8}}
TINY_CNN = {"type": "small_cnn", "dim": 16, "width": 4, "image_size": 32, "epochs": 1}
TINY_GRU = {"type": "gru_text", "dim": 16, "hidden": 8, "embed_dim": 8, "epochs": 1}
TRAINED = {"name": "tr", "image_encoder": TINY_CNN, "text_encoder": TINY_GRU,
           "fusion": {"type": "contrastive", "dim": 8, "epochs": 3}}
TOKENS = {"name": "tok", "image_encoder": TINY_CNN, "text_encoder": TINY_GRU,
          "fusion": {"type": "cross_attention", "width": 8, "num_heads": 2, "epochs": 2}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    from workbench.data.evalsets import create_catalog_eval_set

    path = tmp_path_factory.mktemp("restore") / "wb.duckdb"
    create_catalog_eval_set("tiny", db=path, n_products=24, seed=2)
    ids = {c["name"]: runner.run(config_from_dict(c), "tiny", db=path, device="cpu") for c in (WEIGHT_FREE, TRAINED,
                                                                                              TOKENS)}
    for run_id in ids.values():
        assert runner.get_run(run_id, db=path)["status"] == "done", runner.get_run(run_id, db=path)["error"]
    return path, ids


def _stored(db, run_id: str):
    with store.connect(db) as con:
        return store.query_frame(con, "SELECT pair_id, score FROM scores WHERE run_id = ? AND split = 'test' "
                                 "ORDER BY pair_id", [run_id])


@pytest.mark.parametrize("name", ["wf", "tr", "tok"])
def test_restored_models_reproduce_the_stored_test_scores(runs, name: str) -> None:
    db, ids = runs
    models = restore_run_models(ids[name], db=db)
    stored = _stored(db, ids[name])
    assert len(stored) > 10
    np.testing.assert_allclose(models.score_pair_ids(list(stored["pair_id"])), stored["score"], atol=1e-5)
    assert models.max_score_deviation is not None and models.max_score_deviation <= 1e-5


@pytest.mark.parametrize("name", ["wf", "tr", "tok"])
def test_the_same_content_given_as_new_items_scores_like_the_stored_pair(runs, name: str) -> None:
    db, ids = runs
    models = restore_run_models(ids[name], db=db)
    stored = _stored(db, ids[name]).head(6)
    pairs = [models.pair(p) for p in stored["pair_id"]]
    images = [NewImage(models.load_image(p["image_id"]), like=p["image_id"]) for p in pairs]
    texts = [NewText(models.text(p["text_id"]), models.text_language(p["text_id"])) for p in pairs]
    np.testing.assert_allclose(models.score(images, texts), stored["score"], atol=1e-4)
    # mixed: an eval-set image id with a new text, and the reverse
    np.testing.assert_allclose(models.score([p["image_id"] for p in pairs], texts), stored["score"], atol=1e-4)
    np.testing.assert_allclose(models.score(images, [p["text_id"] for p in pairs]), stored["score"], atol=1e-4)


def test_new_content_changes_the_score_and_takes_tags_from_vocabulary_and_reference(runs) -> None:
    db, ids = runs
    models = restore_run_models(ids["wf"], db=db)
    pair = models.pair(_stored(db, ids["wf"])["pair_id"].iloc[0])
    typed = NewText("red cotton T-shirt", "en")
    data = models.fusion_data_for([NewImage(models.load_image(pair["image_id"]), like=pair["image_id"]),
                                   NewImage(models.load_image(pair["image_id"]))], [typed])
    names = tag_names()
    assert {"color=red", "material=cotton"} <= {names[i] for i in np.flatnonzero(data.text_tags[0])}
    reference = models.fusion_data.image_tags[models.image_row(pair["image_id"])]
    np.testing.assert_array_equal(data.image_tags[0], reference)
    assert data.image_tags[1].sum() == 0 and data.image_category[1] == -1
    assert data.image_product[0] == models.fusion_data.image_product[models.image_row(pair["image_id"])]
    original = models.score_pair_ids([pair["pair_id"]])[0]
    changed = models.score([pair["image_id"]], [NewText("blue wool dress", "en")])[0]
    assert abs(changed - original) > 1e-3


def test_keyed_new_content_is_cached_under_the_run_encoder(runs) -> None:
    db, ids = runs
    models = restore_run_models(ids["tr"], db=db)
    text = NewText("red cotton shirt", "en", key="test-key-1")
    first = models.encode_texts([text.text], [text.key]).vectors
    with store.connect(db) as con:
        rows = con.execute("SELECT count(*) FROM embedding_cache WHERE encoder_fp = ? AND content_hash = ?",
                           [models.cache_keys["text"], "test-key-1"]).fetchone()[0]
    assert rows == 1
    again = models.encode_texts(["ignored: read from the cache by key"], ["test-key-1"]).vectors
    np.testing.assert_array_equal(first, again)


def test_errors_say_what_is_wrong(runs) -> None:
    db, ids = runs
    with pytest.raises(KeyError, match="not found"):
        restore_run_models("no-such-run", db=db)
    models = restore_run_models(ids["wf"], db=db)
    with pytest.raises(KeyError, match="not in this run's eval set"):
        models.pair("nope")
    with pytest.raises(ValueError, match="aligned pairs"):
        models.score(["x"], [])
    with pytest.raises(TypeError, match="NewImage"):
        models.score([3], ["t"])
    failed = runner.create_run(config_from_dict(WEIGHT_FREE), "tiny", db=db)
    with pytest.raises(RestoreError, match="queued"):
        restore_run_models(failed, db=db)


def test_a_run_that_cannot_be_reproduced_is_refused(runs, tmp_path) -> None:
    import shutil

    db, ids = runs
    copy = tmp_path / "copy.duckdb"
    shutil.copy(db, copy)
    with store.connect(copy) as con:
        con.execute("UPDATE scores SET score = score + 0.5 WHERE run_id = ? AND split = 'test'", [ids["wf"]])
    with pytest.raises(RestoreError, match="stored test scores"):
        restore_run_models(ids["wf"], db=copy)
    assert restore_run_models(ids["wf"], db=copy, verify=False).max_score_deviation is None
