"""Error analysis: mismatch galleries obey the threshold, label-error marks round-trip and their exclusion is recorded,
operating points and cost thresholds agree with brute force, retrieval failures recompute top-k by cosine."""

from __future__ import annotations

import json

import numpy as np
import pytest

from workbench import analysis, store
from workbench.evaluation import compare_runs, compute_metrics, get_artifact, load_metrics
from workbench.metrics import pair_metrics


def test_false_positives_have_label_0_and_score_at_or_above_threshold(part2_db):
    fp = analysis.mismatches(part2_db.kwc_run, db=part2_db.path, kind="false_positive", limit=1000)
    assert len(fp) == analysis.count_mismatches(part2_db.kwc_run, db=part2_db.path)["false_positive"] > 0
    assert (fp["label"] == 0).all() and (fp["score"] >= fp["threshold"]).all()
    assert fp["score"].is_monotonic_decreasing  # most confident mistakes first
    assert list(fp.columns) == list(analysis.MISMATCH_COLUMNS)


def test_false_negatives_have_label_1_and_score_below_threshold(part2_db):
    fn = analysis.mismatches(part2_db.kwc_run, db=part2_db.path, kind="false_negative", limit=1000)
    assert len(fn) > 0 and (fn["label"] == 1).all() and (fn["score"] < fn["threshold"]).all()
    assert fn["score"].is_monotonic_increasing
    assert (fn["pair_kind"] == "positive").all()


def test_counts_partition_the_test_pairs(part2_db):
    pairs = analysis.load_scored_pairs(part2_db.kwc_run, db=part2_db.path)
    counts = analysis.count_mismatches(part2_db.kwc_run, db=part2_db.path)
    wrong = ((pairs["score"] >= pairs["threshold"]) != (pairs["label"] == 1)).sum()
    assert counts["false_positive"] + counts["false_negative"] == wrong
    assert counts["hardest_negative"] == (pairs["label"] == 0).sum()


def test_hardest_negatives_filters_sort_and_pagination(part2_db):
    run, db = part2_db.kwc_run, part2_db.path
    hard = analysis.mismatches(run, db=db, kind="hardest_negative", limit=1000)
    assert (hard["label"] == 0).all() and hard["score"].is_monotonic_decreasing
    page2 = analysis.mismatches(run, db=db, kind="hardest_negative", limit=5, offset=5)
    assert page2["pair_id"].tolist() == hard["pair_id"].iloc[5:10].tolist()
    swaps = analysis.mismatches(run, db=db, kind="hardest_negative", pair_kind="attribute", limit=1000)
    assert len(swaps) and (swaps["pair_kind"] == "attribute").all() and swaps["swapped_attribute"].notna().all()
    category = hard["category"].iloc[0]
    by_cat = analysis.mismatches(run, db=db, kind="hardest_negative", category=category, limit=1000)
    assert (by_cat["category"] == category).all() and len(by_cat) == (hard["category"] == category).sum()
    margin = analysis.mismatches(run, db=db, kind="false_positive", sort="margin", limit=1000)
    assert (margin["score"] - margin["threshold"]).abs().is_monotonic_decreasing
    with pytest.raises(ValueError, match="kind='true_positive'"):
        analysis.mismatches(run, db=db, kind="true_positive")
    with pytest.raises(ValueError, match="sort='random'"):
        analysis.mismatches(run, db=db, sort="random")


def test_attribute_swaps_name_the_text_they_were_made_from(part2_db):
    swaps = analysis.mismatches(part2_db.kwc_run, db=part2_db.path, kind="hardest_negative", pair_kind="attribute",
                                limit=1000)
    derived = swaps.dropna(subset=["original_text"])
    assert len(derived) >= len(swaps) // 2
    for row in derived.itertuples():
        assert row.original_text != row.text
        # a swap changes one attribute word: most tokens are shared
        a, b = set(row.text.replace(",", " ").split()), set(row.original_text.replace(",", " ").split())
        assert len(a & b) >= 1 or row.language == "zh"


def test_label_error_roundtrip_and_gallery_badge(part2_copy):
    db, run, eval_set = part2_copy.path, part2_copy.kwc_run, part2_copy.eval_set
    fp = analysis.mismatches(run, db=db, kind="false_positive")
    pair = fp["pair_id"].iloc[0]
    analysis.mark_label_error(eval_set, pair, note="colour is right", db=db)
    analysis.mark_label_error(eval_set, pair, note="second note wins", db=db)  # idempotent
    marked = analysis.list_label_errors(eval_set, db=db)
    assert marked["pair_id"].tolist() == [pair] and marked["note"].iloc[0] == "second note wins"
    again = analysis.mismatches(run, db=db, kind="false_positive")
    assert again.set_index("pair_id").at[pair, "marked_label_error"]
    hidden = analysis.mismatches(run, db=db, kind="false_positive", include_label_errors=False)
    assert pair not in set(hidden["pair_id"]) and len(hidden) == len(again) - 1
    analysis.unmark_label_error(eval_set, pair, db=db)
    assert analysis.list_label_errors(eval_set, db=db).empty
    with pytest.raises(KeyError, match="no-such-pair"):
        analysis.mark_label_error(eval_set, "no-such-pair", db=db)


def test_recomputing_metrics_excluding_label_errors_is_recorded(part2_copy):
    db, run, eval_set = part2_copy.path, part2_copy.kwc_run, part2_copy.eval_set
    before = load_metrics(run, db=db).set_index("name")
    fp = analysis.mismatches(run, db=db, kind="false_positive")
    analysis.mark_label_error(eval_set, fp["pair_id"].iloc[0], db=db)
    compute_metrics(run, db=db, exclude_label_errors=True, n_resamples=50)
    after = load_metrics(run, db=db).set_index("name")
    assert after.at["pair/accuracy", "n"] == before.at["pair/accuracy", "n"] - 1
    policy = get_artifact(run, "curves", db=db)["policies"]["label_errors"]
    assert policy == "1 pairs marked as label errors excluded"
    compute_metrics(run, db=db, exclude_label_errors=False, n_resamples=50)
    assert get_artifact(run, "curves", db=db)["policies"]["label_errors"] == \
        "pairs marked as label errors are included"


def test_operating_point_matches_pair_metrics():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = y * 0.5 + rng.normal(size=300)
    point = analysis.operating_point(y, s, 0.3)
    ref = pair_metrics(y, s, threshold=0.3)
    for name in ("precision", "recall", "f1", "accuracy"):
        assert point[name] == pytest.approx(ref[name])
    pred = s >= 0.3
    assert (point["tp"], point["fp"], point["tn"], point["fn"]) == (
        int((pred & (y == 1)).sum()), int((pred & (y == 0)).sum()), int((~pred & (y == 0)).sum()),
        int((~pred & (y == 1)).sum()))


@pytest.mark.parametrize("cost_fp, cost_fn", [(1, 1), (5, 1), (1, 5), (0, 1)])
def test_cost_threshold_is_the_brute_force_minimum(cost_fp, cost_fn):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    s = y * 0.8 + rng.normal(size=200)
    best = analysis.cost_threshold(y, s, cost_fp, cost_fn)
    candidates = np.concatenate([s, [s.max() + 1]])
    costs = [cost_fp * ((s >= t) & (y == 0)).sum() + cost_fn * ((s < t) & (y == 1)).sum() for t in candidates]
    assert best["cost"] == pytest.approx(min(costs))
    assert best["cost"] == pytest.approx(cost_fp * best["fp"] + cost_fn * best["fn"])


def test_costlier_false_matches_raise_the_threshold():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 500)
    s = y + rng.normal(size=500)
    assert analysis.cost_threshold(y, s, 10, 1)["threshold"] > analysis.cost_threshold(y, s, 1, 10)["threshold"]


def _run_vectors(db, run_id: str) -> dict[str, np.ndarray]:
    with store.connect(db) as con:
        rows = con.execute("SELECT item_id, vector FROM run_embeddings WHERE run_id = ?", [run_id]).fetchall()
    return {item: np.asarray(vec, dtype=np.float64) for item, vec in rows}


@pytest.mark.parametrize("direction", ["t2i", "i2t"])
def test_retrieval_failures_show_the_runs_own_top_k(part2_db, direction):
    """The true item's rank and the top k come from one stored ranking, so they agree even inside tie blocks.

    They used to disagree for i2t on every machine: this contrastive head maps 10 of the 15 test texts onto
    nearly one point, so an image query sees most of the text gallery tied in float32 (the run ranked the true
    texts below the whole tie block: rank 14 of 15), while the view recomputed cosine in float64 from the stored
    vectors, where the same near-ties differ by ~1e-9 and fall in another order (ranks 5 to 11)."""
    failures = analysis.retrieval_failures(part2_db.kwc_run, direction=direction, db=part2_db.path, k=3, limit=5)
    assert 0 < len(failures) <= 5
    ranks = [f["first_rank"] for f in failures]
    assert ranks == sorted(ranks, reverse=True) and min(ranks) > 1
    vectors = _run_vectors(part2_db.path, part2_db.kwc_run)
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
        analysis.retrieval_failures(part2_db.kwc_run, direction="x2y", db=part2_db.path)
    with pytest.raises(ValueError, match="k=11 exceeds the 10 results"):
        analysis.retrieval_failures(part2_db.kwc_run, direction=direction, db=part2_db.path, k=11)


def test_retrieval_failures_of_a_run_without_top_k_lists_say_what_to_do(part2_copy):
    payload = get_artifact(part2_copy.kwc_run, "retrieval/i2t", db=part2_copy.path)
    payload.pop("top_k")
    with store.connect(part2_copy.path) as con:
        con.execute("UPDATE run_artifacts SET payload = ? WHERE run_id = ? AND kind = 'retrieval/i2t'",
                    [json.dumps(payload), part2_copy.kwc_run])
    with pytest.raises(ValueError, match="run its configuration again"):
        analysis.retrieval_failures(part2_copy.kwc_run, direction="i2t", db=part2_copy.path)


def test_runs_store_precision_at_k_and_record_their_tie_policies(part2_db):
    metrics = load_metrics(part2_db.kwc_run, db=part2_db.path).set_index("name")
    for d in ("t2i", "i2t"):
        payload = get_artifact(part2_db.kwc_run, f"retrieval/{d}", db=part2_db.path)
        per_query = {k: np.asarray(v, dtype=float) for k, v in payload["per_query"].items() if k != "group"}
        valid = per_query["n_positives"] > 0
        for k in (1, 5, 10):
            row = metrics.loc[f"{d}/precision@{k}"]
            # the stored value is the mean of the per-query hits over k, and those hits are the recall hits
            hits = per_query[f"recall@{k}"][valid] * per_query["n_positives"][valid]
            assert row["value"] == pytest.approx(np.mean(hits / k), abs=1e-12)
            assert row["ci_low"] <= row["value"] <= row["ci_high"] and row["n"] == valid.sum()
    zeroshot = get_artifact(part2_db.kwc_run, "zeroshot", db=part2_db.path)
    assert zeroshot["ties"] == "pessimistic"
    policies = get_artifact(part2_db.kwc_run, "curves", db=part2_db.path)["policies"]
    assert "pessimistic" in policies["zeroshot/ties"] and "by k" in policies["retrieval/precision_denominator"]
    shown = compare_runs([part2_db.kw_run, part2_db.kwc_run], db=part2_db.path, n_resamples=20)["metrics"]
    assert {"t2i/precision@5", "i2t/precision@10"} <= set(shown)  # the leaderboard is the registry's view
