"""Robustness suites: re-score a finished run's test pairs with perturbed photos or titles, per severity.

The run's encoders and head are rebuilt (:func:`workbench.run.restore.restore_run_models`), each distinct test image
or text is perturbed once per (perturbation, severity) and encoded under its own cache key (content hash +
perturbation + severity + seed, never the clean item's key), and the test pairs are scored again with the other
side clean. Metrics are the clean run's own: ROC-AUC, and accuracy and F1 at the run's val-chosen threshold(s),
with percentile CIs from the same product bootstrap (same resamples, seeded with the run's seed) and the drop
(clean − perturbed: positive when the perturbation hurts) with a paired product-bootstrap CI. Each (perturbation,
severity) is stored in one transaction, so an interrupted suite leaves only whole results behind.

Scores of new content pass through the restored models, which match the stored scores to float noise (~1e-7):
on a run whose scores are mostly exact ties (keyword fakes) that noise alone can move the ROC-AUC slightly; the
identity perturbation shows how much.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from datetime import datetime

import numpy as np
import pandas as pd

from workbench import store
from workbench.data.vocab import catalogue_vocabulary
from workbench.evaluation.aggregate import N_RESAMPLES, apply_thresholds
from workbench.evaluation.results import get_artifact, scored_pairs
from workbench.metrics import bootstrap_pair_metrics, pair_metrics, paired_bootstrap
from workbench.run.encoding import Cancelled
from workbench.run.restore import NewImage, NewText, RunModels, restore_run_models

from .perturbations import SEVERITIES, check_severity, get_perturbation, perturb, resolve_suite

METRICS: tuple[str, ...] = ("pair/roc_auc", "pair/accuracy", "pair/f1")
DEFAULT_SEVERITIES: tuple[int, ...] = (1, 3, 5)
COLUMNS = ("perturbation", "modality", "severity", "seed", "metric", "value", "ci_low", "ci_high", "clean_value",
           "clean_ci_low", "clean_ci_high", "drop", "drop_ci_low", "drop_ci_high", "n", "n_items", "n_changed")
PAIR_CHUNK = 2048  # test pairs whose perturbed items are held in memory at once
ProgressFn = Callable[[int, int, str], None]


def content_key(content_hash: str, perturbation: str, severity: int, seed: int) -> str:
    """Cache key of a perturbed item: the recipe that made it, which determines its content."""
    return hashlib.sha256(f"robustness|{content_hash}|{perturbation}|{severity}|{seed}".encode()).hexdigest()


def parse_severities(value: str | Sequence[int]) -> tuple[int, ...]:
    """"1,3,5" or [1, 3, 5] -> (1, 3, 5), each checked against ``SEVERITIES``."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        severities = [check_severity(int(p)) for p in parts if str(p).strip()]
    except (TypeError, ValueError):
        raise ValueError(f"severities={value!r} must be integers from {list(SEVERITIES)}, e.g. 1,3,5") from None
    if not severities:
        raise ValueError(f"severities={value!r} is empty; choose from {list(SEVERITIES)}")
    return tuple(sorted(set(severities)))


class _TestPairs:
    """A run's test pairs (ordered by pair_id) with what the metrics need: labels, products and thresholds."""

    def __init__(self, run_id: str, db, n_resamples: int) -> None:
        with store.connect(db) as con:
            frame = scored_pairs(con, run_id)
            record = con.execute("SELECT threshold, seed FROM runs WHERE run_id = ?", [run_id]).fetchone()
        self.frame = frame[frame["split"] == "test"].reset_index(drop=True)
        if self.frame["label"].nunique() < 2:
            raise ValueError(f"Run {run_id} has no test pairs of both labels; robustness metrics need both.")
        if record is None or record[0] is None:
            raise ValueError(f"Run {run_id} has no stored threshold; recompute its metrics first.")
        self.threshold, self.seed = float(record[0]), int(record[1] or 0)
        curves = get_artifact(run_id, "curves", db=db) or {}
        per_category = curves.get("per_category_thresholds") or {}
        self.offsets = apply_thresholds(self.frame, self.threshold, per_category) if per_category else None
        self.y = self.frame["label"].to_numpy()
        self.groups = self.frame["product_id"].astype(str).to_numpy()
        self.clean = self.frame["score"].to_numpy(dtype=np.float64)
        self.n_resamples = n_resamples

    def _decisions(self, scores: np.ndarray) -> tuple[np.ndarray, float]:
        """Scores and threshold for the thresholded metrics (per-category thresholds become one at 0)."""
        return (scores, self.threshold) if self.offsets is None else (scores - self.offsets, 0.0)

    def metrics(self, scores: np.ndarray) -> dict[str, tuple[float, float, float]]:
        """name -> (value, ci_low, ci_high), exactly as the run's own metrics were computed."""
        kwargs = {"groups": self.groups, "n_resamples": self.n_resamples, "seed": self.seed}
        out = bootstrap_pair_metrics(self.y, scores, threshold=self.threshold, **kwargs)
        if self.offsets is not None:
            shifted, at = self._decisions(scores)
            out.update({k: v for k, v in bootstrap_pair_metrics(self.y, shifted, threshold=at, **kwargs).items()
                        if k not in ("roc_auc", "pr_auc")})
        return {f"pair/{k}": out[k] for k in (m.split("/")[1] for m in METRICS)}

    def drops(self, scores: np.ndarray) -> dict[str, tuple[float, float, float]]:
        """name -> (clean - perturbed, ci_low, ci_high) from a paired bootstrap over the same products."""
        out = {}
        for name in METRICS:
            key = name.split("/")[1]
            if key == "roc_auc":  # ranks the raw scores
                clean, perturbed, at = self.clean, scores, self.threshold
            else:
                (clean, at), (perturbed, _) = self._decisions(self.clean), self._decisions(scores)
            result = paired_bootstrap(lambda y, s, k=key, t=at: pair_metrics(y, s, threshold=t)[k], self.y, clean,
                                      perturbed, groups=self.groups, n_resamples=self.n_resamples, seed=self.seed)
            out[name] = (result["delta"], result["ci_low"], result["ci_high"])
        return out


class _Items:
    """Perturbs a run's test images (decoded as the run decoded them) and texts on demand, one chunk of pairs at a
    time, so memory stays bounded on large eval sets; records which distinct items the perturbation changed."""

    def __init__(self, models: RunModels) -> None:
        self.models = models
        self.image_hash = models.data.images.set_index("image_id")["sha256"].to_dict()
        self.texts = models.data.texts.set_index("text_id")
        self.vocabulary = catalogue_vocabulary(models.data)
        self.changed: dict[tuple[str, str], bool] = {}

    def image(self, image_id: str, name: str, severity: int, seed: int) -> NewImage:
        clean = self.models.load_image(image_id).convert("RGB")
        new = perturb(name, clean, severity=severity, seed=seed)
        self.changed[("image", image_id)] = clean.size != new.size or clean.tobytes() != new.tobytes()
        return NewImage(new, like=image_id, key=content_key(self.image_hash[image_id], name, severity, seed))

    def text(self, text_id: str, name: str, severity: int, seed: int) -> NewText:
        row = self.texts.loc[text_id]
        new = perturb(name, row["text"], severity=severity, seed=seed, vocabulary=self.vocabulary)
        self.changed[("text", text_id)] = new != row["text"]
        return NewText(new, language=None if pd.isna(row["language"]) else row["language"],
                       product_id=None if pd.isna(row["product_id"]) else row["product_id"],
                       key=content_key(row["sha256"], name, severity, seed))


def _score(models: RunModels, pairs: pd.DataFrame, items: _Items, name: str, severity: int,
           seed: int) -> tuple[np.ndarray, int, int]:
    """Test-pair scores with the perturbed side(s); also how many distinct items were perturbed and changed."""
    modality = get_perturbation(name).modality
    items.changed = {}
    scores = np.empty(len(pairs), dtype=np.float64)
    for start in range(0, len(pairs), PAIR_CHUNK):
        chunk = pairs.iloc[start : start + PAIR_CHUNK]
        images: list = list(chunk["image_id"])
        texts: list = list(chunk["text_id"])
        if modality in ("image", "both"):
            new_images = {i: items.image(i, name, severity, seed) for i in dict.fromkeys(images)}
            images = [new_images[i] for i in images]
        if modality in ("text", "both"):
            new_texts = {t: items.text(t, name, severity, seed) for t in dict.fromkeys(texts)}
            texts = [new_texts[t] for t in texts]
        scores[start : start + len(chunk)] = models.score(images, texts)
    return scores, len(items.changed), sum(items.changed.values())


def _store(db, run_id: str, rows: pd.DataFrame, name: str, severity: int, seed: int) -> None:
    with store.connect(db) as con, store.transaction(con):
        con.execute("DELETE FROM robustness WHERE run_id = ? AND perturbation = ? AND severity = ? AND seed = ?",
                    [run_id, name, severity, seed])
        store.insert_frame(con, "robustness", rows)


def run_robustness(
    run_id: str,
    *,
    suite: str | Sequence[str] = "image,text",
    severities: str | Sequence[int] = DEFAULT_SEVERITIES,
    seed: int = 0,
    db: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    n_resamples: int = N_RESAMPLES,
    models: RunModels | None = None,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> pd.DataFrame:
    """Run perturbation suites on a finished run; store and return one row per (perturbation, severity, metric).

    ``suite``: "image", "text" and/or perturbation names, comma-separated. ``seed`` drives the perturbations;
    the bootstrap uses the run's seed, so the identity perturbation reproduces the run's metrics and CIs.
    ``models``: an already restored run (else rebuilt on ``device``). ``progress(done, total, label)`` is called
    per (perturbation, severity); ``cancel`` (or Ctrl-C) stops between them, keeping what was stored.
    """
    names = resolve_suite(suite)
    levels = parse_severities(severities)
    say = progress or (lambda done, total, label: None)
    total = len(names) * len(levels)
    say(0, total, "restoring the run's models")
    models = models or restore_run_models(run_id, db=db, device=device)
    if models.run_id != run_id or store.resolve_db_path(models.db) != store.resolve_db_path(db):
        raise ValueError(f"models were restored for run {models.run_id} of {store.resolve_db_path(models.db)}, "
                         f"not run {run_id} of {store.resolve_db_path(db)}")
    test = _TestPairs(run_id, db, n_resamples)
    items = _Items(models)
    clean = test.metrics(test.clean)
    frames = []
    for k, (name, severity) in enumerate((n, s) for n in names for s in levels):
        say(k, total, f"{name} severity {severity}")
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"Robustness suite of run {run_id} cancelled before {name} at severity {severity}.")
        scores, n_items, n_changed = _score(models, test.frame, items, name, severity, seed)
        perturbed, drops = test.metrics(scores), test.drops(scores)
        rows = pd.DataFrame([
            {"run_id": run_id, "perturbation": name, "modality": get_perturbation(name).modality,
             "severity": severity, "seed": seed, "metric": metric, "value": perturbed[metric][0],
             "ci_low": perturbed[metric][1], "ci_high": perturbed[metric][2], "clean_value": clean[metric][0],
             "clean_ci_low": clean[metric][1], "clean_ci_high": clean[metric][2], "drop": drops[metric][0],
             "drop_ci_low": drops[metric][1], "drop_ci_high": drops[metric][2], "n": len(test.y),
             "n_items": n_items, "n_changed": n_changed, "computed_at": datetime.now()}
            for metric in METRICS
        ])
        _store(db, run_id, rows, name, severity, seed)
        frames.append(rows)
    say(total, total, "done")
    return pd.concat(frames, ignore_index=True)[list(COLUMNS)]


def load_robustness(run_id: str, *, db: str | os.PathLike[str] | None = None, seed: int | None = None,
                    ) -> pd.DataFrame:
    """A run's stored robustness results (every seed unless one is given), ordered for plotting."""
    sql = f"SELECT {', '.join(COLUMNS)} FROM robustness WHERE run_id = ?"
    params: list = [run_id]
    if seed is not None:
        sql += " AND seed = ?"
        params.append(seed)
    with store.connect(db) as con:
        return store.query_frame(con, sql + " ORDER BY perturbation, metric, seed, severity", params)


def results_json(results: pd.DataFrame) -> dict[str, list[dict]]:
    """The CLI's JSON: perturbation -> [{severity, metric, value, ci_low, ci_high}, ...] (NaN as null)."""
    def number(value) -> float | None:
        return None if value is None or pd.isna(value) else float(value)

    out: dict[str, list[dict]] = {}
    for row in results.itertuples(index=False):
        out.setdefault(row.perturbation, []).append(
            {"severity": int(row.severity), "metric": row.metric, "value": number(row.value),
             "ci_low": number(row.ci_low), "ci_high": number(row.ci_high)})
    return out
