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


def _embeddings(con, run_id: str, modality: str) -> tuple[list[str], np.ndarray]:
    frame = store.query_frame(con, "SELECT item_id, vector FROM run_embeddings WHERE run_id = ? AND modality = ? "
                                   "ORDER BY item_id", [run_id, modality])
    if frame.empty:
        return [], np.zeros((0, 0), dtype=np.float32)
    return frame["item_id"].tolist(), np.stack([np.asarray(v, dtype=np.float32) for v in frame["vector"]])


def _first_rank(sims: np.ndarray, relevant: np.ndarray, ties: str) -> float | None:
    """1-based rank of the best relevant item under the run's tie policy (as the stored ranks use)."""
    if not relevant.any():
        return None
    best = sims[relevant].max()
    above, tied = int((sims[~relevant] > best).sum()), int((sims[~relevant] == best).sum())
    rank = {"optimistic": 1 + above, "average": 1 + above + tied / 2}.get(ties, 1 + above + tied)
    return int(rank) if float(rank).is_integer() else float(rank)


def retrieval_failures(run_id: str, *, direction: str = "t2i", db=None, k: int = 5, limit: int = 20) -> list[dict]:
    """Queries whose first relevant item is not ranked first, worst first, with their top-k by cosine.

    ``first_rank`` is the rank the run itself stored (its head's ranking); ``results`` are recomputed by cosine from
    the stored joint-space embeddings, and ``cosine_rank`` is the true item's rank there. For heads without a joint
    space the embeddings are a CCA view, so the two rankings can differ (``method`` says which one the run used).
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
        queries = _ordered_ids(con, eval_set, q_mod)
        gallery = _ordered_ids(con, eval_set, g_mod).set_index("item_id")
        q_ids, q_vecs = _embeddings(con, run_id, q_mod)
        g_ids, g_vecs = _embeddings(con, run_id, g_mod)
    per_query = payload["per_query"]
    first_rank = np.asarray(per_query["first_rank"], dtype=float)
    item_idx = np.asarray(per_query["item_idx"], dtype=int)
    n_pos = np.asarray(per_query.get("n_positives", np.ones_like(first_rank)), dtype=float)
    failed = np.flatnonzero((first_rank > 1) & (n_pos > 0))
    failed = failed[np.argsort(-first_rank[failed], kind="stable")][:limit]
    q_row = {q: i for i, q in enumerate(q_ids)}
    g_products = gallery.reindex(g_ids)["product_id"].to_numpy(dtype=object)
    out = []
    for qi in failed:
        query = queries.iloc[int(item_idx[qi])]
        entry: dict[str, Any] = {
            "query_id": query["item_id"], "query_modality": q_mod, "query_text": query["text"],
            "query_image_path": query["image_path"], "product_id": query["product_id"],
            "first_rank": int(first_rank[qi]), "n_relevant": int(n_pos[qi]), "method": payload.get("method", ""),
            "gallery": payload.get("gallery", ""), "results": [], "cosine_rank": None,
        }
        if query["item_id"] in q_row and len(g_ids):
            sims = g_vecs.astype(np.float64) @ q_vecs[q_row[query["item_id"]]].astype(np.float64)
            order = np.lexsort((np.arange(len(sims)), -sims))
            relevant = g_products == query["product_id"]
            entry["cosine_rank"] = _first_rank(sims, relevant, payload.get("ties", "pessimistic"))
            for j in order[:k]:
                item = gallery.loc[g_ids[j]]
                entry["results"].append({"item_id": g_ids[j], "text": item["text"], "image_path": item["image_path"],
                                         "product_id": item["product_id"], "score": float(sims[j]),
                                         "relevant": bool(relevant[j])})
        out.append(entry)
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
    """Every run's metrics, all slices, long format with a ``run`` column holding the label (for heatmaps)."""
    from workbench.evaluation import load_metrics

    frames = [load_metrics(r, db=db, slices=True).assign(run=label, run_id=r) for r, label in run_labels.items()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["name", "slice_kind", "slice_value", "value", "ci_low", "ci_high", "n", "run", "run_id"])


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
            out[f"{name} p (Holm)"] = test.get("p_holm") if test else None
        rows.append(out)
    return pd.DataFrame(rows)
