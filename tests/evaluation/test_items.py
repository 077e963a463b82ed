"""The detail view's library: one product's images, texts, tags and every pair built from it (with swap details and
label-error marks), and each run's score, calibrated probability and decision for those pairs."""

from __future__ import annotations

import numpy as np
import pytest

from workbench import store
from workbench.data.tags import tag_products
from workbench.evaluation.aggregate import load_calibrator
from workbench.evaluation.items import DECISION_COLUMNS, PAIR_COLUMNS, pair_decisions, product_detail
from workbench.evaluation.label_errors import mark_label_error
from workbench.evaluation.results import load_scored_pairs


def _product_with_a_swap(db) -> str:
    with store.connect(db) as con:
        return con.execute("SELECT i.product_id FROM pairs p JOIN images i USING (eval_set, image_id) WHERE "
                           "p.eval_set = 'tiny' AND p.pair_kind = 'attribute' AND p.split = 'test' "
                           "ORDER BY i.product_id LIMIT 1").fetchone()[0]


def test_product_detail_lists_every_pair_of_its_images_and_texts(two_runs_copy):
    db = two_runs_copy.path
    product = _product_with_a_swap(db)
    tag_products("tiny", [product], "look", db=db)
    detail = product_detail("tiny", product, db=db)
    assert detail.tags == ["look"] and detail.category and detail.attributes
    assert list(detail.pairs.columns) == list(PAIR_COLUMNS)
    with store.connect(db) as con:
        expected = {r[0] for r in con.execute(
            "SELECT p.pair_id FROM pairs p JOIN images i USING (eval_set, image_id) JOIN texts t USING (eval_set, "
            "text_id) WHERE p.eval_set = 'tiny' AND (i.product_id = ? OR t.product_id = ?)",
            [product, product]).fetchall()}
        n_images = con.execute("SELECT count(*) FROM images WHERE eval_set = 'tiny' AND product_id = ?",
                               [product]).fetchone()[0]
    assert set(detail.pairs["pair_id"]) == expected and len(detail.images) == n_images > 0
    assert set(detail.texts["text_id"]) >= set(detail.pairs.loc[detail.pairs["label"] == 1, "text_id"])
    positives = detail.pairs[detail.pairs["label"] == 1]
    assert (positives["image_product"] == product).all() and (positives["text_product"] == product).all()
    swaps = detail.pairs[detail.pairs["pair_kind"] == "attribute"]
    assert len(swaps) and swaps["swapped_attribute"].notna().all()
    assert (swaps["swap_from"] != swaps["swap_to"]).all() and swaps["swap_to"].notna().all()
    assert not detail.pairs["marked_label_error"].any()
    mark_label_error("tiny", swaps["pair_id"].iloc[0], note="n", db=db)
    again = product_detail("tiny", product, db=db).pairs.set_index("pair_id")
    assert again.at[swaps["pair_id"].iloc[0], "marked_label_error"] and again["marked_label_error"].sum() == 1


def test_unknown_product_is_a_clear_error(two_runs_db):
    with pytest.raises(KeyError, match="Product 'nope' not found in eval set 'tiny'"):
        product_detail("tiny", "nope", db=two_runs_db.path)


def test_pair_decisions_match_the_runs_stored_scores_thresholds_and_calibrators(two_runs_db):
    db, runs = two_runs_db.path, [two_runs_db.kwc_run, two_runs_db.kw_run]
    pairs = product_detail("tiny", _product_with_a_swap(db), db=db).pairs
    decisions = pair_decisions("tiny", runs, list(pairs["pair_id"]), db=db)
    assert list(decisions.columns) == list(DECISION_COLUMNS)
    assert list(dict.fromkeys(decisions["run_id"])) == runs  # in the order asked
    for run_id in runs:
        mine = decisions[decisions["run_id"] == run_id].set_index("pair_id")
        stored = load_scored_pairs(run_id, db=db, split=None).set_index("pair_id").loc[mine.index]
        assert len(mine) == len(pairs)  # every pair of the eval set is scored
        np.testing.assert_allclose(mine["score"], stored["score"])
        np.testing.assert_allclose(mine["threshold"], stored["threshold"])
        above = stored["score"] >= stored["threshold"]
        assert (mine["decision"] == np.where(above, "match", "non-match")).all()
        assert (mine["correct"] == (above == (stored["label"] == 1))).all()
        calibrator = load_calibrator(run_id, db=db)
        assert calibrator is not None
        np.testing.assert_allclose(mine["probability"], calibrator.predict(stored["score"].to_numpy()))
        assert mine["probability"].between(0, 1).all()


def test_pair_decisions_refuse_runs_of_another_eval_set_and_unknown_runs(two_runs_db):
    with pytest.raises(ValueError, match="is on eval set 'tiny', not 'other'"):
        pair_decisions("other", [two_runs_db.kw_run], ["x"], db=two_runs_db.path)
    with pytest.raises(KeyError, match="Run 'nope' not found"):
        pair_decisions("tiny", ["nope"], ["x"], db=two_runs_db.path)
    empty = pair_decisions("tiny", [], ["x"], db=two_runs_db.path)
    assert empty.empty and list(empty.columns) == list(DECISION_COLUMNS)


def test_mismatches_filter_by_tag_keeps_the_tagged_products_pairs(two_runs_copy):
    from workbench.evaluation.mismatches import mismatches

    db, run = two_runs_copy.path, two_runs_copy.kwc_run
    every = mismatches(run, db=db, kind="hardest_negative", limit=10_000)
    chosen = sorted(set(every["image_product"]))[:2]
    tag_products("tiny", chosen, "review", db=db)
    tagged = mismatches(run, db=db, kind="hardest_negative", limit=10_000, tag="review")
    assert set(tagged["image_product"]) == set(chosen)
    assert tagged["pair_id"].tolist() == every.loc[every["image_product"].isin(chosen), "pair_id"].tolist()
    assert mismatches(run, db=db, kind="hardest_negative", tag="nobody").empty
