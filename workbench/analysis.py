"""Error analysis of stored runs: mismatch galleries, retrieval failures, label errors, operating points.

No Streamlit here; pages call these functions and render the frames they return. Thresholds are the run's own
(chosen on val; per-category ones from its ``curves`` artifact where the config asked for them).
"""

from __future__ import annotations

import difflib
import json
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from workbench import store
from workbench.metrics import choose_threshold, confusion_counts, pair_metrics

MISMATCH_KINDS = ("false_positive", "false_negative", "hardest_negative")
MISMATCH_SORTS = ("score", "margin", "category", "pair_id")
DIRECTIONS = ("t2i", "i2t")
MISMATCH_COLUMNS = ("pair_id", "image_id", "text_id", "image_path", "text", "language", "label", "score", "threshold",
                    "category", "pair_kind", "swapped_attribute", "original_text", "marked_label_error", "note")


def _check(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; allowed: {list(allowed)}")


def _run_info(con, run_id: str) -> tuple[str, float, dict[str, float]]:
    row = con.execute("SELECT eval_set, threshold FROM runs WHERE run_id = ?", [run_id]).fetchone()
    if row is None:
        raise KeyError(f"Run {run_id!r} not found. See `python -m workbench runs`.")
    eval_set, threshold = row
    if threshold is None:
        raise ValueError(f"Run {run_id!r} has no threshold yet (not finished?).")
    art = con.execute("SELECT payload FROM run_artifacts WHERE run_id = ? AND kind = 'curves'", [run_id]).fetchone()
    per_category = (json.loads(art[0]).get("per_category_thresholds") or {}) if art else {}
    return eval_set, float(threshold), {str(k): float(v) for k, v in per_category.items()}


_PAIRS_SQL = """
    SELECT s.pair_id, p.image_id, p.text_id, i.path AS image_path, t.text, t.language, p.label::INTEGER AS label,
           s.score, pr.category, p.pair_kind, p.swapped_attribute, i.product_id AS image_product, s.split,
           le.pair_id IS NOT NULL AS marked_label_error, le.note
    FROM scores s
    JOIN pairs p ON p.eval_set = ? AND p.pair_id = s.pair_id
    JOIN images i ON i.eval_set = p.eval_set AND i.image_id = p.image_id
    JOIN texts t ON t.eval_set = p.eval_set AND t.text_id = p.text_id
    LEFT JOIN products pr ON pr.eval_set = p.eval_set AND pr.product_id = i.product_id
    LEFT JOIN label_errors le ON le.eval_set = p.eval_set AND le.pair_id = s.pair_id
    WHERE s.run_id = ?
"""


def load_scored_pairs(run_id: str, *, db=None, split: str | None = "test") -> pd.DataFrame:
    """A run's scored pairs of one split (or all) with label, category, pair kind, label-error mark and threshold."""
    with store.connect(db) as con:
        eval_set, threshold, per_category = _run_info(con, run_id)
        sql, args = _PAIRS_SQL, [eval_set, run_id]
        if split:
            sql += " AND s.split = ?"
            args.append(split)
        frame = store.query_frame(con, sql + " ORDER BY s.pair_id", args)
    frame["threshold"] = frame["category"].astype(object).map(per_category).fillna(threshold).astype(float)
    frame["marked_label_error"] = frame["marked_label_error"].astype(bool)
    return frame


def _original_texts(con, eval_set: str, rows: pd.DataFrame) -> pd.Series:
    """For attribute-swap negatives: the product text the swap was made from (most similar same-language text)."""
    out = pd.Series([None] * len(rows), index=rows.index, dtype=object)
    swaps = rows[rows["pair_kind"] == "attribute"]
    if swaps.empty:
        return out
    candidates = store.query_frame(
        con, "SELECT product_id, language, text FROM texts WHERE eval_set = ? AND list_contains(?, product_id)",
        [eval_set, sorted(set(swaps["image_product"].dropna().astype(str)))])
    for idx, row in swaps.iterrows():
        pool = candidates[(candidates["product_id"] == row["image_product"])
                          & (candidates["language"].astype(str) == str(row["language"]))]["text"].tolist()
        if not pool:
            continue
        ratios = [difflib.SequenceMatcher(None, str(row["text"]), c).ratio() for c in pool]
        best = int(np.argmax(ratios))
        if ratios[best] >= 0.5 and pool[best] != row["text"]:
            out[idx] = pool[best]
    return out


def mismatches(run_id: str, *, db=None, kind: str = "false_positive", split: str = "test",
               category: str | None = None, pair_kind: str | None = None, sort: str = "score", limit: int = 50,
               offset: int = 0, include_label_errors: bool = True) -> pd.DataFrame:
    """Misclassified (or hardest) pairs of a run, worst first.

    ``false_positive``: label 0 with score >= threshold; ``false_negative``: label 1 with score < threshold;
    ``hardest_negative``: label 0 pairs by descending score whatever the threshold. ``sort``: ``score`` (most
    confident mistakes first), ``margin`` (furthest from the threshold), ``category`` or ``pair_id``.
    """
    _check("kind", kind, MISMATCH_KINDS)
    _check("sort", sort, MISMATCH_SORTS)
    if limit < 0 or offset < 0:
        raise ValueError(f"limit={limit!r} and offset={offset!r} must be >= 0")
    frame = load_scored_pairs(run_id, db=db, split=split)
    if kind == "false_positive":
        frame = frame[(frame["label"] == 0) & (frame["score"] >= frame["threshold"])]
    elif kind == "false_negative":
        frame = frame[(frame["label"] == 1) & (frame["score"] < frame["threshold"])]
    else:
        frame = frame[frame["label"] == 0]
    if category:
        frame = frame[frame["category"] == category]
    if pair_kind:
        frame = frame[frame["pair_kind"] == pair_kind]
    if not include_label_errors:
        frame = frame[~frame["marked_label_error"]]
    worst_high = kind != "false_negative"
    if sort == "score":
        frame = frame.sort_values(["score", "pair_id"], ascending=[not worst_high, True])
    elif sort == "margin":
        frame = frame.assign(_m=(frame["score"] - frame["threshold"]).abs()).sort_values(
            ["_m", "pair_id"], ascending=[False, True]).drop(columns="_m")
    else:
        frame = frame.sort_values([sort, "pair_id"] if sort != "pair_id" else ["pair_id"])
    page = frame.iloc[offset:offset + limit].copy()
    with store.connect(db) as con:
        eval_set = _run_info(con, run_id)[0]
        page["original_text"] = _original_texts(con, eval_set, page)
    return page[list(MISMATCH_COLUMNS)].reset_index(drop=True)


def count_mismatches(run_id: str, *, db=None, split: str = "test") -> dict[str, int]:
    """How many false positives / false negatives / negatives a run has on a split."""
    frame = load_scored_pairs(run_id, db=db, split=split)
    above = frame["score"] >= frame["threshold"]
    return {"false_positive": int(((frame["label"] == 0) & above).sum()),
            "false_negative": int(((frame["label"] == 1) & ~above).sum()),
            "hardest_negative": int((frame["label"] == 0).sum())}


# ------------------------------------------------------------------------------------------ retrieval failures
def _ordered_ids(con, eval_set: str, modality: str) -> pd.DataFrame:
    table, key = ("images", "image_id") if modality == "image" else ("texts", "text_id")
    extra = "path AS image_path, NULL AS text" if modality == "image" else "NULL AS image_path, text"
    return store.query_frame(con, f"SELECT {key} AS item_id, product_id, {extra} FROM {table} WHERE eval_set = ? "
                                  f"ORDER BY {key}", [eval_set])


def _rank_value(rank: float) -> int | float:
    """A stored rank as shown: whole under the pessimistic and optimistic policies, fractional under 'average'."""
    return int(rank) if float(rank).is_integer() else float(rank)


def retrieval_failures(run_id: str, *, direction: str = "t2i", db=None, k: int = 5, limit: int = 20) -> list[dict]:
    """Queries whose first relevant item is not ranked first, worst first, each with the run's own top k.

    ``first_rank`` (the true item's rank) and ``results`` (the top k) come from one ranking: the one the run's
    evaluation computed with the metrics package from its head's scores and stored with the run, under its tie
    policy (``ties``). So when ``first_rank <= k`` the result at that position is the first relevant one, and
    otherwise no result is relevant. ``method`` says how the run scored the gallery.
    """
    _check("direction", direction, DIRECTIONS)
    if k < 1 or limit < 0:
        raise ValueError(f"k={k!r} must be >= 1 and limit={limit!r} >= 0")
    q_mod, g_mod = ("text", "image") if direction == "t2i" else ("image", "text")
    with store.connect(db) as con:
        eval_set = _run_info(con, run_id)[0]
        art = con.execute("SELECT payload FROM run_artifacts WHERE run_id = ? AND kind = ?",
                          [run_id, f"retrieval/{direction}"]).fetchone()
        if art is None:
            raise ValueError(f"Run {run_id!r} has no stored {direction} retrieval results.")
        payload = json.loads(art[0])
        top = payload.get("top_k")
        if top is None:
            raise ValueError(f"Run {run_id!r} was evaluated before runs kept their top-k lists; run its "
                             "configuration again to see its retrieval failures.")
        if k > top["k"]:
            raise ValueError(f"k={k} exceeds the {top['k']} results per query stored with run {run_id!r}")
        queries = _ordered_ids(con, eval_set, q_mod)
        gallery = _ordered_ids(con, eval_set, g_mod)
    per_query = payload["per_query"]
    first_rank = np.asarray(per_query["first_rank"], dtype=float)
    item_idx = np.asarray(per_query["item_idx"], dtype=int)
    n_pos = np.asarray(per_query["n_positives"], dtype=float)
    top_idx, top_score = top["item_idx"], top["score"]
    failed = np.flatnonzero((first_rank > 1) & (n_pos > 0))
    failed = failed[np.argsort(-first_rank[failed], kind="stable")][:limit]
    out = []
    for qi in failed:
        query = queries.iloc[int(item_idx[qi])]
        results = []
        for j, score in zip(top_idx[qi][:k], top_score[qi][:k], strict=True):
            item = gallery.iloc[int(j)]
            results.append({"item_id": item["item_id"], "text": item["text"], "image_path": item["image_path"],
                            "product_id": item["product_id"], "score": float(score),
                            "relevant": bool(item["product_id"] == query["product_id"])})
        out.append({
            "query_id": query["item_id"], "query_modality": q_mod, "query_text": query["text"],
            "query_image_path": query["image_path"], "product_id": query["product_id"],
            "first_rank": _rank_value(first_rank[qi]), "n_relevant": int(n_pos[qi]), "ties": payload["ties"],
            "method": payload.get("method", ""), "gallery": payload.get("gallery", ""), "results": results,
        })
    return out


# ------------------------------------------------------------------------------------------------ label errors
def _check_pair(con, eval_set: str, pair_id: str) -> None:
    if not con.execute("SELECT count(*) FROM pairs WHERE eval_set = ? AND pair_id = ?",
                       [eval_set, pair_id]).fetchone()[0]:
        raise KeyError(f"Pair {pair_id!r} not found in eval set {eval_set!r}.")


def mark_label_error(eval_set: str, pair_id: str, *, note: str = "", db=None) -> None:
    """Record that a pair's label looks wrong (idempotent; a later mark replaces the note)."""
    with store.connect(db) as con:
        _check_pair(con, eval_set, pair_id)
        with store.transaction(con):
            con.execute("DELETE FROM label_errors WHERE eval_set = ? AND pair_id = ?", [eval_set, pair_id])
            con.execute("INSERT INTO label_errors VALUES (?, ?, ?, ?)", [eval_set, pair_id, datetime.now(), note])


def unmark_label_error(eval_set: str, pair_id: str, *, db=None) -> None:
    """Remove a label-error mark (no error if the pair was not marked)."""
    with store.connect(db) as con:
        con.execute("DELETE FROM label_errors WHERE eval_set = ? AND pair_id = ?", [eval_set, pair_id])


def list_label_errors(eval_set: str, *, db=None) -> pd.DataFrame:
    """Marked pairs of an eval set with their image, text and label, newest first."""
    with store.connect(db) as con:
        return store.query_frame(con, """
            SELECT le.pair_id, le.marked_at, le.note, p.label::INTEGER AS label, p.split, p.pair_kind,
                   p.image_id, i.path AS image_path, t.text
            FROM label_errors le
            LEFT JOIN pairs p ON p.eval_set = le.eval_set AND p.pair_id = le.pair_id
            LEFT JOIN images i ON i.eval_set = le.eval_set AND i.image_id = p.image_id
            LEFT JOIN texts t ON t.eval_set = le.eval_set AND t.text_id = p.text_id
            WHERE le.eval_set = ? ORDER BY le.marked_at DESC, le.pair_id""", [eval_set])


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


# ------------------------------------------------------------------------------------------------ comparisons
def run_label(run: dict | pd.Series) -> str:
    """Short human label for a run: ``config · run id``."""
    return f"{run.get('config') or run.get('config_name') or '?'} · {run['run_id']}"


def slice_metrics(run_labels: dict[str, str], *, db=None) -> pd.DataFrame:
    """Every run's metrics, all slices, long format with a ``run`` column holding the label (for heatmaps).

    Pair metrics carry ``n_pos``/``n_neg`` and ``too_few`` (below the stated minimum of positives or negatives,
    see ``workbench.evaluation.MIN_SLICE_POSITIVES``): such slices are shown greyed and never ranked worst.
    """
    from workbench.evaluation import load_metrics

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


P_VALUE_FLOOR = 1e-4


def format_p_value(p: float | None) -> str:
    """A p-value for display: "< 1e-4" below that floor, else 4 decimals ("" when there is none).

    Normal and chi-square tails far below 1e-4 rest on approximations (and, across products, on few clusters)
    that do not hold to those digits, so smaller values are not printed as if they were exact.
    """
    if p is None or pd.isna(p):
        return ""
    return "< 1e-4" if p < P_VALUE_FLOOR else f"{p:.4f}"


PAIRED_TEST_METRICS = ("pair/f1", "pair/pr_auc", "pair/accuracy", "pair/roc_auc")


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
