"""A run's metrics from its stored per-item results (long format in DuckDB): pair metrics with val-chosen thresholds
and a val-fitted calibrator, slices, retrieval and zero-shot aggregates, gallery curves and joint-space diagnostics.

Reads only what the run stored (scores, ``run_artifacts``); :func:`compute_metrics` can be re-run for old runs
(e.g. excluding pairs marked as label errors). Nothing here runs a model.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from workbench import store
from workbench.evaluation.results import get_artifact, put_artifact, scored_pairs
from workbench.metrics import (
    bootstrap_ci,
    bootstrap_pair_metrics,
    choose_threshold,
    confusion_counts,
    metric_view,
    pair_metrics,
    pr_curve_points,
    reliability_curve,
    roc_curve_points,
    zeroshot_metrics_from_ranks,
)
from workbench.metrics.calibration import (
    CALIBRATION_METHODS,
    Calibrator,
    bootstrap_calibration_metrics,
    calibrator_from_dict,
    fit_calibrator,
)
from workbench.metrics.classification import UNDEFINED_POLICIES as PAIR_POLICIES
from workbench.metrics.retrieval import UNDEFINED_POLICIES as RETRIEVAL_POLICIES
from workbench.metrics.zeroshot import UNDEFINED_POLICIES as ZEROSHOT_POLICIES

N_RESAMPLES = 1000
SLICE_METRICS = tuple(name.removeprefix("pair/") for name in metric_view("slice"))  # bootstrap keys
# The one declaration of "too few pairs": a slice with fewer test positives or negatives than these is shown
# greyed and never ranked among the worst (its metrics swing by chance; n ≈ 85 slices were ranked worst).
MIN_SLICE_POSITIVES = 30
MIN_SLICE_NEGATIVES = 30
CALIBRATION_BINS = 10  # equal-width probability bins of pair/ece and the reliability diagram


def _thresholds(val: pd.DataFrame, options: dict) -> tuple[float, dict[str, float]]:
    kwargs = {k: options[k] for k in ("target", "cost_fp", "cost_fn") if k in options}
    policy = options.get("policy", "max_f1")
    global_t = choose_threshold(val["label"].to_numpy(), val["score"].to_numpy(), policy=policy, **kwargs)
    per_category: dict[str, float] = {}
    if options.get("per_category"):
        for category, group in val.groupby("category"):
            if group["label"].nunique() == 2:
                per_category[str(category)] = choose_threshold(group["label"].to_numpy(), group["score"].to_numpy(),
                                                                policy=policy, **kwargs)
    return float(global_t), per_category


def apply_thresholds(frame: pd.DataFrame, global_t: float, per_category: dict[str, float]) -> np.ndarray:
    thresholds = frame["category"].astype(str).map(per_category).fillna(global_t).to_numpy(dtype=float)
    return thresholds


def compute_metrics(run_id: str, *, db=None, threshold_options: dict | None = None, seed: int | None = None,
                    exclude_label_errors: bool = False, n_resamples: int = N_RESAMPLES,
                    calibration: str | None = None) -> pd.DataFrame:
    """(Re)compute every metric of a run from its stored per-item results; store and return them (long format).

    Thresholds and the score → probability calibrator (``calibration``: "platt" or "isotonic", else the
    config's ``threshold.calibration``, default "platt") are fitted on val and applied to test; ECE, Brier, log
    loss and the reliability diagram are measured on the calibrated test probabilities. CIs: percentile
    bootstrap resampling products, seeded with the run's seed unless ``seed`` is given; slice metrics too.
    """
    with store.connect(db) as con:
        run = con.execute("SELECT config FROM runs WHERE run_id = ?", [run_id]).fetchone()
        if run is None:
            raise KeyError(f"Run {run_id!r} not found.")
        stored_config = json.loads(run[0])
        options = threshold_options or stored_config.get("threshold", {"policy": "max_f1"})
        seed = stored_config.get("seed", 0) if seed is None else seed  # the run's own seed: same resamples
        pairs = scored_pairs(con, run_id, exclude_label_errors=exclude_label_errors)
        artifacts = dict(con.execute("SELECT kind, payload FROM run_artifacts WHERE run_id = ?", [run_id]).fetchall())
        attributes = store.query_frame(
            con, "SELECT a.product_id, a.name, a.value FROM attributes a JOIN runs r ON r.eval_set = a.eval_set "
            "WHERE r.run_id = ?", [run_id])
        n_excluded = con.execute(
            "SELECT count(*) FROM label_errors le JOIN runs r ON r.eval_set = le.eval_set WHERE r.run_id = ?",
            [run_id]).fetchone()[0] if exclude_label_errors else 0
    val, test = pairs[pairs["split"] == "val"], pairs[pairs["split"] == "test"]
    if val["label"].nunique() < 2 or test["label"].nunique() < 2:
        raise ValueError("Both val and test splits need positive and negative pairs to compute pair metrics.")
    global_t, per_category = _thresholds(val, options)
    method = calibration or options.get("calibration", "platt")
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration={method!r} is not supported; allowed: {list(CALIBRATION_METHODS)}")
    calibrator = fit_calibrator(val["label"].to_numpy(), val["score"].to_numpy(), method=method)
    t_test = apply_thresholds(test, global_t, per_category)
    y, s = test["label"].to_numpy(), test["score"].to_numpy()
    groups = test["product_id"].astype(str).to_numpy()
    rows: list[tuple] = []

    def add(name: str, value, low=None, high=None, *, kind="all", slice_value="all", n=None) -> None:
        rows.append((run_id, name, kind, str(slice_value), optional_float(value), optional_float(low),
                     optional_float(high), n))

    cis = bootstrap_pair_metrics(y, s, threshold=global_t, groups=groups, n_resamples=n_resamples, seed=seed)
    shifted = s - t_test  # per-category thresholds become one threshold at 0
    if per_category:
        by_threshold = bootstrap_pair_metrics(y, shifted, threshold=0.0, groups=groups, n_resamples=n_resamples,
                                              seed=seed)
        cis.update({k: v for k, v in by_threshold.items() if k not in ("roc_auc", "pr_auc")})
    point = pair_metrics(y, shifted, threshold=0.0)
    point.update({k: v for k, v in pair_metrics(y, s, threshold=global_t).items() if k in ("roc_auc", "pr_auc")})
    for name, value in point.items():
        if name in ("brier", "log_loss"):
            continue  # probability metrics are measured on the calibrated probabilities, below
        low, high = cis[name][1:] if name in cis else (None, None)
        add(f"pair/{name}", value, low, high, n=len(y))
    probs = calibrator.predict(s)
    for name, (value, low, high) in bootstrap_calibration_metrics(
            y, probs, groups=groups, n_bins=CALIBRATION_BINS, n_resamples=n_resamples, seed=seed).items():
        add(f"pair/{name}", value, low, high, n=len(y))
    add("pair/threshold", global_t, n=len(val))

    for name, values in attributes.groupby("name"):  # imported metadata (attr.* columns) as slices
        test = test.assign(**{f"attr.{name}": test["product_id"].map(dict(zip(values["product_id"], values["value"],
                                                                              strict=True)))})
    slice_columns = ["category", "pair_kind", "language", "swapped_attribute",
                     *(f"attr.{n}" for n in sorted(attributes["name"].unique()))]
    counts = [{"slice_kind": "all", "slice_value": "all", "n_pos": int(y.sum()), "n_neg": int(len(y) - y.sum())}]
    for kind in slice_columns:
        for value, group in test.groupby(kind, dropna=True):
            if kind in ("pair_kind", "swapped_attribute") and value != "positive":
                group = pd.concat([test[test["label"] == 1], group])  # positives vs this kind of negative
            yy, ss = group["label"].to_numpy(), group["score"].to_numpy() - apply_thresholds(group, global_t,
                                                                                             per_category)
            n_pos = int(yy.sum())
            counts.append({"slice_kind": kind, "slice_value": str(value), "n_pos": n_pos, "n_neg": len(yy) - n_pos})
            boot = bootstrap_pair_metrics(yy, ss, threshold=0.0, groups=group["product_id"].astype(str).to_numpy(),
                                          n_resamples=n_resamples, seed=seed)
            for name in SLICE_METRICS if 0 < n_pos < len(yy) else ("accuracy",):  # one class: accuracy only
                add(f"pair/{name}", *boot[name], kind=kind, slice_value=value, n=len(group))

    for direction in ("t2i", "i2t"):
        payload = json.loads(artifacts[f"retrieval/{direction}"]) if f"retrieval/{direction}" in artifacts else None
        if not payload:
            continue
        per_query = {k: np.asarray(v, dtype=float) for k, v in payload["per_query"].items()
                     if k not in ("group", "item_idx")}
        qgroups = np.asarray(payload["per_query"]["group"])
        has_pos = per_query["n_positives"] > 0
        for key, values in per_query.items():
            if key in ("n_positives", "first_rank"):
                continue
            name = {"reciprocal_rank": "mrr", "ap": "map"}.get(key, key)
            value, low, high = bootstrap_ci(np.mean, (values[has_pos],), groups=qgroups[has_pos],
                                            n_resamples=n_resamples, seed=seed)
            add(f"{direction}/{name}", value, low, high, n=int(has_pos.sum()))
        ranks = per_query["first_rank"][has_pos]
        add(f"{direction}/median_rank", float(np.median(ranks)), n=len(ranks))
        add(f"{direction}/mean_rank", float(np.mean(ranks)), n=len(ranks))
        add(f"{direction}/n_queries_without_positive", int(payload["n_without_positive"]), n=len(has_pos))

    if "zeroshot" in artifacts:
        zs = json.loads(artifacts["zeroshot"])
        for lang, res in zs["by_language"].items():
            rank, truth = np.asarray(res["rank"], dtype=float), np.asarray(res["truth"], dtype=np.int64)
            kind, value = ("all", "all") if lang == "en" else ("language", lang)
            for k in (1, 5):
                v, lo, hi = bootstrap_ci(lambda r, t, k=k: zeroshot_metrics_from_ranks(r, t, ks=(k,))[f"acc@{k}"],
                                         (rank, truth), groups=res.get("group"), n_resamples=n_resamples, seed=seed)
                add(f"zeroshot/acc@{k}", v, lo, hi, kind=kind, slice_value=value, n=len(rank))
            add("zeroshot/mean_per_class_recall",
                zeroshot_metrics_from_ranks(rank, truth, ks=(1,))["mean_per_class_recall"], kind=kind,
                slice_value=value, n=len(rank))
    if "gallery_curves" in artifacts:
        for mode, rows_by_size in json.loads(artifacts["gallery_curves"]).items():
            for size, row in rows_by_size.items():
                for key in ("success@1", "success@5", "mrr"):
                    add(f"t2i/{key}", row[key], kind=f"gallery_{mode}", slice_value=size, n=row["n_queries"])
    if "diagnostics" in artifacts:
        for name, value in json.loads(artifacts["diagnostics"]).items():
            if name.startswith("diag/"):
                add(name, value)

    frame = pd.DataFrame(rows, columns=["run_id", "name", "slice_kind", "slice_value", "value", "ci_low", "ci_high",
                                        "n"])
    curves = {
        "roc": roc_curve_points(y, s), "pr": pr_curve_points(y, s),
        "reliability": reliability_curve(y, probs, n_bins=CALIBRATION_BINS),
        "calibration": {**calibrator.to_dict(), "fitted_on": "val", "n_val": len(val),
                        "n_val_positives": int(val["label"].sum())},
        "threshold": global_t, "per_category_thresholds": per_category, "threshold_options": options,
        "policies": {**PAIR_POLICIES, **RETRIEVAL_POLICIES, **ZEROSHOT_POLICIES,
                     "bootstrap": f"{n_resamples} percentile-bootstrap resamples of products, seed {seed}",
                     "calibration": f"{method} calibrator fitted on the {len(val)} val pairs maps scores to match "
                     f"probabilities; pair/ece ({CALIBRATION_BINS} equal-width bins), pair/brier, pair/log_loss and "
                     "the reliability diagram are measured on test",
                     "slices": "slice metrics carry their positives and negatives (n_pos, n_neg) and product-"
                     f"bootstrap CIs; fewer than {MIN_SLICE_POSITIVES} positives or {MIN_SLICE_NEGATIVES} negatives "
                     "is flagged 'too few pairs' (greyed, never ranked among the worst)",
                     "label_errors": f"{n_excluded} pairs marked as label errors excluded" if exclude_label_errors
                     else "pairs marked as label errors are included"},
        "computed_at": datetime.now().isoformat(timespec="seconds"),
    }
    with store.connect(db) as con, store.transaction(con):
        con.execute("DELETE FROM metrics WHERE run_id = ?", [run_id])
        store.insert_frame(con, "metrics", frame)
        put_artifact(con, run_id, "curves", curves)
        put_artifact(con, run_id, "slice_counts", {"rows": counts})
    with store.connect(db) as con:  # outside the transaction: the run's heartbeat may update the same row
        store.execute_retrying(con, "UPDATE runs SET threshold = ? WHERE run_id = ?", [global_t, run_id])
    return frame


def optional_float(value) -> float | None:
    """A stored metric value: None for missing and NaN."""
    if value is None:
        return None
    value = float(value)
    return None if np.isnan(value) else value


def load_metrics(run_id: str, *, db=None, slices: bool = False) -> pd.DataFrame:
    """A run's metrics: headline (slice 'all') by default, or every slice.

    Columns: name, slice_kind, slice_value, value, ci_low, ci_high, n (pairs), and for pair metrics n_pos and
    n_neg (test positives and negatives behind the value; <NA> for other families and for runs computed before
    counts were stored) and too_few (fewer than ``MIN_SLICE_POSITIVES`` positives or ``MIN_SLICE_NEGATIVES``
    negatives).
    """
    with store.connect(db) as con:
        if not con.execute("SELECT count(*) FROM runs WHERE run_id = ?", [run_id]).fetchone()[0]:
            raise KeyError(f"Run {run_id!r} not found. See `python -m workbench runs`.")
        sql = "SELECT name, slice_kind, slice_value, value, ci_low, ci_high, n FROM metrics WHERE run_id = ?"
        if not slices:
            sql += " AND slice_kind = 'all'"
        frame = store.query_frame(con, sql + " ORDER BY slice_kind, slice_value, name", [run_id])
        stored = con.execute("SELECT payload FROM run_artifacts WHERE run_id = ? AND kind = 'slice_counts'",
                             [run_id]).fetchone()
    counts = pd.DataFrame(json.loads(stored[0])["rows"] if stored else [],
                          columns=["slice_kind", "slice_value", "n_pos", "n_neg"])
    out = frame.merge(counts.astype({"n_pos": "Int64", "n_neg": "Int64"}), on=["slice_kind", "slice_value"],
                      how="left")
    is_pair = out["name"].str.startswith("pair/") & (out["name"] != "pair/threshold")
    out.loc[~is_pair, ["n_pos", "n_neg"]] = pd.NA
    small = (out["n_pos"] < MIN_SLICE_POSITIVES) | (out["n_neg"] < MIN_SLICE_NEGATIVES)
    out["too_few"] = small.fillna(False).astype(bool)
    return out


def load_calibrator(run_id: str, *, db=None) -> Calibrator | None:
    """The run's val-fitted score → probability calibrator (None for metrics computed before calibration)."""
    stored = (get_artifact(run_id, "curves", db=db) or {}).get("calibration")
    return calibrator_from_dict(stored) if stored else None


# ---------------------------------------------------------------------------------------------- operating point
def operating_point(y: Any, scores: Any, threshold: float) -> dict[str, float | int]:
    """Precision, recall, F1, accuracy and confusion counts (tp, fp, tn, fn) at ``score >= threshold``."""
    m = pair_metrics(y, scores, threshold=threshold)
    counts = confusion_counts(y, scores, threshold=threshold)
    return {"threshold": float(threshold), **{k: m[k] for k in ("precision", "recall", "f1", "accuracy")},
            **counts}


def cost_threshold(y: Any, scores: Any, cost_fp: float, cost_fn: float) -> dict[str, float | int]:
    """The threshold minimising ``cost_fp * FP + cost_fn * FN`` with its total cost and operating point."""
    threshold = choose_threshold(y, scores, policy="cost", cost_fp=cost_fp, cost_fn=cost_fn)
    point = operating_point(y, scores, threshold)
    return {**point, "cost": float(cost_fp * point["fp"] + cost_fn * point["fn"])}
