"""A run's stored per-item results: scored pairs, its thresholds and its JSON artifacts (reads, and the writes
of the run's artifacts stage and of :func:`workbench.evaluation.aggregate.compute_metrics`)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from workbench import store


def put_artifact(con, run_id: str, kind: str, payload: dict) -> None:
    """Store (replace) one JSON artifact of a run; numpy arrays and scalars become lists and numbers."""
    con.execute("DELETE FROM run_artifacts WHERE run_id = ? AND kind = ?", [run_id, kind])
    con.execute("INSERT INTO run_artifacts VALUES (?, ?, ?)", [run_id, kind, json.dumps(payload, default=_json)])


def _json(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def get_artifact(run_id: str, kind: str, *, db=None) -> dict | None:
    """One stored artifact of a run (``curves``, ``retrieval/t2i``, ``zeroshot``, …), or None."""
    with store.connect(db) as con:
        row = con.execute("SELECT payload FROM run_artifacts WHERE run_id = ? AND kind = ?",
                          [run_id, kind]).fetchone()
    return json.loads(row[0]) if row else None


def scored_pairs(con, run_id: str, *, exclude_label_errors: bool = False) -> pd.DataFrame:
    """A run's per-pair scores joined with the pair, its image's product and category, and the text."""
    sql = """
        SELECT s.pair_id, s.split, s.score, p.label, p.pair_kind, p.swapped_attribute, p.image_id, p.text_id,
               i.product_id AS product_id, pr.category, t.language, t.text, i.path AS image_path
        FROM scores s JOIN runs r USING (run_id)
        JOIN pairs p ON p.eval_set = r.eval_set AND p.pair_id = s.pair_id
        JOIN images i ON i.eval_set = r.eval_set AND i.image_id = p.image_id
        LEFT JOIN products pr ON pr.eval_set = r.eval_set AND pr.product_id = i.product_id
        JOIN texts t ON t.eval_set = r.eval_set AND t.text_id = p.text_id
        WHERE s.run_id = ?
    """
    if exclude_label_errors:
        sql += " AND s.pair_id NOT IN (SELECT pair_id FROM label_errors le WHERE le.eval_set = r.eval_set)"
    return store.query_frame(con, sql + " ORDER BY s.pair_id", [run_id])


def run_thresholds(con, run_id: str) -> tuple[str, float, dict[str, float]]:
    """A finished run's eval set, its val-chosen threshold and its per-category thresholds (where it chose them)."""
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
        eval_set, threshold, per_category = run_thresholds(con, run_id)
        sql, args = _PAIRS_SQL, [eval_set, run_id]
        if split:
            sql += " AND s.split = ?"
            args.append(split)
        frame = store.query_frame(con, sql + " ORDER BY s.pair_id", args)
    frame["threshold"] = frame["category"].astype(object).map(per_category).fillna(threshold).astype(float)
    frame["marked_label_error"] = frame["marked_label_error"].astype(bool)
    return frame
