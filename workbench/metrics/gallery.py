"""Gallery-size curves: how retrieval degrades as distractors are added, random vs same-category."""

from __future__ import annotations

from typing import Any

import numpy as np

from workbench.metrics._validation import check_choice, check_ks, check_matrix

DISTRACTOR_MODES = ("random", "same_category")


def gallery_size_curve(
    scores: Any,
    query_groups: Any,
    gallery_groups: Any,
    query_categories: Any,
    gallery_categories: Any,
    *,
    sizes: Any = (10, 25, 50, 100, 250, 500, 1000),
    mode: str = "random",
    ks: Any = (1, 5),
    seed: int = 0,
) -> dict[int, dict[str, float]]:
    """Success@k and MRR (first positive, pessimistic ties) per gallery size for a dense (Q, G) score matrix.

    For each query the gallery is its positives (same group) plus ``size - n_positives`` distractors drawn without
    replacement, seeded: from all other items (``mode="random"``) or from items of the query's category
    (``"same_category"``, topped up with random items when the category is too small; the share topped up is
    reported as ``topped_up``). Queries without positives are excluded and counted. Sizes larger than the
    gallery are skipped.
    """
    s = check_matrix(scores, "scores")
    check_choice("mode", mode, DISTRACTOR_MODES)
    ks_t = check_ks(ks)
    q_groups, g_groups = np.asarray(query_groups), np.asarray(gallery_groups)
    q_cats, g_cats = np.asarray(query_categories), np.asarray(gallery_categories)
    if len(q_groups) != s.shape[0] or len(g_groups) != s.shape[1]:
        raise ValueError(f"groups have lengths {len(q_groups)}, {len(g_groups)} but scores are {s.shape}")
    rng = np.random.default_rng(seed)
    out: dict[int, dict[str, float]] = {}
    for size in sorted({int(n) for n in sizes}):
        if size < 2 or size > s.shape[1]:
            continue
        ranks, topped, skipped = [], 0, 0
        for q in range(s.shape[0]):
            positive = g_groups == q_groups[q]
            n_pos = int(positive.sum())
            if n_pos == 0:
                skipped += 1
                continue
            best = s[q, positive].max()
            others = np.flatnonzero(~positive)
            need = max(0, min(size - n_pos, len(others)))
            if mode == "same_category":
                same = others[g_cats[others] == q_cats[q]]
                take = rng.choice(same, size=min(need, len(same)), replace=False)
                if len(take) < need:
                    rest = np.setdiff1d(others, same, assume_unique=True)
                    take = np.concatenate([take, rng.choice(rest, size=need - len(take), replace=False)])
                    topped += 1
            else:
                take = rng.choice(others, size=need, replace=False)
            ranks.append(1 + int((s[q, take] >= best).sum()))
        r = np.asarray(ranks, dtype=float)
        row = {f"success@{k}": float((r <= k).mean()) if len(r) else float("nan") for k in ks_t}
        row.update(mrr=float((1 / r).mean()) if len(r) else float("nan"), n_queries=len(r),
                   n_queries_without_positive=skipped, topped_up=topped / max(len(r), 1))
        out[size] = row
    return out
