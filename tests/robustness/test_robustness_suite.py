"""Robustness suites on real finished runs: identity reproduces the clean run, perturbed content is cached under its
own keys, results are stored whole, and a keyword matcher stripped of its keywords ranks at chance."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from workbench import store
from workbench.evaluation.aggregate import load_metrics
from workbench.robustness import METRICS, content_key, load_robustness, parse_severities, results_json, run_robustness
from workbench.run.encoding import Cancelled
from workbench.run.restore import restore_run_models

RESAMPLES = 200


@pytest.fixture(scope="module")
def models(robust_run):
    return restore_run_models(robust_run.run_id, db=robust_run.path)


def test_identity_reproduces_the_clean_run_metrics_and_cis(robust_run, models) -> None:
    with store.connect(robust_run.path) as con:
        scores = con.execute("SELECT score FROM scores WHERE run_id = ? AND split = 'test'",
                             [robust_run.run_id]).fetchnumpy()["score"]
    assert np.diff(np.unique(scores)).min() > 1e-5  # distinct scores are no near-ties that float noise could flip

    results = run_robustness(robust_run.run_id, suite="identity", severities=[1], seed=11, db=robust_run.path,
                             models=models).set_index("metric")
    stored = load_metrics(robust_run.run_id, db=robust_run.path).set_index("name")
    assert set(results.index) == set(METRICS)
    for metric in METRICS:
        row = results.loc[metric]
        for column in ("value", "ci_low", "ci_high"):
            assert row[column] == pytest.approx(stored.at[metric, column], abs=1e-12), (metric, column)
            assert row[f"clean_{column}"] == pytest.approx(stored.at[metric, column], abs=1e-12)
        assert (row["drop"], row["drop_ci_low"], row["drop_ci_high"]) == (0.0, 0.0, 0.0)
    assert results["n_changed"].iloc[0] == 0 and results["n_items"].iloc[0] > 0


def test_perturbed_items_get_their_own_cache_keys(robust_run, models) -> None:
    data = models.data
    image_id = models.data.pairs.loc[data.pairs["split"] == "test", "image_id"].iloc[0]
    clean_hash = data.images.set_index("image_id").at[image_id, "sha256"]
    cache_key = models.cache_keys["image"]

    def cached(content_hash: str) -> bytes | None:
        with store.connect(robust_run.path) as con:
            row = con.execute("SELECT vector FROM embedding_cache WHERE encoder_fp = ? AND content_hash = ?",
                              [cache_key, content_hash]).fetchone()
        return row[0] if row else None

    clean_before = cached(clean_hash)
    run_robustness(robust_run.run_id, suite="color_shift", severities=[5], seed=12, db=robust_run.path,
                   models=models, n_resamples=RESAMPLES)
    perturbed = cached(content_key(clean_hash, "color_shift", 5, 12))
    assert perturbed is not None and perturbed != clean_before
    assert cached(clean_hash) == clean_before  # the clean item's entry is untouched
    assert content_key(clean_hash, "color_shift", 5, 12) not in {clean_hash, content_key(clean_hash, "color_shift",
                                                                                           4, 12)}


def test_results_are_stored_replaced_and_returned(robust_copy) -> None:
    kwargs = {"suite": "jpeg,case_punct", "severities": "1,5", "seed": 3, "db": robust_copy.path,
              "n_resamples": RESAMPLES, "models": restore_run_models(robust_copy.run_id, db=robust_copy.path)}
    first = run_robustness(robust_copy.run_id, **kwargs)
    again = run_robustness(robust_copy.run_id, **kwargs)  # a rerun replaces, never duplicates
    stored = load_robustness(robust_copy.run_id, db=robust_copy.path, seed=3)
    assert len(stored) == len(first) == 2 * 2 * len(METRICS)
    key = ["perturbation", "severity", "metric"]
    pd.testing.assert_frame_equal(stored.sort_values(key).reset_index(drop=True),
                                  again.sort_values(key).reset_index(drop=True), check_dtype=False)
    pd.testing.assert_frame_equal(first, again)  # deterministic: the same perturbations, scores and resamples
    assert np.allclose(stored["drop"], stored["clean_value"] - stored["value"], atol=1e-12)
    assert (stored["drop_ci_low"] <= stored["drop_ci_high"]).all()
    payload = results_json(stored)
    assert set(payload) == {"jpeg", "case_punct"}
    assert all(set(e) == {"severity", "metric", "value", "ci_low", "ci_high"} for v in payload.values() for e in v)


def test_cancelling_keeps_only_whole_results(robust_copy) -> None:
    cancel = threading.Event()
    seen = []

    def progress(done: int, total: int, label: str) -> None:
        seen.append(label)
        if done == 2:  # after two (perturbation, severity) steps
            cancel.set()

    with pytest.raises(Cancelled):
        run_robustness(robust_copy.run_id, suite="gaussian_noise,word_order", severities="1,3", seed=4,
                       db=robust_copy.path, n_resamples=RESAMPLES, progress=progress, cancel=cancel)
    stored = load_robustness(robust_copy.run_id, db=robust_copy.path, seed=4)
    assert sorted(stored.groupby(["perturbation", "severity"]).size().items()) == [
        (("gaussian_noise", 1), len(METRICS)), (("gaussian_noise", 3), len(METRICS))]


def test_a_keyword_matcher_without_its_keywords_ranks_at_chance(robust_run) -> None:
    """Dropping every attribute word leaves no colour keyword in any text: every score is the same 0, so the
    ROC-AUC is exactly 0.5 and its drop is the clean AUC minus 0.5."""
    results = run_robustness(robust_run.keyword_run, suite="drop_attribute", severities=[5], seed=5,
                             db=robust_run.path, n_resamples=RESAMPLES).set_index("metric")
    clean = load_metrics(robust_run.keyword_run, db=robust_run.path).set_index("name").at["pair/roc_auc", "value"]
    assert results.at["pair/roc_auc", "value"] == 0.5
    assert results.at["pair/roc_auc", "drop"] == pytest.approx(clean - 0.5, abs=1e-12)


def test_bad_arguments_are_refused_with_the_choices(robust_run) -> None:
    with pytest.raises(ValueError, match=r"must be integers from \[1, 2, 3, 4, 5\]"):
        parse_severities("1,x")
    with pytest.raises(ValueError, match=r"severities=\[0\] must be integers from"):
        parse_severities([0])
    assert parse_severities("5, 1,3,1") == (1, 3, 5)
    with pytest.raises(KeyError, match="neither a suite nor a perturbation"):
        run_robustness(robust_run.run_id, suite="snow", db=robust_run.path)
    with pytest.raises(KeyError, match="not found"):
        run_robustness("no-such-run", suite="jpeg", db=robust_run.path)
