"""Metrics of one run: recomputing without marked label errors is recorded, operating points and cost thresholds
agree with brute force, precision@k and the tie policies are stored."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.evaluation.aggregate import compute_metrics, cost_threshold, load_metrics, operating_point
from workbench.evaluation.compare import compare_runs
from workbench.evaluation.label_errors import mark_label_error
from workbench.evaluation.mismatches import mismatches
from workbench.evaluation.results import get_artifact
from workbench.metrics import pair_metrics


def test_recomputing_metrics_excluding_label_errors_is_recorded(two_runs_copy):
    db, run, eval_set = two_runs_copy.path, two_runs_copy.kwc_run, two_runs_copy.eval_set
    before = load_metrics(run, db=db).set_index("name")
    fp = mismatches(run, db=db, kind="false_positive")
    mark_label_error(eval_set, fp["pair_id"].iloc[0], db=db)
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
    point = operating_point(y, s, 0.3)
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
    best = cost_threshold(y, s, cost_fp, cost_fn)
    candidates = np.concatenate([s, [s.max() + 1]])
    costs = [cost_fp * ((s >= t) & (y == 0)).sum() + cost_fn * ((s < t) & (y == 1)).sum() for t in candidates]
    assert best["cost"] == pytest.approx(min(costs))
    assert best["cost"] == pytest.approx(cost_fp * best["fp"] + cost_fn * best["fn"])


def test_costlier_false_matches_raise_the_threshold():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 500)
    s = y + rng.normal(size=500)
    assert cost_threshold(y, s, 10, 1)["threshold"] > cost_threshold(y, s, 1, 10)["threshold"]


def test_runs_store_precision_at_k_and_record_their_tie_policies(two_runs_db):
    metrics = load_metrics(two_runs_db.kwc_run, db=two_runs_db.path).set_index("name")
    for d in ("t2i", "i2t"):
        payload = get_artifact(two_runs_db.kwc_run, f"retrieval/{d}", db=two_runs_db.path)
        per_query = {k: np.asarray(v, dtype=float) for k, v in payload["per_query"].items() if k != "group"}
        valid = per_query["n_positives"] > 0
        for k in (1, 5, 10):
            row = metrics.loc[f"{d}/precision@{k}"]
            # the stored value is the mean of the per-query hits over k, and those hits are the recall hits
            hits = per_query[f"recall@{k}"][valid] * per_query["n_positives"][valid]
            assert row["value"] == pytest.approx(np.mean(hits / k), abs=1e-12)
            assert row["ci_low"] <= row["value"] <= row["ci_high"] and row["n"] == valid.sum()
    zeroshot = get_artifact(two_runs_db.kwc_run, "zeroshot", db=two_runs_db.path)
    assert zeroshot["ties"] == "pessimistic"
    policies = get_artifact(two_runs_db.kwc_run, "curves", db=two_runs_db.path)["policies"]
    assert "pessimistic" in policies["zeroshot/ties"] and "by k" in policies["retrieval/precision_denominator"]
    shown = compare_runs([two_runs_db.kw_run, two_runs_db.kwc_run], db=two_runs_db.path, n_resamples=20)["metrics"]
    assert {"t2i/precision@5", "i2t/precision@10"} <= set(shown)  # the leaderboard is the registry's view
