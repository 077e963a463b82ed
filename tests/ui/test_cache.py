"""The cache module: reads are keyed by versions, so a recomputation, a mark, a re-import or a saved config is read
fresh while the old entries stay valid for whoever still holds the old version; runs get one label everywhere."""

from __future__ import annotations

import pytest

from workbench.config import config_from_dict, save_config
from workbench.data import evalsets
from workbench.evaluation.aggregate import compute_metrics
from workbench.evaluation.label_errors import mark_label_error
from workbench.ui import cache


@pytest.fixture
def runs(two_runs_copy):
    return two_runs_copy, str(two_runs_copy.path)


def test_finished_runs_carry_the_one_run_label(runs):
    data, db = runs
    frame = cache.finished_runs.__wrapped__(db)
    assert set(frame["run_id"]) == {data.kw_run, data.kwc_run}
    assert frame.set_index("run_id").at[data.kw_run, "label"] == f"kw · tiny · {data.kw_run}"


def test_recomputed_metrics_get_a_new_version_and_cached_reads_follow_it(runs):
    data, db = runs
    run = (data.kwc_run,)
    before = cache.metrics_version(run, db)
    old_policy = cache.curves(data.kwc_run, db, before)["policies"]["label_errors"]
    pair = cache.scored_pairs(data.kwc_run, "test", db, before)["pair_id"].iloc[0]
    mark_label_error("tiny", pair, db=db)
    compute_metrics(data.kwc_run, db=db, exclude_label_errors=True, seed=0)
    after = cache.metrics_version(run, db)
    assert after != before
    assert "excluded" in cache.curves(data.kwc_run, db, after)["policies"]["label_errors"]
    assert cache.curves(data.kwc_run, db, before)["policies"]["label_errors"] == old_policy  # still cached
    assert cache.metrics_version((data.kw_run,), db) == cache.metrics_version((data.kw_run,), db)


def test_mismatches_are_keyed_by_the_marks_and_forgetting_marks_reads_them_again(runs):
    data, db = runs
    version = cache.metrics_version((data.kwc_run,), db)
    marked = cache.marked_pairs("tiny", db)
    assert marked.empty
    options = {"kind": "hardest_negative", "category": None, "pair_kind": None, "sort": "score", "limit": 5,
               "offset": 0, "include_marked": True}
    first = cache.mismatches(data.kwc_run, db, version, cache.marks_version(marked), **options)
    pair = first["pair_id"].iloc[0]
    assert not first["marked_label_error"].any()
    mark_label_error("tiny", pair, db=db)
    cache.forget_marks("tiny", db)
    marked = cache.marked_pairs("tiny", db)
    assert list(marked["pair_id"]) == [pair]
    again = cache.mismatches(data.kwc_run, db, version, cache.marks_version(marked), **options)
    assert again.set_index("pair_id").at[pair, "marked_label_error"]
    hidden = cache.mismatches(data.kwc_run, db, version, cache.marks_version(marked),
                              **{**options, "include_marked": False})
    assert pair not in set(hidden["pair_id"])


def test_a_reimported_eval_set_has_a_new_version(tmp_path):
    db = str(tmp_path / "wb.duckdb")
    evalsets.create_catalog_eval_set("shop", db=db, n_products=12, seed=0)
    first = cache.eval_set_version(evalsets.list_eval_sets(db).set_index("name").loc["shop"])
    info = cache.eval_set_info(db, "shop", first)
    evalsets.delete_eval_set("shop", db)
    evalsets.create_catalog_eval_set("shop", db=db, n_products=16, seed=0)
    second = cache.eval_set_version(evalsets.list_eval_sets(db).set_index("name").loc["shop"])
    assert second != first
    assert cache.eval_set_info(db, "shop", second)["n_products"] == 16
    assert cache.eval_set_info(db, "shop", first)["n_products"] == info["n_products"] == 12
    assert cache.eval_set_version(cache.eval_set_info(db, "shop", second)) == second


def test_a_saved_config_changes_the_catalogue_version(tmp_path):
    db = str(tmp_path / "wb.duckdb")
    empty = cache.configs_version(db)
    assert empty == () and "saved: kw" not in cache.configs(db, empty).configs
    save_config(config_from_dict({"name": "kw", "image_encoder": {"type": "keyword_image"},
                                  "text_encoder": {"type": "keyword_text"}, "fusion": {"type": "cosine"}}), db)
    version = cache.configs_version(db)
    assert [name for name, _ in version] == ["kw.toml"]
    assert "saved: kw" in cache.configs(db, version).configs


def test_a_projection_is_shared_not_copied_and_a_served_one_says_so(runs):
    data, db = runs
    version = cache.metrics_version((data.kw_run,), db)
    params = (("method", "pca"),)
    first = cache.projection(data.kw_run, db, version, params)
    assert not first.from_cache and {"image", "text"} == set(first.frame["modality"])  # computed here
    served = cache.projection(data.kw_run, db, version, params)
    assert served.from_cache and served.frame is first.frame
