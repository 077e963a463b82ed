"""2-D projections (UMAP or PCA) of a run's joint space, cached in the ``projections`` table.

A projection is keyed by a hash of its parameters and of the run's embedding count, so a revisit with the same
settings is a table read. UMAP is deterministic for a seed (``random_state``; single-threaded). Above
``sample_size`` points UMAP is fitted on a stratified sample (by modality and category) and the remaining points are
placed with ``transform``; the description says so. PCA always uses every point (it is cheap).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from workbench import store

METHODS = ("umap", "pca")
CACHE_VERSION = 1
FRAME_COLUMNS = ("item_id", "modality", "x", "y", "product_id", "category", "split", "label_text", "image_path",
                 "correct", "language", "pair_kind")


@dataclass(frozen=True, eq=False)
class ProjectionResult:
    """Projected items (``frame``), the parameters that produced them and a sentence saying what was fitted."""

    frame: pd.DataFrame
    params: dict[str, Any]
    description: str
    from_cache: bool = field(default=False, compare=False)


def normalise_params(method: str = "umap", *, n_neighbors: int = 15, min_dist: float = 0.1,
                     sample_size: int = 5000, seed: int = 0) -> dict[str, Any]:
    """Validated parameters; PCA ignores the UMAP-only ones so they do not split its cache."""
    method = str(method).lower()
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not supported; allowed: {list(METHODS)}")
    if method == "pca":
        return {"method": "pca"}
    if int(n_neighbors) < 2:
        raise ValueError(f"n_neighbors={n_neighbors!r} must be >= 2")
    if not 0.0 <= float(min_dist) <= 1.0:
        raise ValueError(f"min_dist={min_dist!r} must lie in [0, 1]")
    if int(sample_size) < 10:
        raise ValueError(f"sample_size={sample_size!r} must be >= 10")
    return {"method": "umap", "n_neighbors": int(n_neighbors), "min_dist": float(min_dist),
            "sample_size": int(sample_size), "seed": int(seed)}


def params_key(params: dict[str, Any], n_points: int) -> str:
    blob = json.dumps({**params, "n_points": int(n_points), "v": CACHE_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def stratified_sample(strata: np.ndarray, size: int, *, seed: int) -> np.ndarray:
    """Sorted indices of ``size`` items with each stratum represented in proportion to its size.

    Each item gets a position ``(rank within its stratum + u) / stratum size`` (random rank, u ~ U[0, 1)); the
    ``size`` smallest positions are kept, which is proportional allocation without rounding bookkeeping.
    """
    n = len(strata)
    if size >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    codes, inverse = np.unique(np.asarray(strata, dtype=str), return_inverse=True)
    order = np.lexsort((rng.random(n), inverse))
    counts = np.bincount(inverse, minlength=len(codes))
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.empty(n)
    rank[order] = np.arange(n) - starts[inverse[order]]
    position = (rank + rng.random(n)) / counts[inverse]
    return np.sort(np.argsort(position, kind="stable")[:size])


def _pca(vectors: np.ndarray) -> np.ndarray:
    """First two principal components, signs fixed (largest loading positive) so results are reproducible."""
    x = vectors.astype(np.float64) - vectors.mean(axis=0, dtype=np.float64)
    if x.shape[1] < 2:
        x = np.pad(x, ((0, 0), (0, 2 - x.shape[1])))
    _, vecs = np.linalg.eigh(x.T @ x)
    comps = vecs[:, ::-1][:, :2]
    signs = np.sign(comps[np.abs(comps).argmax(axis=0), [0, 1]])
    return x @ (comps * np.where(signs == 0, 1, signs))


def _umap(vectors: np.ndarray, fit_idx: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    import umap  # imported lazily: numba compilation on first use

    n_fit = len(fit_idx)
    reducer = umap.UMAP(n_components=2, n_neighbors=min(params["n_neighbors"], max(n_fit - 1, 2)),
                        min_dist=params["min_dist"], metric="euclidean", random_state=params["seed"], n_jobs=1,
                        init="spectral" if n_fit > 4 else "random")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n_jobs overridden by random_state; disconnected duplicate points
        fitted = reducer.fit_transform(vectors[fit_idx])
        out = np.empty((len(vectors), 2))
        out[fit_idx] = fitted
        rest = np.setdiff1d(np.arange(len(vectors)), fit_idx)
        if len(rest):
            out[rest] = reducer.transform(vectors[rest])
    return out


def compute_projection(vectors: np.ndarray, strata: np.ndarray, params: dict[str, Any]) -> tuple[np.ndarray, str]:
    """Project (N, d) vectors to (N, 2) float32 and describe exactly what was fitted on what."""
    n = len(vectors)
    if n < 3:
        raise ValueError(f"A projection needs at least 3 embedded items; this run has {n}.")
    if params["method"] == "pca":
        return _pca(vectors).astype(np.float32), f"PCA on all {n:,} points"
    fit_idx = stratified_sample(strata, params["sample_size"], seed=params["seed"])
    n_neighbors = min(params["n_neighbors"], max(len(fit_idx) - 1, 2))
    head = f"UMAP (n_neighbors={n_neighbors}, min_dist={params['min_dist']:g}, seed {params['seed']})"
    if n_neighbors != params["n_neighbors"]:
        head += f" [n_neighbors lowered from {params['n_neighbors']} to fit {len(fit_idx)} points]"
    coords = _umap(vectors, fit_idx, params).astype(np.float32)
    if len(fit_idx) < n:
        return coords, (f"{head} fitted on a stratified sample of {len(fit_idx):,} of {n:,} points (by modality "
                        "and category) and applied to the rest with transform")
    return coords, f"{head} fitted on all {n:,} points"


def _items(con, run_id: str) -> pd.DataFrame:
    """Every embedded item with its product, category, split, label text, image path and correctness."""
    run = con.execute("SELECT eval_set, threshold FROM runs WHERE run_id = ?", [run_id]).fetchone()
    if run is None:
        raise KeyError(f"Run {run_id!r} not found. See `python -m workbench runs`.")
    eval_set, threshold = run
    row = con.execute("SELECT payload FROM run_artifacts WHERE run_id = ? AND kind = 'curves'", [run_id]).fetchone()
    per_category = (json.loads(row[0]).get("per_category_thresholds") or {}) if row else {}
    sql = """
        WITH pos AS (
            SELECT p.image_id, p.text_id, p.split, s.score,
                   s.score >= coalesce(pc.t, ?) AS right_
            FROM pairs p JOIN scores s ON s.run_id = ? AND s.pair_id = p.pair_id
            JOIN images i ON i.eval_set = p.eval_set AND i.image_id = p.image_id
            LEFT JOIN products pr ON pr.eval_set = p.eval_set AND pr.product_id = i.product_id
            LEFT JOIN (SELECT unnest(?::VARCHAR[]) AS category, unnest(?::DOUBLE[]) AS t) pc
                   ON pc.category = pr.category
            WHERE p.eval_set = ? AND p.label = 1 AND p.split = 'test'
        ),
        splits AS (
            SELECT image_id AS item_id, 'image' AS modality, any_value(split) AS split FROM pairs
            WHERE eval_set = ? GROUP BY 1
            UNION ALL
            SELECT text_id, 'text', any_value(split) FROM pairs WHERE eval_set = ? GROUP BY 1
        ),
        correct AS (
            SELECT image_id AS item_id, 'image' AS modality, bool_and(right_) AS correct FROM pos GROUP BY 1
            UNION ALL
            SELECT text_id, 'text', bool_and(right_) FROM pos GROUP BY 1
        ),
        ranked AS (  -- an item's pair kind: the first of positive, labelled, attribute, hard, random it is in
            SELECT image_id, text_id, pair_kind, CASE pair_kind WHEN 'positive' THEN 0 WHEN 'labelled' THEN 1
                   WHEN 'attribute' THEN 2 WHEN 'hard' THEN 3 ELSE 4 END AS rank_ FROM pairs WHERE eval_set = ?
        ),
        kinds AS (
            SELECT image_id AS item_id, 'image' AS modality, arg_min(pair_kind, rank_) AS pair_kind FROM ranked
            GROUP BY 1
            UNION ALL
            SELECT text_id, 'text', arg_min(pair_kind, rank_) FROM ranked GROUP BY 1
        )
        SELECT e.item_id, e.modality, coalesce(i.product_id, t.product_id) AS product_id, pr.category,
               sp.split, CASE WHEN e.modality = 'text' THEN t.text ELSE regexp_extract(i.path, '[^/\\\\]+$')
               END AS label_text, i.path AS image_path, c.correct, t.language, k.pair_kind
        FROM run_embeddings e
        LEFT JOIN images i ON e.modality = 'image' AND i.eval_set = ? AND i.image_id = e.item_id
        LEFT JOIN texts t ON e.modality = 'text' AND t.eval_set = ? AND t.text_id = e.item_id
        LEFT JOIN products pr ON pr.eval_set = ? AND pr.product_id = coalesce(i.product_id, t.product_id)
        LEFT JOIN splits sp ON sp.item_id = e.item_id AND sp.modality = e.modality
        LEFT JOIN correct c ON c.item_id = e.item_id AND c.modality = e.modality
        LEFT JOIN kinds k ON k.item_id = e.item_id AND k.modality = e.modality
        WHERE e.run_id = ?
        ORDER BY e.modality, e.item_id
    """
    cats, ts = list(per_category), [float(v) for v in per_category.values()]
    thr = float(threshold) if threshold is not None else 0.0
    return store.query_frame(con, sql, [thr, run_id, cats, ts, eval_set, eval_set, eval_set, eval_set, eval_set,
                                        eval_set, eval_set, run_id])


def _finish(items: pd.DataFrame, x: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    frame = items.drop(columns=["vector"], errors="ignore").copy()
    frame["x"], frame["y"] = np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.float32)
    frame["correct"] = frame["correct"].astype(object).where(frame["correct"].notna(), None)
    frame["correct"] = frame["correct"].map(lambda v: None if v is None else bool(v))
    return frame[list(FRAME_COLUMNS)].reset_index(drop=True)


def get_projection(run_id: str, *, db=None, method: str = "umap", n_neighbors: int = 15, min_dist: float = 0.1,
                   sample_size: int = 5000, seed: int = 0) -> ProjectionResult:
    """The 2-D map of a run's test-split joint-space embeddings, computed once per parameter set and cached.

    Raises ``KeyError`` for an unknown run and ``ValueError`` for bad parameters or a run without embeddings.
    """
    params = normalise_params(method, n_neighbors=n_neighbors, min_dist=min_dist, sample_size=sample_size, seed=seed)
    with store.connect(db) as con:
        items = _items(con, run_id)
        if items.empty:
            raise ValueError(f"Run {run_id!r} has no stored joint-space embeddings to project.")
        key = params_key(params, len(items))
        cached = store.query_frame(
            con, "SELECT modality, item_id, x, y, params FROM projections WHERE run_id = ? AND params_key = ?",
            [run_id, key])
    if len(cached) == len(items):
        merged = items.merge(cached, on=["modality", "item_id"], how="left")
        if merged["x"].notna().all():
            stored = json.loads(merged["params"].iloc[0])
            return ProjectionResult(_finish(merged, merged["x"], merged["y"]), params, stored["description"],
                                    from_cache=True)
    with store.connect(db) as con:  # vectors only on a cache miss: a revisit reads coordinates alone
        stored = store.query_frame(con, "SELECT modality, item_id, vector FROM run_embeddings WHERE run_id = ?",
                                   [run_id])
    stored = items[["modality", "item_id"]].merge(stored, on=["modality", "item_id"], how="left")
    vectors = np.stack([np.asarray(v, dtype=np.float32) for v in stored["vector"]])
    strata = (items["modality"].astype(str) + "|" + items["category"].astype(str)).to_numpy()
    coords, description = compute_projection(vectors, strata, params)
    payload = json.dumps({**params, "description": description})
    rows = pd.DataFrame({"run_id": run_id, "params_key": key, "params": payload, "modality": items["modality"],
                         "item_id": items["item_id"], "x": coords[:, 0], "y": coords[:, 1]})
    try:
        with store.connect(db) as con, store.transaction(con):
            con.execute("DELETE FROM projections WHERE run_id = ? AND params_key = ?", [run_id, key])
            store.insert_frame(con, "projections", rows)
    except Exception as exc:  # a concurrent session wrote the same projection first; ours is identical
        import duckdb

        if not isinstance(exc, duckdb.Error):
            raise
    return ProjectionResult(_finish(items, coords[:, 0], coords[:, 1]), params, description)


def clear_projections(run_id: str | None = None, *, db=None) -> int:
    """Drop cached projections (of one run, or all); returns the number of rows deleted."""
    with store.connect(db) as con:
        sql, args = ("DELETE FROM projections WHERE run_id = ?", [run_id]) if run_id else (
            "DELETE FROM projections", [])
        before = con.execute("SELECT count(*) FROM projections").fetchone()[0]
        con.execute(sql, args)
        return int(before - con.execute("SELECT count(*) FROM projections").fetchone()[0])
