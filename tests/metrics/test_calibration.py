"""Calibration: ECE/Brier against known cases and scikit-learn, Platt and isotonic fits against scikit-learn, and
``compute_metrics`` on a real DuckDB file: the calibrator is fitted on val only, slice metrics carry their counts,
CIs and the "too few pairs" flag."""

from __future__ import annotations

import json
import shutil
from datetime import datetime

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from workbench.metrics import (
    CALIBRATION_METHODS,
    bootstrap_calibration_metrics,
    bootstrap_ci,
    brier_score_loss,
    calibration_metrics,
    calibrator_from_dict,
    expected_calibration_error,
    fit_calibrator,
    pair_metrics,
)


# ------------------------------------------------------------------------------------------------ ECE and Brier
def test_ece_is_small_on_a_calibrated_sample() -> None:
    rng = np.random.default_rng(0)
    p = rng.random(200_000)
    y = (rng.random(p.shape[0]) < p).astype(int)  # y ~ Bernoulli(p): calibrated by construction
    assert expected_calibration_error(y, p) < 0.02


def test_ece_of_a_known_miscalibration() -> None:
    rng = np.random.default_rng(1)
    p = rng.random(200_000)
    y = (rng.random(p.shape[0]) < p**2).astype(int)  # true rate p^2 <= p in every bin: ECE = E[p - p^2] = 1/6
    assert expected_calibration_error(y, p) == pytest.approx(1 / 6, abs=0.01)
    # Hand-computed: bins 0.9 (6 of 10 match) and 0.2 (2 of 10 match) -> (10 * 0.3 + 10 * 0) / 20.
    probs = np.r_[np.full(10, 0.9), np.full(10, 0.2)]
    labels = np.r_[np.ones(6), np.zeros(4), np.ones(2), np.zeros(8)]
    assert expected_calibration_error(labels, probs) == pytest.approx(0.15, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_brier_and_log_loss_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(10, 500))
    y = (rng.random(n) < 0.4).astype(int)
    p = np.round(rng.random(n), 2)
    p[:2] = [0.0, 1.0]  # the ends of [0, 1] are allowed
    assert brier_score_loss(y, p) == pytest.approx(skm.brier_score_loss(y, p), abs=1e-12)
    out = calibration_metrics(y, p)
    assert out["brier"] == pytest.approx(skm.brier_score_loss(y, p), abs=1e-12)
    clipped = np.clip(p, np.finfo(float).eps, 1 - np.finfo(float).eps)
    assert out["log_loss"] == pytest.approx(skm.log_loss(y, clipped, labels=[0, 1]), rel=1e-9)
    assert out["ece"] == expected_calibration_error(y, p)


def test_probability_metrics_reject_bad_input() -> None:
    with pytest.raises(ValueError, match=r"probs must lie in \[0, 1\]"):
        brier_score_loss([0, 1], [0.2, 1.5])
    with pytest.raises(ValueError, match="1 NaN"):
        calibration_metrics([0, 1], [0.2, np.nan])
    with pytest.raises(ValueError, match="only 0/1 labels"):
        brier_score_loss([0, 2], [0.2, 0.3])


# ------------------------------------------------------------------------------------------------ calibrators
def _platt_reference(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """scikit-learn's (almost) unpenalised logistic regression on Platt's smoothed targets, as weighted rows."""
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    t = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    x = np.r_[s, s][:, None]
    target = np.r_[np.ones_like(s), np.zeros_like(s)]
    model = LogisticRegression(C=1e12, tol=1e-12, max_iter=10_000).fit(x, target, sample_weight=np.r_[t, 1 - t])
    return float(model.coef_[0, 0]), float(model.intercept_[0])


@pytest.mark.parametrize(("scale", "shift"), [(1.0, 0.0), (25.0, -4.0), (0.04, 0.3)])  # logits, cosines
def test_platt_matches_sklearn_logistic_regression(scale: float, shift: float) -> None:
    rng = np.random.default_rng(7)
    y = (rng.random(600) < 0.3).astype(int)
    s = (rng.normal(size=600) + 1.3 * y) * scale + shift
    cal = fit_calibrator(y, s)
    slope, intercept = _platt_reference(y, s)
    assert cal.method == "platt"
    assert cal.params["slope"] == pytest.approx(slope, rel=1e-6)
    assert cal.params["intercept"] == pytest.approx(intercept, rel=1e-6, abs=1e-8)
    grid = np.linspace(s.min(), s.max(), 50)
    np.testing.assert_allclose(cal.predict(grid), 1 / (1 + np.exp(-(slope * grid + intercept))), atol=1e-8)


def test_platt_stays_finite_and_monotone_on_separable_scores() -> None:
    y = np.r_[np.zeros(40), np.ones(20)].astype(int)
    s = np.r_[np.linspace(-3, -1, 40), np.linspace(1, 3, 20)]  # perfectly separated: plain MLE diverges
    cal = fit_calibrator(y, s)
    p = cal.predict(np.sort(s))
    assert np.isfinite(cal.params["slope"]) and cal.params["slope"] > 0
    assert (np.diff(p) > 0).all() and 0 < p.min() and p.max() < 1
    slope, intercept = _platt_reference(y, s)
    assert cal.params["slope"] == pytest.approx(slope, rel=1e-5)
    # A monotone map keeps every ranking metric.
    assert pair_metrics(y, cal.predict(s), threshold=0.5)["roc_auc"] == pair_metrics(y, s, threshold=0)["roc_auc"]


def test_constant_scores_get_the_smoothed_base_rate() -> None:
    y = np.r_[np.ones(3), np.zeros(7)].astype(int)
    cal = fit_calibrator(y, np.zeros(10))
    assert cal.params["slope"] == 0
    np.testing.assert_allclose(cal.predict([-5.0, 0.0, 9.0]), (3 + 1) / (3 + 2) * 3 / 10 + 1 / (7 + 2) * 7 / 10)


@pytest.mark.parametrize("decimals", [0, 1, None])
def test_isotonic_matches_sklearn(decimals: int | None) -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(400) < 0.35).astype(int)
    s = rng.normal(size=400) * 2 + 1.5 * y
    if decimals is not None:
        s = np.round(s, decimals)  # ties pooled before the fit
    cal = fit_calibrator(y, s, method="isotonic")
    reference = IsotonicRegression(out_of_bounds="clip").fit(s, y)
    grid = np.r_[np.linspace(s.min() - 2, s.max() + 2, 997), s]
    np.testing.assert_allclose(cal.predict(grid), reference.predict(grid), atol=1e-12)
    assert len(cal.params["x"]) < len(np.unique(s)) or decimals == 0  # interior points of blocks are dropped


def test_calibrator_round_trips_through_json_and_validates() -> None:
    rng = np.random.default_rng(5)
    y = (rng.random(100) < 0.5).astype(int)
    s = rng.normal(size=100) + y
    for method in CALIBRATION_METHODS:
        cal = fit_calibrator(y, s, method=method)
        again = calibrator_from_dict(json.loads(json.dumps(cal.to_dict())))
        np.testing.assert_array_equal(again.predict(s), cal.predict(s))
    with pytest.raises(ValueError, match=r"method='beta' is not supported; allowed: \['platt', 'isotonic'\]"):
        fit_calibrator(y, s, method="beta")
    with pytest.raises(ValueError, match="needs both classes; got 0 positive"):
        fit_calibrator(np.zeros(5), np.arange(5.0))
    with pytest.raises(ValueError, match="missing \\['intercept'\\]"):
        calibrator_from_dict({"method": "platt", "params": {"slope": 1.0}})


# ------------------------------------------------------------------------------------------------ bootstrap CIs
def test_bootstrap_calibration_uses_the_product_resamples_of_bootstrap_ci() -> None:
    rng = np.random.default_rng(11)
    groups = np.repeat(np.arange(60), rng.integers(1, 6, 60))
    p = rng.random(groups.shape[0])
    y = (rng.random(groups.shape[0]) < p**1.5).astype(int)
    out = bootstrap_calibration_metrics(y, p, groups=groups.astype(str), n_resamples=200, seed=4)
    point = calibration_metrics(y, p)
    for name, fn in (("ece", expected_calibration_error), ("brier", brier_score_loss)):
        naive = bootstrap_ci(fn, (y, p), groups=groups.astype(str), n_resamples=200, seed=4)
        assert out[name][0] == point[name]
        assert out[name][1] == pytest.approx(naive[1], abs=1e-12) and out[name][2] == pytest.approx(naive[2], abs=1e-12)
        assert out[name][1] < out[name][2]
    with pytest.raises(ValueError, match="groups must be 1-D with one entry per pair"):
        bootstrap_calibration_metrics(y, p, groups=groups[:-1])


# ------------------------------------------------------------------------------------------------ stored runs
RUN = "fake-run"


@pytest.fixture(scope="module")
def scored_db(tmp_path_factory: pytest.TempPathFactory):
    """A 200-product catalogue with a stored run whose scores are logits (label-dependent, seeded)."""
    from workbench import store
    from workbench.data.evalsets import create_catalog_eval_set

    path = tmp_path_factory.mktemp("calibration") / "wb.duckdb"
    create_catalog_eval_set("mid", db=path, n_products=200, seed=1)
    with store.connect(path) as con:
        pairs = store.query_frame(con, "SELECT pair_id, split, label FROM pairs WHERE eval_set = 'mid' "
                                       "ORDER BY pair_id")
        rng = np.random.default_rng(0)
        pairs["score"] = 4.0 * pairs["label"] - 2.5 + rng.normal(scale=2.0, size=len(pairs))
        config = {"name": "fake", "seed": 0, "threshold": {"policy": "max_f1"}}
        con.execute("INSERT INTO runs (run_id, config_name, config, eval_set, seed, status, created_at) "
                    "VALUES (?, 'fake', ?, 'mid', 0, 'done', ?)", [RUN, json.dumps(config), datetime.now()])
        con.register("_s", pairs.assign(run_id=RUN)[["run_id", "pair_id", "split", "score"]])
        con.execute("INSERT INTO scores SELECT run_id, pair_id, split, score FROM _s")
    return path


@pytest.fixture
def db_copy(scored_db, tmp_path):
    target = tmp_path / "wb.duckdb"
    shutil.copy(scored_db, target)
    return target


def _split(db, split: str):
    from workbench import store

    with store.connect(db) as con:
        frame = store.query_frame(con, "SELECT s.score, p.label FROM scores s JOIN pairs p ON p.eval_set = 'mid' "
                                       "AND p.pair_id = s.pair_id WHERE s.run_id = ? AND s.split = ? ORDER BY "
                                       "s.pair_id", [RUN, split])
    return frame["label"].to_numpy(), frame["score"].to_numpy()


def test_stored_run_is_calibrated_on_val_and_measured_on_test(db_copy) -> None:
    from workbench.evaluation.aggregate import compute_metrics, load_calibrator, load_metrics
    from workbench.evaluation.results import get_artifact

    compute_metrics(RUN, db=db_copy, n_resamples=50)
    stored = get_artifact(RUN, "curves", db=db_copy)
    y_val, s_val = _split(db_copy, "val")
    y_test, s_test = _split(db_copy, "test")
    expected = fit_calibrator(y_val, s_val)
    assert stored["calibration"]["method"] == "platt" and stored["calibration"]["fitted_on"] == "val"
    assert stored["calibration"]["n_val"] == len(y_val)
    assert stored["calibration"]["params"] == pytest.approx(expected.params, rel=1e-12)
    probs = load_calibrator(RUN, db=db_copy).predict(s_test)
    metrics = load_metrics(RUN, db=db_copy).set_index("name")
    assert metrics.at["pair/brier", "value"] == pytest.approx(skm.brier_score_loss(y_test, probs), abs=1e-12)
    assert metrics.at["pair/ece", "value"] == pytest.approx(expected_calibration_error(y_test, probs), abs=1e-12)
    for name in ("pair/ece", "pair/brier", "pair/log_loss"):
        row = metrics.loc[name]
        assert row["ci_low"] < row["ci_high"] and row["n"] == len(y_test)
        if name != "pair/ece":  # means; the bootstrap of ECE is biased upward and need not contain it
            assert row["ci_low"] <= row["value"] <= row["ci_high"]
    assert sum(stored["reliability"]["count"]) == len(y_test)
    assert "platt calibrator fitted on the" in stored["policies"]["calibration"]


def test_calibrator_ignores_test_labels_and_follows_val_labels(db_copy) -> None:
    from workbench import store
    from workbench.evaluation.aggregate import compute_metrics, load_metrics
    from workbench.evaluation.results import get_artifact

    compute_metrics(RUN, db=db_copy, n_resamples=20)
    before = get_artifact(RUN, "curves", db=db_copy)["calibration"]
    ece_before = load_metrics(RUN, db=db_copy).set_index("name").at["pair/ece", "value"]
    with store.connect(db_copy) as con:
        con.execute("UPDATE pairs SET label = 1 - label WHERE eval_set = 'mid' AND split = 'test'")
    compute_metrics(RUN, db=db_copy, n_resamples=20)
    assert get_artifact(RUN, "curves", db=db_copy)["calibration"] == before  # test labels never reach the fit
    assert load_metrics(RUN, db=db_copy).set_index("name").at["pair/ece", "value"] != pytest.approx(ece_before)
    with store.connect(db_copy) as con:
        con.execute("UPDATE pairs SET label = 1 - label WHERE eval_set = 'mid' AND split = 'val'")
    compute_metrics(RUN, db=db_copy, n_resamples=20)
    assert get_artifact(RUN, "curves", db=db_copy)["calibration"]["params"]["slope"] < 0 < before["params"]["slope"]


def test_isotonic_is_chosen_by_config_or_argument(db_copy) -> None:
    from workbench.evaluation.aggregate import compute_metrics
    from workbench.evaluation.results import get_artifact

    compute_metrics(RUN, db=db_copy, n_resamples=10, threshold_options={"policy": "max_f1", "calibration": "isotonic"})
    stored = get_artifact(RUN, "curves", db=db_copy)["calibration"]
    y_val, s_val = _split(db_copy, "val")
    assert stored["method"] == "isotonic" and stored["params"] == fit_calibrator(y_val, s_val, method="isotonic").params
    compute_metrics(RUN, db=db_copy, n_resamples=10, calibration="platt")
    assert get_artifact(RUN, "curves", db=db_copy)["calibration"]["method"] == "platt"
    with pytest.raises(ValueError, match=r"calibration='temperature' is not supported; allowed: \['platt', "):
        compute_metrics(RUN, db=db_copy, n_resamples=10, calibration="temperature")


def test_config_rejects_an_unknown_calibration() -> None:
    from workbench.config import ConfigError, config_from_dict

    base = {"image_encoder": {"type": "keyword_image"}, "text_encoder": {"type": "keyword_text"},
            "fusion": {"type": "cosine"}}
    assert config_from_dict({**base, "threshold": {"calibration": "isotonic"}}).threshold["calibration"] == "isotonic"
    with pytest.raises(ConfigError, match="Unknown calibration 'beta'"):
        config_from_dict({**base, "threshold": {"calibration": "beta"}})


def test_slice_metrics_carry_counts_intervals_and_the_too_few_flag(db_copy) -> None:
    from workbench import store
    from workbench.evaluation.aggregate import MIN_SLICE_NEGATIVES, MIN_SLICE_POSITIVES, compute_metrics, load_metrics

    compute_metrics(RUN, db=db_copy, n_resamples=50)
    slices = load_metrics(RUN, db=db_copy, slices=True)
    pair = slices[slices["name"].isin(["pair/accuracy", "pair/roc_auc"]) & (slices["slice_kind"] != "all")]
    with store.connect(db_copy) as con:
        test = store.query_frame(con, """
            SELECT p.label, p.pair_kind, pr.category FROM pairs p
            JOIN images i ON i.eval_set = p.eval_set AND i.image_id = p.image_id
            LEFT JOIN products pr ON pr.eval_set = p.eval_set AND pr.product_id = i.product_id
            WHERE p.eval_set = 'mid' AND p.split = 'test'""")
    n_pos_all = int(test["label"].sum())
    for row in pair[pair["slice_kind"].isin(["category", "pair_kind"])].itertuples():
        if row.slice_kind == "category":
            part = test[test["category"] == row.slice_value]
            expected = (int(part["label"].sum()), int((part["label"] == 0).sum()))
        elif row.slice_value == "positive":
            expected = (n_pos_all, 0)
        else:  # every test positive against this kind of negative
            expected = (n_pos_all, int((test["pair_kind"] == row.slice_value).sum()))
        assert (row.n_pos, row.n_neg) == expected, row
    small = (pair["n_pos"] < MIN_SLICE_POSITIVES) | (pair["n_neg"] < MIN_SLICE_NEGATIVES)
    assert (pair["too_few"] == small).all()
    assert pair["too_few"].any() and (~pair["too_few"]).any()  # this catalogue has slices of both kinds
    auc = pair[(pair["name"] == "pair/roc_auc") & pair["n_neg"].gt(0)]
    assert auc["ci_low"].notna().all()
    assert (auc["ci_low"] <= auc["value"]).all() and (auc["value"] <= auc["ci_high"]).all()
    other = slices[~slices["name"].str.startswith("pair/")]
    assert other["n_pos"].isna().all() and not other["too_few"].any()  # counts are about pairs only
