"""Mismatch galleries obey the run's thresholds and filters; retrieval failures show the run's own stored ranking."""

from __future__ import annotations

import json

import numpy as np
import pytest

from workbench import store
from workbench.evaluation.mismatches import MISMATCH_COLUMNS, count_mismatches, mismatches, retrieval_failures
from workbench.evaluation.results import get_artifact, load_scored_pairs


def test_false_positives_have_label_0_and_score_at_or_above_threshold(two_runs_db):
    fp = mismatches(two_runs_db.kwc_run, db=two_runs_db.path, kind="false_positive", limit=1000)
    assert len(fp) == count_mismatches(two_runs_db.kwc_run, db=two_runs_db.path)["false_positive"] > 0
    assert (fp["label"] == 0).all() and (fp["score"] >= fp["threshold"]).all()
    assert fp["score"].is_monotonic_decreasing  # most confident mistakes first
    assert list(fp.columns) == list(MISMATCH_COLUMNS)


def test_false_negatives_have_label_1_and_score_below_threshold(two_runs_db):
    fn = mismatches(two_runs_db.kwc_run, db=two_runs_db.path, kind="false_negative", limit=1000)
    assert len(fn) > 0 and (fn["label"] == 1).all() and (fn["score"] < fn["threshold"]).all()
    assert fn["score"].is_monotonic_increasing
    assert (fn["pair_kind"] == "positive").all()


def test_counts_partition_the_test_pairs(two_runs_db):
    pairs = load_scored_pairs(two_runs_db.kwc_run, db=two_runs_db.path)
    counts = count_mismatches(two_runs_db.kwc_run, db=two_runs_db.path)
    wrong = ((pairs["score"] >= pairs["threshold"]) != (pairs["label"] == 1)).sum()
    assert counts["false_positive"] + counts["false_negative"] == wrong
    assert counts["hardest_negative"] == (pairs["label"] == 0).sum()


def test_hardest_negatives_filters_sort_and_pagination(two_runs_db):
    run, db = two_runs_db.kwc_run, two_runs_db.path
    hard = mismatches(run, db=db, kind="hardest_negative", limit=1000)
    assert (hard["label"] == 0).all() and hard["score"].is_monotonic_decreasing
    page2 = mismatches(run, db=db, kind="hardest_negative", limit=5, offset=5)
    assert page2["pair_id"].tolist() == hard["pair_id"].iloc[5:10].tolist()
    swaps = mismatches(run, db=db, kind="hardest_negative", pair_kind="attribute", limit=1000)
    assert len(swaps) and (swaps["pair_kind"] == "attribute").all() and swaps["swapped_attribute"].notna().all()
    category = hard["category"].iloc[0]
    by_cat = mismatches(run, db=db, kind="hardest_negative", category=category, limit=1000)
    assert (by_cat["category"] == category).all() and len(by_cat) == (hard["category"] == category).sum()
    margin = mismatches(run, db=db, kind="false_positive", sort="margin", limit=1000)
    assert (margin["score"] - margin["threshold"]).abs().is_monotonic_decreasing
    with pytest.raises(ValueError, match="kind='true_positive'"):
        mismatches(run, db=db, kind="true_positive")
    with pytest.raises(ValueError, match="sort='random'"):
        mismatches(run, db=db, sort="random")


def test_attribute_swaps_name_the_text_they_were_made_from(two_runs_db):
    swaps = mismatches(two_runs_db.kwc_run, db=two_runs_db.path, kind="hardest_negative", pair_kind="attribute",
                        limit=1000)
    derived = swaps.dropna(subset=["original_text"])
    assert len(derived) >= len(swaps) // 2
    for row in derived.itertuples():
        assert row.original_text != row.text
        # a swap changes one attribute word: most tokens are shared
        a, b = set(row.text.replace(",", " ").split()), set(row.original_text.replace(",", " ").split())
        assert len(a & b) >= 1 or row.language == "zh"


def _run_vectors(db, run_id: str) -> dict[str, np.ndarray]:
    with store.connect(db) as con:
        rows = con.execute("SELECT item_id, vector FROM run_embeddings WHERE run_id = ?", [run_id]).fetchall()
    return {item: np.asarray(vec, dtype=np.float64) for item, vec in rows}


@pytest.mark.parametrize("direction", ["t2i", "i2t"])
def test_retrieval_failures_show_the_runs_own_top_k(two_runs_db, direction):
    """The true item's rank and the top k come from one stored ranking, so they agree even inside tie blocks.

    They used to disagree for i2t on every machine: this contrastive head maps 10 of the 15 test texts onto
    nearly one point, so an image query sees most of the text gallery tied in float32 (the run ranked the true
    texts below the whole tie block: rank 14 of 15), while the view recomputed cosine in float64 from the stored
    vectors, where the same near-ties differ by ~1e-9 and fall in another order (ranks 5 to 11)."""
    failures = retrieval_failures(two_runs_db.kwc_run, direction=direction, db=two_runs_db.path, k=3, limit=5)
    assert 0 < len(failures) <= 5
    ranks = [f["first_rank"] for f in failures]
    assert ranks == sorted(ranks, reverse=True) and min(ranks) > 1
    vectors = _run_vectors(two_runs_db.path, two_runs_db.kwc_run)
    for f in failures:
        assert len(f["results"]) == 3 and f["ties"] == "pessimistic"
        scores = [r["score"] for r in f["results"]]
        assert scores == sorted(scores, reverse=True)
        assert all(r["relevant"] == (r["product_id"] == f["product_id"]) for r in f["results"])
        hits = [i + 1 for i, r in enumerate(f["results"]) if r["relevant"]]
        assert (hits[0] == f["first_rank"]) if f["first_rank"] <= 3 else not hits
        for r in f["results"]:  # the listed items and scores are the run's: cosine in its joint space
            assert r["score"] == pytest.approx(float(vectors[f["query_id"]] @ vectors[r["item_id"]]), abs=1e-5)
        if direction == "t2i":
            assert f["query_text"] and all(r["image_path"] for r in f["results"])
        else:
            assert f["query_image_path"] and all(r["text"] for r in f["results"])
    with pytest.raises(ValueError, match="direction='x2y'"):
        retrieval_failures(two_runs_db.kwc_run, direction="x2y", db=two_runs_db.path)
    with pytest.raises(ValueError, match="k=11 exceeds the 10 results"):
        retrieval_failures(two_runs_db.kwc_run, direction=direction, db=two_runs_db.path, k=11)


def test_retrieval_failures_of_a_run_without_top_k_lists_say_what_to_do(two_runs_copy):
    payload = get_artifact(two_runs_copy.kwc_run, "retrieval/i2t", db=two_runs_copy.path)
    payload.pop("top_k")
    with store.connect(two_runs_copy.path) as con:
        con.execute("UPDATE run_artifacts SET payload = ? WHERE run_id = ? AND kind = 'retrieval/i2t'",
                    [json.dumps(payload), two_runs_copy.kwc_run])
    with pytest.raises(ValueError, match="run its configuration again"):
        retrieval_failures(two_runs_copy.kwc_run, direction="i2t", db=two_runs_copy.path)
