"""Embedding-space diagnostics: modality gap, alignment and uniformity (Wang & Isola 2020), hubness."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats as sps

from ._validation import check_matrix, check_positive_int

__all__ = ["modality_gap", "alignment", "uniformity", "hubness"]


def _normalise(x: Any, name: str) -> np.ndarray:
    a = check_matrix(x, name).astype(np.float64, copy=False)
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    n_zero = int(np.count_nonzero(norms == 0))
    if n_zero:
        raise ValueError(f"{name} has {n_zero} zero vector(s); they cannot be L2-normalised")
    if a.shape[0] == 0:
        raise ValueError(f"{name} is empty; at least one vector is required")
    return a / norms


def modality_gap(img: Any, txt: Any) -> float:
    """L2 distance between the centroids of L2-normalised image (N, D) and text (M, D) vectors; in [0, 2]."""
    a, b = _normalise(img, "img"), _normalise(txt, "txt")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"img has dimension {a.shape[1]} but txt has {b.shape[1]}")
    return float(np.linalg.norm(a.mean(axis=0) - b.mean(axis=0)))


def alignment(img: Any, txt: Any) -> float:
    """Mean squared distance ||x_i - y_i||^2 of matched L2-normalised pairs (N, D), (N, D); in [0, 4]."""
    a, b = _normalise(img, "img"), _normalise(txt, "txt")
    if a.shape != b.shape:
        raise ValueError(f"img and txt must be matched pairs of equal shape; got {a.shape} and {b.shape}")
    return float(np.mean(np.sum((a - b) ** 2, axis=1)))


def uniformity(x: Any, *, t: float = 2.0, max_points: int = 5000, seed: int = 0, chunk_size: int = 1024) -> float:
    """log mean over pairs i < j of exp(-t ||x_i - x_j||^2) of L2-normalised (N, D) vectors.

    Lower is more uniform.

    At most ``max_points`` rows are used (a seeded sample without replacement); pairs are summed in
    chunks.
    """
    if not t > 0:
        raise ValueError(f"t={t!r} must be > 0")
    max_points = check_positive_int("max_points", max_points, minimum=2)
    chunk_size = check_positive_int("chunk_size", chunk_size)
    a = _normalise(x, "x")
    n = a.shape[0]
    if n < 2:
        raise ValueError(f"uniformity needs at least 2 vectors; got {n}")
    if n > max_points:
        a = a[np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))]
        n = max_points
    total = 0.0
    for start in range(0, n - 1, chunk_size):
        block = a[start : start + chunk_size]
        sq = np.maximum(2.0 - 2.0 * (block @ a[start:].T), 0.0)
        rows, cols = np.triu_indices(block.shape[0], k=1, m=n - start)
        total += float(np.exp(-t * sq[rows, cols]).sum())
    return float(np.log(total / (n * (n - 1) / 2)))


def hubness(queries: Any, gallery: Any, *, k: int = 10, chunk_size: int = 1024) -> float:
    """Skewness of the k-occurrence counts N_k (G,): how often each gallery item is in a query's cosine top k.

    ``queries`` (Q, D), ``gallery`` (G, D); higher skew means a few "hub" items dominate the neighbour lists.
    """
    k = check_positive_int("k", k)
    chunk_size = check_positive_int("chunk_size", chunk_size)
    q, g = _normalise(queries, "queries"), _normalise(gallery, "gallery")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"queries have dimension {q.shape[1]} but gallery has {g.shape[1]}")
    n_g = g.shape[0]
    if k >= n_g:
        raise ValueError(f"k={k} must be smaller than the gallery size {n_g}")
    counts = np.zeros(n_g, dtype=np.int64)
    g_t = g.T
    for start in range(0, q.shape[0], chunk_size):
        s = q[start : start + chunk_size] @ g_t
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        counts += np.bincount(top.ravel(), minlength=n_g)
    if counts.std() == 0:
        return 0.0
    return float(sps.skew(counts))
