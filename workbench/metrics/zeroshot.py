"""Zero-shot classification: each image is scored against one text vector per class."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._validation import check_ks, check_matrix, check_positive_int

__all__ = ["zeroshot_metrics"]


def zeroshot_metrics(
    image_vecs: Any,
    class_vecs: Any,
    labels: Any,
    *,
    ks: Any = (1, 5),
    chunk_size: int = 4096,
) -> dict[str, float]:
    """Top-k accuracy and mean per-class recall of zero-shot classification by dot product.

    ``image_vecs`` (N, D), ``class_vecs`` (C, D) (caller normalises), ``labels`` (N,) ints in [0, C).
    ``acc@k``: fraction of images whose true class is among the k highest-scoring classes (pessimistic ties: a
    class tied with the true one ranks above it; k >= C gives 1). ``mean_per_class_recall``: top-1 recall
    averaged over the classes that occur in ``labels``.
    """
    x = check_matrix(image_vecs, "image_vecs")
    c = check_matrix(class_vecs, "class_vecs")
    ks_t = check_ks(ks)
    chunk_size = check_positive_int("chunk_size", chunk_size)
    lab = np.asarray(labels)
    if x.shape[1] != c.shape[1]:
        raise ValueError(f"image_vecs have dimension {x.shape[1]} but class_vecs have {c.shape[1]}")
    if lab.shape != (x.shape[0],) or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be (N,) = ({x.shape[0]},) ints; got shape {lab.shape}, dtype {lab.dtype}")
    n_classes = c.shape[0]
    if x.shape[0] == 0 or n_classes == 0:
        raise ValueError(f"need at least one image and one class; got {x.shape[0]} and {n_classes}")
    out_of_range = (lab < 0) | (lab >= n_classes)
    if out_of_range.any():
        raise ValueError(f"labels must lie in [0, {n_classes}); got {np.unique(lab[out_of_range])[:5].tolist()}")
    ranks = np.empty(x.shape[0], dtype=np.int64)
    c_t = c.T
    for a in range(0, x.shape[0], chunk_size):
        s = x[a : a + chunk_size] @ c_t
        true = s[np.arange(s.shape[0]), lab[a : a + chunk_size]]
        ranks[a : a + chunk_size] = np.count_nonzero(s >= true[:, None], axis=1)
    out = {f"acc@{k}": float(np.mean(ranks <= k)) for k in ks_t}
    top1 = (ranks == 1).astype(np.float64)
    hits = np.bincount(lab, weights=top1, minlength=n_classes)
    counts = np.bincount(lab, minlength=n_classes)
    present = counts > 0
    out["mean_per_class_recall"] = float(np.mean(hits[present] / counts[present]))
    return out
