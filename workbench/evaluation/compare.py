"""Comparisons between runs on one eval set: leaderboard with CIs, clustered paired tests, flips, and the tables
pages and reports show of them. Reads stored scores and metrics only."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from workbench import store
from workbench.data.grouping import content_groups
from workbench.data.model import EvalSetData
from workbench.evaluation.aggregate import N_RESAMPLES, load_metrics, optional_float
from workbench.evaluation.results import load_scored_pairs, scored_pairs
from workbench.metrics import HEADLINE_METRICS, delong_test, holm, mcnemar, metric_view, pair_metrics, paired_bootstrap

PAIRED_TEST_METRICS = metric_view("paired_tests")
P_VALUE_FLOOR = 1e-4


def _test_frame(con, run_id: str) -> pd.DataFrame:
    return scored_pairs(con, run_id).query("split == 'test'").set_index("pair_id")


def _pair_clusters(con, eval_set: str, product_ids: pd.Series) -> np.ndarray:
    """Cluster of every pair for the paired tests: the content group of its image's product.

    Products sharing image bytes or a normalised title (:func:`workbench.data.grouping.content_groups`) are one
    unit, so reseller copies count once; a product outside every group is its own cluster.
    """
    def read(sql: str) -> pd.DataFrame:
        return store.query_frame(con, sql, [eval_set])

    data = EvalSetData(products=read("SELECT product_id, category FROM products WHERE eval_set = ?"),
                       images=read("SELECT product_id, sha256 FROM images WHERE eval_set = ?"),
                       texts=read("SELECT product_id, text FROM texts WHERE eval_set = ?"))
    ids = product_ids.astype(str)
    return ids.map(content_groups(data)).fillna(ids).to_numpy()


def compare_runs(run_ids: list[str], *, db=None, baseline: str | None = None, n_resamples: int = N_RESAMPLES,
                 seed: int = 0) -> dict:
    """Leaderboard with CIs plus paired tests of each run against the baseline on the same test pairs.

    The unit of every test is the content group of the image's product (``n_clusters`` of them; pairs of one
    product are correlated): paired bootstrap resampling those clusters for F1/PR-AUC, clustered McNemar
    (Durkalski et al. 2003) for accuracy at each run's own val-chosen threshold, clustered DeLong (Obuchowski
    1997) for ROC-AUC; p-values Holm-corrected across the runs compared to the baseline.
    """
    if len(run_ids) < 1:
        raise ValueError("compare needs at least one run id")
    baseline = baseline or run_ids[0]
    if baseline not in run_ids:
        run_ids = [baseline, *run_ids]
    with store.connect(db) as con:
        info = store.query_frame(
            con, "SELECT run_id, config_name, eval_set, threshold, status FROM runs WHERE list_contains(?, run_id)",
            [run_ids]).set_index("run_id")
        missing = [r for r in run_ids if r not in info.index]
        if missing:
            raise KeyError(f"Run(s) not found: {missing}")
        if info["eval_set"].nunique() > 1:
            raise ValueError(f"Runs are on different eval sets {sorted(info['eval_set'].unique())}; "
                             "paired comparison needs the same pairs.")
        frames = {r: _test_frame(con, r) for r in run_ids}
        clusters = _pair_clusters(con, str(info["eval_set"].iloc[0]), frames[baseline]["product_id"])
    n_clusters = int(np.unique(clusters).shape[0])
    metrics = {r: load_metrics(r, db=db).set_index("name") for r in run_ids}
    names = [n for n in HEADLINE_METRICS if all(n in metrics[r].index for r in run_ids)]  # the leaderboard view
    table = []
    for r in run_ids:
        row = {"run_id": r, "config": info.at[r, "config_name"], "baseline": r == baseline}
        for n in names:
            m = metrics[r].loc[n]
            row[n] = optional_float(m["value"])
            row[f"{n} CI"] = [optional_float(m["ci_low"]), optional_float(m["ci_high"])]
        table.append(row)
    base = frames[baseline]
    tests = []
    for r in run_ids:
        if r == baseline:
            continue
        other = frames[r].reindex(base.index)
        y = base["label"].to_numpy()
        sa, sb = other["score"].to_numpy(), base["score"].to_numpy()
        ta, tb = float(info.at[r, "threshold"]), float(info.at[baseline, "threshold"])
        correct_a, correct_b = (sa >= ta) == y, (sb >= tb) == y
        entry = {"run_id": r, "baseline": baseline}
        for name, fn in (("pair/f1", lambda yy, ss, t: pair_metrics(yy, ss, threshold=t)["f1"]),
                         ("pair/pr_auc", lambda yy, ss, t: pair_metrics(yy, ss, threshold=t)["pr_auc"])):
            boot = paired_bootstrap(lambda yy, ss, f=fn: f(yy, ss, 0.0), y, sa - ta, sb - tb, groups=clusters,
                                    n_resamples=n_resamples, seed=seed)
            entry[name] = {"test": "paired bootstrap", **boot, "n_clusters": n_clusters}
        mc = mcnemar(correct_a, correct_b, groups=clusters)
        entry["pair/accuracy"] = {"test": "McNemar", "delta": float(correct_a.mean() - correct_b.mean()), **mc}
        dl = delong_test(y, sa, sb, groups=clusters)
        entry["pair/roc_auc"] = {"test": "DeLong", **dl}
        tests.append(entry)
    for name in PAIRED_TEST_METRICS:
        if tests:
            adjusted = holm([t[name]["p_value"] for t in tests])
            for t, p in zip(tests, adjusted, strict=True):
                t[name]["p_holm"] = float(p)
    flips = _flips(frames, info, baseline)
    return {"baseline": baseline, "metrics": names, "table": table, "tests": tests, "flips": flips,
            "n_clusters": n_clusters, "n_test_pairs": int(clusters.shape[0])}


def _flips(frames: dict, info: pd.DataFrame, baseline: str) -> dict:
    base = frames[baseline]
    tb = float(info.at[baseline, "threshold"])
    base_correct = (base["score"] >= tb) == base["label"]
    out = {}
    for r, frame in frames.items():
        if r == baseline:
            continue
        other = frame.reindex(base.index)
        correct = (other["score"] >= float(info.at[r, "threshold"])) == other["label"]
        out[r] = {"right_here_wrong_baseline": base.index[correct & ~base_correct].tolist(),
                  "wrong_here_right_baseline": base.index[~correct & base_correct].tolist()}
    return out


def run_label(run: dict | pd.Series) -> str:
    """The one human label of a run: ``[name · ]config · eval set · run id`` (a run list row or a run record);
    runs of two eval sets never look alike, and a name given to a run leads."""
    name = run.get("name")
    parts = [name if isinstance(name, str) and name else None, run.get("config") or run.get("config_name") or "?",
             run.get("eval_set") or None, run["run_id"]]
    return " · ".join(str(part) for part in parts if part is not None and not pd.isna(part))


def slice_metrics(run_labels: dict[str, str], *, db=None) -> pd.DataFrame:
    """Every run's metrics, all slices, long format with a ``run`` column holding the label (for heatmaps).

    Pair metrics carry ``n_pos``/``n_neg`` and ``too_few`` (below the stated minimum of positives or negatives,
    see :data:`workbench.evaluation.aggregate.MIN_SLICE_POSITIVES`): such slices are shown greyed and never ranked
    worst.
    """
    frames = [load_metrics(r, db=db, slices=True).assign(run=label, run_id=r) for r, label in run_labels.items()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["name", "slice_kind", "slice_value", "value", "ci_low", "ci_high", "n", "n_pos", "n_neg", "too_few",
                 "run", "run_id"])


def pair_details(run_id: str, pair_ids: list[str], *, db=None) -> pd.DataFrame:
    """Image, text, label, category, pair kind and this run's score of the given pairs (for flip galleries)."""
    frame = load_scored_pairs(run_id, db=db, split=None)
    return frame[frame["pair_id"].isin(pair_ids)].reset_index(drop=True)


def leaderboard_frame(comparison: dict, labels: dict[str, str]) -> pd.DataFrame:
    """``compare_runs`` output as one row per run: metric values, "[low, high]" CIs and Holm p-values."""
    tests = {t["run_id"]: t for t in comparison["tests"]}
    rows = []
    for row in comparison["table"]:
        out: dict[str, Any] = {"run": labels.get(row["run_id"], row["run_id"]),
                               "baseline": "✓" if row["baseline"] else ""}
        for name in comparison["metrics"]:
            out[name] = row.get(name)
            low, high = row.get(f"{name} CI") or (None, None)
            out[f"{name} 95% CI"] = "" if low is None else f"[{low:.3f}, {high:.3f}]"
        for name in ("pair/f1", "pair/accuracy", "pair/roc_auc"):
            test = tests.get(row["run_id"], {}).get(name)
            out[f"{name} Δ vs baseline"] = test.get("delta") if test else None
            out[f"{name} p (Holm)"] = format_p_value(test.get("p_holm")) if test else ""
        rows.append(out)
    return pd.DataFrame(rows)


def format_p_value(p: float | None) -> str:
    """A p-value for display: "< 1e-4" below that floor, else 4 decimals ("" when there is none).

    Normal and chi-square tails far below 1e-4 rest on approximations (and, across products, on few clusters)
    that do not hold to those digits, so smaller values are not printed as if they were exact.
    """
    if p is None or pd.isna(p):
        return ""
    return "< 1e-4" if p < P_VALUE_FLOOR else f"{p:.4f}"


def paired_tests_frame(comparison: dict, labels: dict[str, str] | None = None) -> pd.DataFrame:
    """``compare_runs`` paired tests as one row per (run, metric): test, clusters, Δ, p and Holm p as text.

    ``clusters`` is the number of independent units (content groups of products) the test treated as such.
    """
    labels = labels or {}
    rows = []
    for test in comparison["tests"]:
        for name in PAIRED_TEST_METRICS:
            t = test.get(name) or {}
            p_holm = t.get("p_holm")
            rows.append({"run": labels.get(test["run_id"], test["run_id"]), "metric": name, "test": t.get("test"),
                         "clusters": t.get("n_clusters"),
                         "Δ vs baseline": t.get("delta"), "p": format_p_value(t.get("p_value")),
                         "p (Holm)": format_p_value(p_holm),
                         "significant (5%)": "" if p_holm is None else "yes" if p_holm < 0.05 else "no"})
    return pd.DataFrame(rows, columns=["run", "metric", "test", "clusters", "Δ vs baseline", "p", "p (Holm)",
                                       "significant (5%)"])
