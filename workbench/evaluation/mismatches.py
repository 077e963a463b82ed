"""Error analysis of one stored run: mismatch galleries and retrieval failures.

Thresholds are the run's own (chosen on val; per-category ones from its ``curves`` artifact where the config asked
for them); retrieval failures read the ranking the run stored. Pages call these and render the frames they return.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

import numpy as np
import pandas as pd

from workbench import store
from workbench.data.tags import tagged_products
from workbench.evaluation.results import load_scored_pairs, run_thresholds

MISMATCH_KINDS = ("false_positive", "false_negative", "hardest_negative")
MISMATCH_SORTS = ("score", "margin", "category", "pair_id")
DIRECTIONS = ("t2i", "i2t")
MISMATCH_COLUMNS = ("pair_id", "image_id", "text_id", "image_path", "text", "language", "label", "score", "threshold",
                    "category", "pair_kind", "swapped_attribute", "original_text", "marked_label_error", "note",
                    "image_product")


def _check(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; allowed: {list(allowed)}")


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
               offset: int = 0, include_label_errors: bool = True, tag: str | None = None) -> pd.DataFrame:
    """Misclassified (or hardest) pairs of a run, worst first.

    ``false_positive``: label 0 with score >= threshold; ``false_negative``: label 1 with score < threshold;
    ``hardest_negative``: label 0 pairs by descending score whatever the threshold. ``sort``: ``score`` (most
    confident mistakes first), ``margin`` (furthest from the threshold), ``category`` or ``pair_id``. ``tag``
    keeps pairs whose image belongs to a product carrying that tag (:mod:`workbench.data.tags`).
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
    if tag is not None:
        with store.connect(db) as con:
            eval_set = run_thresholds(con, run_id)[0]
        frame = frame[frame["image_product"].isin(tagged_products(eval_set, tag, db=db))]
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
        eval_set = run_thresholds(con, run_id)[0]
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
        eval_set = run_thresholds(con, run_id)[0]
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
