"""Label errors: marks a person records on pairs, and automatic candidates — which stored pairs most likely carry
the wrong label.

Every pair gets three suspicion signals in [0, 1] (higher = more likely mislabelled), read from stored results only
(scores, thresholds, calibrators and joint-space embeddings of finished runs); nothing is re-encoded:

``neighbourhood`` (LEMoN-style; Zhang et al., "LEMoN: Label Error Detection using Multimodal Neighbors", PMLR 267,
    ICML 2025). In a run's joint space (cosine distance ``d = 1 - cos``) the mismatch distance of a pair (x, y) is
    ``L = d(x, y) + beta * d_n + gamma * d_m`` where, over the reference samples S = the label-1 pairs whose image
    and text both have stored vectors (the pair itself left out),
    ``d_n = (1/k) * sum_{s in kNN_image(x)} exp(-tau_1 d(x, x_s)) exp(-tau_2 d(x_s, y_s)) d(y, y_s)`` (the texts
    of x's nearest images against y) and ``d_m`` the same with the roles of image and text swapped (the images of
    y's nearest texts against x). ``L`` over the run's pairs that have both vectors becomes a match probability
    by a Platt fit against their stored labels (:func:`lemon_match_probability`), then suspicion of the stored
    label (below). LEMoN scores claimed matches only; here a non-match (label 0) is suspicious when ``L`` is
    *small*. Hyperparameters are fixed (:data:`NEIGHBOURHOOD_DEFAULTS`: k = 5 as in the LEMoN code's default,
    beta = gamma = tau_1 = tau_2 = 1), not tuned on labels or on the benchmark.
    Runs store vectors for the test gallery only (images and the product texts of test pairs; attribute-swap
    texts belong to no product), so other pairs have no value. Several runs: the mean over runs.
``disagreement``: the mean over runs of the probability of the opposite label, from each run's val-fitted
    calibrator (``curves`` artifact) or, for a run without one, the score's rank-normalised position in that run.
``margin``: how far the first run's score lies on the wrong side of its own threshold (per-category thresholds
    where the run chose them): ``score - threshold`` for label 0, ``threshold - score`` for label 1,
    rank-normalised among the run's pairs of the same label (see :func:`margin_signal`).

``score`` is the mean of the signals a pair has (NaN ones left out). Ranking: descending score, ties broken by
pair_id; every signal is computed over all of a run's pairs, so filtering by split never changes a value.
Rank normalisation here is ``(average rank - 0.5) / n``, so tied values share one value. On the train split the
runs have fitted the stored labels, so disagreement and margin understate errors there; val and test are held out
(measured with ``python -m benchmarks.bench_label_errors``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from workbench import store
from workbench.data.model import EvalSetData
from workbench.evaluation.results import load_scored_pairs
from workbench.metrics import calibrator_from_dict, fit_calibrator

SIGNALS = ("neighbourhood", "disagreement", "margin")
NOISE_KINDS = ("flip", "title_swap")
SIGNAL_HELP = {
    "neighbourhood": "LEMoN-style: the pair's distance in the joint space together with how the texts of the image's "
                     "nearest images and the images of the text's nearest texts sit against it",
    "disagreement": "mean over the runs of the calibrated probability of the opposite label",
    "margin": "how far the first run's score is on the wrong side of its threshold, rank-normalised among pairs "
              "of the same label",
}
NEIGHBOURHOOD_DEFAULTS: dict[str, float] = {"k": 5, "beta": 1.0, "gamma": 1.0, "tau_1": 1.0, "tau_2": 1.0}
CANDIDATE_COLUMNS = ("rank", "pair_id", "score", *SIGNALS, "label", "split", "pair_kind", "category", "image_id",
                     "text_id", "image_path", "text", "marked_label_error")
_CHUNK = 1024  # query rows per block of the neighbour search (bounds memory at 1024 × reference size)


# ------------------------------------------------------------------------------------------ pure numpy parts
def rank_normalise(values: Any) -> np.ndarray:
    """Each value's position among the finite values as ``(average rank - 0.5) / n`` in (0, 1); NaN stays NaN.

    Ties share their average rank, so equal inputs give equal outputs; shape (N,) -> (N,).
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"values must be one-dimensional, got shape {x.shape}")
    out = np.full(x.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(x))
    if not len(finite):
        return out
    v = x[finite]
    order = np.argsort(v, kind="stable")
    sorted_v = v[order]
    starts = np.flatnonzero(np.r_[True, sorted_v[1:] != sorted_v[:-1]])
    ends = np.r_[starts[1:], len(v)]
    average = (starts + ends + 1) / 2.0  # 1-based average rank of each run of equal values
    ranks = np.empty(len(v))
    ranks[order] = np.repeat(average, ends - starts)
    out[finite] = (ranks - 0.5) / len(v)
    return out


def _labels(labels: Any, n: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be 0 or 1, got values {sorted(set(np.unique(y).tolist()) - {0, 1})[:5]}")
    return y.astype(np.int8)


def opposite_label_probability(match_probability: Any, labels: Any) -> np.ndarray:
    """Suspicion of each stored label: ``1 - p`` for label 1, ``p`` for label 0, with ``p`` (N,) the probability
    that the pair matches (NaN stays NaN)."""
    p = np.asarray(match_probability, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"match_probability must be one-dimensional, got shape {p.shape}")
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"match_probability must lie in [0, 1], got range [{np.nanmin(p)}, {np.nanmax(p)}]")
    y = _labels(labels, len(p))
    return np.where(y == 1, 1.0 - p, p)


def margin_signal(scores: Any, thresholds: Any, labels: Any) -> np.ndarray:
    """How far each score lies on the wrong side of its threshold: ``score - t`` for label 0, ``t - score`` for
    label 1, rank-normalised among the pairs of the same label; (N,) scores and thresholds -> (N,) in (0, 1).

    Ranking within each label puts both sides of the threshold on one scale (matches and non-matches spread
    differently, and a run has many more genuine false positives than false negatives or the reverse).
    """
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(thresholds, dtype=np.float64)
    if s.ndim != 1 or t.shape != s.shape:
        raise ValueError(f"scores and thresholds must be (N,) arrays of one length, got {s.shape} and {t.shape}")
    y = _labels(labels, len(s))
    wrong_side = np.where(y == 1, t - s, s - t)
    out = np.empty(len(s))
    for label in (0, 1):
        out[y == label] = rank_normalise(wrong_side[y == label])
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _neighbour_term(queries: np.ndarray, others: np.ndarray, ref_keys: np.ndarray, ref_values: np.ndarray,
                    own_distance: np.ndarray, self_ref: np.ndarray, k: int, tau_1: float, tau_2: float) -> np.ndarray:
    """``(1/k) sum_s exp(-tau_1 d(q, key_s)) exp(-tau_2 own_s) d(other, value_s)`` over the k nearest keys."""
    n = len(queries)
    out = np.zeros(n)
    k_eff = min(k, len(ref_keys))
    if k_eff < 1:
        return out
    for start in range(0, n, _CHUNK):
        block = slice(start, start + _CHUNK)
        sim = queries[block] @ ref_keys.T
        rows = np.flatnonzero(self_ref[block] >= 0)
        sim[rows, self_ref[block][rows]] = -np.inf  # a pair is never its own neighbour
        nearest = np.argpartition(-sim, k_eff - 1, axis=1)[:, :k_eff]
        near_sim = np.take_along_axis(sim, nearest, axis=1)
        valid = np.isfinite(near_sim)  # False only for the pair itself when every reference pair is taken
        weight = np.where(valid, np.exp(-tau_1 * (1.0 - np.where(valid, near_sim, 1.0))
                                        - tau_2 * own_distance[nearest]), 0.0)
        far = 1.0 - np.einsum("nd,nkd->nk", others[block], ref_values[nearest])
        out[block] = (weight * far).sum(axis=1) / k
    return out


def lemon_distance(image_vectors: Any, text_vectors: Any, *, reference: Any, k: int = 5, beta: float = 1.0,
                   gamma: float = 1.0, tau_1: float = 1.0, tau_2: float = 1.0) -> np.ndarray:
    """LEMoN's mismatch distance of each (image, text) pair; see the module docstring for the formula.

    ``image_vectors`` and ``text_vectors``: (N, D) joint-space vectors of the N pairs' images and texts (row i is
    pair i; normalised here); ``reference``: (N,) bool, the pairs that serve as neighbours (claimed matches).
    Returns (N,) distances, higher = less likely to match. With fewer than ``k`` other reference pairs all of them
    are used (still divided by ``k``); with none, ``L`` is the pair's own cosine distance.
    """
    img = np.asarray(image_vectors, dtype=np.float64)
    txt = np.asarray(text_vectors, dtype=np.float64)
    if img.ndim != 2 or txt.shape != img.shape:
        raise ValueError(f"image_vectors and text_vectors must be (N, D) of one shape, got {img.shape}, {txt.shape}")
    ref = np.asarray(reference, dtype=bool)
    if ref.shape != (len(img),):
        raise ValueError(f"reference must have shape ({len(img)},), got {ref.shape}")
    if not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    for name, value in (("beta", beta), ("gamma", gamma), ("tau_1", tau_1), ("tau_2", tau_2)):
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    img, txt = _unit(img), _unit(txt)
    own = 1.0 - np.einsum("nd,nd->n", img, txt)
    ref_idx = np.flatnonzero(ref)
    self_ref = np.full(len(img), -1)
    self_ref[ref_idx] = np.arange(len(ref_idx))
    ref_img, ref_txt, ref_own = img[ref_idx], txt[ref_idx], own[ref_idx]
    d_n = _neighbour_term(img, txt, ref_img, ref_txt, ref_own, self_ref, k, tau_1, tau_2)
    d_m = _neighbour_term(txt, img, ref_txt, ref_img, ref_own, self_ref, k, tau_1, tau_2)
    return own + beta * d_n + gamma * d_m


def lemon_match_probability(distance: Any, labels: Any) -> np.ndarray:
    """LEMoN distances (N,) as match probabilities: a Platt fit of ``-distance`` against the stored labels.

    Two parameters fitted on the very pairs being judged: at a few percent of wrong labels the fit is dominated
    by the right ones, and it gives the signal the base rate of matches, as the runs' calibrated scores have it.
    Without both labels the rank-normalised distance is used; a fit that finds closer pairs *less* likely to
    match (slope <= 0) says the space carries no information, so every pair gets the base rate.
    """
    d = np.asarray(distance, dtype=np.float64)
    if d.ndim != 1 or not np.isfinite(d).all():
        raise ValueError(f"distance must be a finite (N,) array, got shape {d.shape}")
    y = _labels(labels, len(d))
    if y.min() == y.max():
        return 1.0 - rank_normalise(d)
    calibrator = fit_calibrator(y, -d, method="platt")
    if calibrator.params["slope"] <= 0:
        return np.full(len(d), float(y.mean()))
    return calibrator.predict(-d)


def combine_signals(signals: Any) -> np.ndarray:
    """The mean of each row's finite signals, (N, S) -> (N,); NaN where a row has none."""
    m = np.asarray(signals, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"signals must be (N, S), got shape {m.shape}")
    have = np.isfinite(m)
    count = have.sum(axis=1)
    total = np.where(have, m, 0.0).sum(axis=1)
    return np.divide(total, count, out=np.full(len(m), np.nan), where=count > 0)


# ------------------------------------------------------------------------------------------------- marks
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


# ------------------------------------------------------------------------------------------- stored results
def _check_runs(con, run_ids: Sequence[str]) -> None:
    """A clear error for an unknown or unfinished run, or runs on several eval sets."""
    if not run_ids:
        raise ValueError("label_error_candidates needs at least one run id.")
    rows = {r: con.execute("SELECT eval_set, status FROM runs WHERE run_id = ?", [r]).fetchone() for r in run_ids}
    missing = [r for r, row in rows.items() if row is None]
    if missing:
        raise KeyError(f"Run(s) {missing} not found. See `python -m workbench runs`.")
    unfinished = {r: row[1] for r, row in rows.items() if row[1] != "done"}
    if unfinished:
        raise ValueError(f"Label-error candidates need finished runs; these are not done: {unfinished}")
    eval_sets = {r: row[0] for r, row in rows.items()}
    if len(set(eval_sets.values())) > 1:
        raise ValueError(f"All runs must be on the same eval set; got {eval_sets}. Pick runs of one eval set.")


def _match_probability(con, run_id: str, scores: np.ndarray) -> np.ndarray:
    """The run's calibrated match probabilities, or the scores' rank-normalised positions without a calibrator."""
    row = con.execute("SELECT payload FROM run_artifacts WHERE run_id = ? AND kind = 'curves'", [run_id]).fetchone()
    stored = json.loads(row[0]).get("calibration") if row else None
    if stored:
        return np.clip(calibrator_from_dict(stored).predict(scores), 0.0, 1.0)
    return rank_normalise(scores)


def _embeddings(con, run_id: str, modality: str) -> tuple[dict[str, int], np.ndarray]:
    frame = store.query_frame(con, "SELECT item_id, vector FROM run_embeddings WHERE run_id = ? AND modality = ? "
                                   "ORDER BY item_id", [run_id, modality])
    if frame.empty:
        return {}, np.zeros((0, 0))
    return {item: i for i, item in enumerate(frame["item_id"])}, np.stack(frame["vector"].to_numpy()).astype(
        np.float64)


def _neighbourhood(con, run_id: str, pairs: pd.DataFrame, params: dict[str, float]) -> np.ndarray:
    """Neighbourhood suspicion of each pair for one run (NaN where its image or text has no stored vector)."""
    out = np.full(len(pairs), np.nan)
    image_index, images = _embeddings(con, run_id, "image")
    text_index, texts = _embeddings(con, run_id, "text")
    if not image_index or not text_index or images.shape[1] != texts.shape[1]:
        return out
    i = pairs["image_id"].map(image_index)
    t = pairs["text_id"].map(text_index)
    have = np.flatnonzero(i.notna().to_numpy() & t.notna().to_numpy())
    if not len(have):
        return out
    labels = pairs["label"].to_numpy()[have]
    distance = lemon_distance(images[i.to_numpy()[have].astype(int)], texts[t.to_numpy()[have].astype(int)],
                              reference=labels == 1, k=int(params["k"]), beta=params["beta"],
                              gamma=params["gamma"], tau_1=params["tau_1"], tau_2=params["tau_2"])
    out[have] = opposite_label_probability(lemon_match_probability(distance, labels), labels)
    return out


def label_error_candidates(run_ids: Sequence[str] | str, *, db=None, top: int | None = 50,
                           split: str | None = None, neighbourhood: dict[str, float] | None = None) -> pd.DataFrame:
    """The pairs of the runs' eval set most likely to carry a wrong label, most suspicious first.

    Columns: :data:`CANDIDATE_COLUMNS` (``rank`` from 1; one column per signal, NaN where unavailable; the pair's
    label, split, kind, category, image path and text; whether it is already marked). ``run_ids``: finished runs
    of one eval set (the first one's threshold gives ``margin``). ``top``: how many rows (None: all).
    ``split``: only pairs of that split (values do not change). ``neighbourhood`` overrides
    :data:`NEIGHBOURHOOD_DEFAULTS`.
    """
    run_ids = [run_ids] if isinstance(run_ids, str) else list(dict.fromkeys(run_ids))
    if top is not None and (not isinstance(top, int | np.integer) or top < 0):
        raise ValueError(f"top must be a non-negative integer or None, got {top!r}")
    unknown = set(neighbourhood or {}) - set(NEIGHBOURHOOD_DEFAULTS)
    if unknown:
        raise ValueError(f"Unknown neighbourhood parameter(s) {sorted(unknown)}; allowed: "
                         f"{list(NEIGHBOURHOOD_DEFAULTS)}")
    params = {**NEIGHBOURHOOD_DEFAULTS, **(neighbourhood or {})}
    with store.connect(db) as con:
        _check_runs(con, run_ids)
    frames = [load_scored_pairs(r, db=db, split=None) for r in run_ids]
    if split is not None and split not in set(frames[0]["split"]):
        raise ValueError(f"split={split!r} has no pairs in these runs; available: {sorted(set(frames[0]['split']))}")
    pairs = frames[0].drop(columns=["score", "threshold"]).reset_index(drop=True)
    labels = pairs["label"].to_numpy()
    neighbour, against = [], []
    with store.connect(db) as con:
        for run_id, frame in zip(run_ids, frames, strict=True):
            scores = frame.set_index("pair_id")["score"].reindex(pairs["pair_id"]).to_numpy(dtype=np.float64)
            have = np.isfinite(scores)
            p = np.full(len(pairs), np.nan)
            p[have] = _match_probability(con, run_id, scores[have])
            against.append(np.where(have, opposite_label_probability(np.nan_to_num(p), labels), np.nan))
            neighbour.append(_neighbourhood(con, run_id, pairs, params))
    first = frames[0]
    table = pairs.assign(
        neighbourhood=combine_signals(np.column_stack(neighbour)),  # the mean over runs that have a value
        disagreement=combine_signals(np.column_stack(against)),
        margin=margin_signal(first["score"].to_numpy(), first["threshold"].to_numpy(), labels),
    )
    table["score"] = combine_signals(table[list(SIGNALS)].to_numpy())
    if split is not None:
        table = table[table["split"] == split]
    table = table.sort_values(["score", "pair_id"], ascending=[False, True], na_position="last", kind="stable")
    table = (table if top is None else table.head(top)).reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table[list(CANDIDATE_COLUMNS)]


def signals_of(row: dict | pd.Series) -> dict[str, float | None]:
    """A candidate's signals as ``{name: value}`` with None for unavailable ones (the CLI's JSON ``signals``)."""
    return {name: None if pd.isna(row[name]) else float(row[name]) for name in SIGNALS}


# ---------------------------------------------------------------------------------------- measured, not assumed
def inject_label_noise(data: EvalSetData, *, kind: str, fraction: float = 0.05,
                       seed: int = 0) -> tuple[EvalSetData, list[str]]:
    """A copy of an eval set with known label errors, to measure detectors; also returns the corrupted pair ids.

    ``flip``: ``fraction`` of all pairs, drawn uniformly, get the other label. ``title_swap``: ``fraction`` of
    the positives are drawn and matched two by two within their split; the two pairs exchange texts when their
    images show different products and neither new (image, text) already exists, so both become wrong positives.
    Deterministic for a seed.
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"kind={kind!r} is not supported; allowed: {list(NOISE_KINDS)}")
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction!r}")
    if data.pairs is None or data.pairs.empty:
        raise ValueError("The eval set has no pairs to corrupt.")
    rng = np.random.default_rng(seed)
    pairs = data.pairs.sort_values("pair_id").reset_index(drop=True)
    if kind == "flip":
        chosen = np.sort(rng.choice(len(pairs), size=int(round(fraction * len(pairs))), replace=False))
        pairs.loc[chosen, "label"] = (1 - pairs.loc[chosen, "label"]).astype(pairs["label"].dtype)
        return replace(data, pairs=pairs), sorted(pairs.loc[chosen, "pair_id"])
    product = dict(zip(data.images["image_id"], data.images["product_id"], strict=True))
    existing = set(zip(pairs["image_id"], pairs["text_id"], strict=True))
    positives = np.flatnonzero(pairs["label"].to_numpy() == 1)
    drawn = rng.permutation(positives)[:int(round(fraction * len(positives)))]
    corrupted: list[str] = []
    for split in sorted(set(pairs.loc[drawn, "split"])):
        members = [i for i in drawn if pairs.at[i, "split"] == split]
        for a, b in zip(members[0::2], members[1::2], strict=False):
            img_a, txt_a, img_b, txt_b = (pairs.at[a, "image_id"], pairs.at[a, "text_id"], pairs.at[b, "image_id"],
                                          pairs.at[b, "text_id"])
            if product[img_a] == product[img_b] or (img_a, txt_b) in existing or (img_b, txt_a) in existing:
                continue
            pairs.at[a, "text_id"], pairs.at[b, "text_id"] = txt_b, txt_a
            existing |= {(img_a, txt_b), (img_b, txt_a)}
            corrupted += [pairs.at[a, "pair_id"], pairs.at[b, "pair_id"]]
    return replace(data, pairs=pairs), sorted(corrupted)
