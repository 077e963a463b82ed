"""Zero-shot classification: each image is scored against one prompt per class; the true class's rank decides.

One implementation for every caller: the run's evaluation stores :func:`zeroshot_ranks` of its head's scores and
derives the aggregates with :func:`zeroshot_metrics_from_ranks`; :func:`zeroshot_metrics` does both for vectors.
Ties are pessimistic by default, so a scorer that cannot tell the classes apart earns no credit for it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._validation import check_choice, check_ks, check_matrix, check_positive_int
from .retrieval import TIE_POLICIES

__all__ = ["UNDEFINED_POLICIES", "zeroshot_metrics", "zeroshot_metrics_from_ranks", "zeroshot_ranks"]

UNDEFINED_POLICIES: dict[str, str] = {
    "zeroshot/ties": "ties='pessimistic' (default): a class scoring equal to the true class ranks above it, so a "
    "scorer that gives every class the same score ranks the true class last (acc@1 = 0 when there are at least "
    "two classes). 'optimistic': it ranks below. 'average': the mean of the two (fractional ranks).",
}


def _check_labels(labels: Any, n_images: int, n_classes: int) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.shape != (n_images,) or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be (N,) = ({n_images},) ints; got shape {lab.shape}, dtype {lab.dtype}")
    if n_images == 0 or n_classes == 0:
        raise ValueError(f"need at least one image and one class; got {n_images} and {n_classes}")
    out_of_range = (lab < 0) | (lab >= n_classes)
    if out_of_range.any():
        raise ValueError(f"labels must lie in [0, {n_classes}); got {np.unique(lab[out_of_range])[:5].tolist()}")
    return lab.astype(np.int64)


def _ranks(scores: np.ndarray, labels: np.ndarray, ties: str) -> np.ndarray:
    true = scores[np.arange(scores.shape[0]), labels][:, None]
    at_least = np.count_nonzero(scores >= true, axis=1)  # the true class itself included
    above = np.count_nonzero(scores > true, axis=1)
    if ties == "pessimistic":
        return at_least.astype(np.float64)
    if ties == "optimistic":
        return above + 1.0
    return (at_least + above + 1) / 2.0


def zeroshot_ranks(scores: Any, labels: Any, *, ties: str = "pessimistic") -> np.ndarray:
    """1-based rank (N,) of each image's true class among its (N, C) class scores, ties per ``ties``.

    ``labels`` (N,) ints in [0, C). Ranks are whole numbers except under ``ties='average'``.
    """
    check_choice("ties", ties, TIE_POLICIES)
    s = check_matrix(scores, "scores")
    return _ranks(s, _check_labels(labels, s.shape[0], s.shape[1]), ties)


def zeroshot_metrics_from_ranks(ranks: Any, labels: Any, *, ks: Any = (1, 5)) -> dict[str, float]:
    """``acc@k`` and ``mean_per_class_recall`` from true-class ranks (N,) and labels (N,) ints >= 0.

    ``acc@k``: fraction of images whose true class ranks at most k. ``mean_per_class_recall``: top-1 recall
    (rank <= 1) averaged over the classes that occur in ``labels``.
    """
    ks_t = check_ks(ks)
    r = np.asarray(ranks, dtype=np.float64)
    lab = np.asarray(labels)
    if r.ndim != 1 or r.shape[0] == 0 or lab.shape != r.shape:
        raise ValueError(f"ranks and labels must be non-empty 1-D arrays of one length; got {r.shape}, {lab.shape}")
    if not np.issubdtype(lab.dtype, np.integer) or (lab < 0).any():
        raise ValueError(f"labels must be ints >= 0; got dtype {lab.dtype}")
    bad = np.isnan(r) | (r < 1)
    if bad.any():
        raise ValueError(f"ranks must be >= 1 and not NaN; got {r[bad][:5].tolist()}")
    out = {f"acc@{k}": float(np.mean(r <= k)) for k in ks_t}
    hits = np.bincount(lab, weights=(r <= 1).astype(np.float64))
    counts = np.bincount(lab)
    present = counts > 0
    out["mean_per_class_recall"] = float(np.mean(hits[present] / counts[present]))
    return out


def zeroshot_metrics(
    image_vecs: Any,
    class_vecs: Any,
    labels: Any,
    *,
    ks: Any = (1, 5),
    chunk_size: int = 4096,
    ties: str = "pessimistic",
) -> dict[str, float]:
    """Top-k accuracy and mean per-class recall of zero-shot classification by dot product.

    ``image_vecs`` (N, D), ``class_vecs`` (C, D) (caller normalises), ``labels`` (N,) ints in [0, C). Ranks as
    :func:`zeroshot_ranks` (k >= C gives acc@k = 1), metrics as :func:`zeroshot_metrics_from_ranks`.
    """
    x = check_matrix(image_vecs, "image_vecs")
    c = check_matrix(class_vecs, "class_vecs")
    check_ks(ks)
    check_choice("ties", ties, TIE_POLICIES)
    chunk_size = check_positive_int("chunk_size", chunk_size)
    if x.shape[1] != c.shape[1]:
        raise ValueError(f"image_vecs have dimension {x.shape[1]} but class_vecs have {c.shape[1]}")
    lab = _check_labels(labels, x.shape[0], c.shape[0])
    c_t = c.T
    ranks = np.concatenate([_ranks(x[a : a + chunk_size] @ c_t, lab[a : a + chunk_size], ties)
                            for a in range(0, x.shape[0], chunk_size)])
    return zeroshot_metrics_from_ranks(ranks, lab, ks=ks)
