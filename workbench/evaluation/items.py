"""One product seen whole (the app's detail view): its images, texts, tags, every pair built from it, and what each
run decided about each of those pairs.

A pair belongs to a product when its image or its text does, so a product's view lists its positives, the
negatives made from its image (other products' texts, attribute swaps with what was swapped) and the negatives
where its own text meets another product's image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench import store
from workbench.evaluation.aggregate import apply_thresholds, load_calibrator
from workbench.evaluation.results import run_thresholds

PAIR_COLUMNS = ("pair_id", "image_id", "image_path", "image_product", "text_id", "text", "language", "text_product",
                "label", "split", "pair_kind", "swapped_attribute", "swap_from", "swap_to", "marked_label_error",
                "note")
DECISION_COLUMNS = ("run_id", "pair_id", "score", "threshold", "probability", "decision", "correct")


@dataclass(frozen=True)
class ProductDetail:
    """Everything stored about one product of an eval set; frames are sorted by id."""

    eval_set: str
    product_id: str
    category: str | None
    attributes: dict[str, str | None]
    tags: list[str]
    images: pd.DataFrame  # image_id, path, width, height
    texts: pd.DataFrame  # text_id, text, language
    pairs: pd.DataFrame  # PAIR_COLUMNS


def product_detail(eval_set: str, product_id: str, *, db=None) -> ProductDetail:
    """The product's category, attributes, tags, images, texts and pairs (with swap details and label-error
    marks)."""
    with store.connect(db) as con:
        row = con.execute("SELECT category FROM products WHERE eval_set = ? AND product_id = ?",
                          [eval_set, product_id]).fetchone()
        if row is None:
            raise KeyError(f"Product {product_id!r} not found in eval set {eval_set!r}.")
        attributes = dict(con.execute("SELECT name, value FROM attributes WHERE eval_set = ? AND product_id = ? "
                                      "ORDER BY name", [eval_set, product_id]).fetchall())
        tags = [r[0] for r in con.execute("SELECT tag FROM item_tags WHERE eval_set = ? AND product_id = ? "
                                          "ORDER BY tag", [eval_set, product_id]).fetchall()]
        images = store.query_frame(con, "SELECT image_id, path, width, height FROM images WHERE eval_set = ? AND "
                                        "product_id = ? ORDER BY image_id", [eval_set, product_id])
        texts = store.query_frame(con, "SELECT text_id, text, language FROM texts WHERE eval_set = ? AND "
                                       "product_id = ? ORDER BY text_id", [eval_set, product_id])
        pairs = store.query_frame(con, """
            SELECT p.pair_id, p.image_id, i.path AS image_path, i.product_id AS image_product, p.text_id, t.text,
                   t.language, t.product_id AS text_product, p.label::INTEGER AS label, p.split, p.pair_kind,
                   p.swapped_attribute, p.swap_from, p.swap_to, le.pair_id IS NOT NULL AS marked_label_error, le.note
            FROM pairs p
            JOIN images i ON i.eval_set = p.eval_set AND i.image_id = p.image_id
            JOIN texts t ON t.eval_set = p.eval_set AND t.text_id = p.text_id
            LEFT JOIN label_errors le ON le.eval_set = p.eval_set AND le.pair_id = p.pair_id
            WHERE p.eval_set = ? AND (i.product_id = ? OR t.product_id = ?)
            ORDER BY p.label DESC, p.pair_id""", [eval_set, product_id, product_id])
    pairs["marked_label_error"] = pairs["marked_label_error"].astype(bool)
    return ProductDetail(eval_set, product_id, row[0], attributes, tags, images, texts, pairs[list(PAIR_COLUMNS)])


def pair_decisions(eval_set: str, run_ids: Sequence[str], pair_ids: Sequence[str], *, db=None) -> pd.DataFrame:
    """Each run's score, threshold (its val-chosen one, per category where it chose them), calibrated match
    probability (NaN for a run stored without a calibrator) and decision for each pair it scored, long format
    (:data:`DECISION_COLUMNS`), by run (in the order given) and pair. Every run must be a finished run on
    ``eval_set``: pair ids are only unique within an eval set."""
    frames = []
    with store.connect(db) as con:
        for run_id in run_ids:
            run_set, global_t, per_category = run_thresholds(con, run_id)
            if run_set != eval_set:
                raise ValueError(f"Run {run_id!r} is on eval set {run_set!r}, not {eval_set!r}; pick runs of "
                                 f"{eval_set!r}.")
            frame = store.query_frame(con, """
                SELECT s.pair_id, s.score, p.label::INTEGER AS label, pr.category
                FROM scores s
                JOIN pairs p ON p.eval_set = ? AND p.pair_id = s.pair_id
                JOIN images i ON i.eval_set = p.eval_set AND i.image_id = p.image_id
                LEFT JOIN products pr ON pr.eval_set = p.eval_set AND pr.product_id = i.product_id
                WHERE s.run_id = ? AND list_contains(?, s.pair_id)
                ORDER BY s.pair_id""", [eval_set, run_id, list(pair_ids)])
            frame["threshold"] = apply_thresholds(frame, global_t, per_category)
            frames.append(frame.assign(run_id=run_id))
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*DECISION_COLUMNS, "label"])
    probability = np.full(len(out), np.nan)
    for run_id in run_ids:
        calibrator = load_calibrator(run_id, db=db)
        mine = (out["run_id"] == run_id).to_numpy()
        if calibrator is not None and mine.any():
            probability[mine] = calibrator.predict(out.loc[mine, "score"].to_numpy(dtype=float))
    matched = out["score"].to_numpy(dtype=float) >= out["threshold"].to_numpy(dtype=float)
    out["probability"] = probability
    out["decision"] = np.where(matched, "match", "non-match")
    out["correct"] = matched == (out["label"].to_numpy() == 1)
    return out[list(DECISION_COLUMNS)].reset_index(drop=True)
