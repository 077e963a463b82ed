"""Retrieval metrics by group relevance, from a dense score matrix or chunk by chunk from embeddings.

Query i is relevant to gallery item j iff ``query_groups[i] == gallery_groups[j]`` (product ids). A
positive's rank is 1 + the number of gallery items ranked above it, found by counting (items scoring >= the
positive) rather than sorting each row, so the cost is one pass over each row per positive (rows with
very many positives fall back to one sort of that row). On request each query's top-k list is kept too, ordered
by the same tie policy, so a view can show the ranking the metrics were computed from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._validation import check_choice, check_ks, check_matrix, check_positive_int

__all__ = [
    "UNDEFINED_POLICIES",
    "TIE_POLICIES",
    "RetrievalResult",
    "retrieval_metrics",
    "retrieval_metrics_from_embeddings",
    "encode_groups",
]

TIE_POLICIES: tuple[str, ...] = ("pessimistic", "optimistic", "average")

UNDEFINED_POLICIES: dict[str, str] = {
    "retrieval/no_positive": "Queries whose group has no gallery item: skipped and counted. Their per-query "
    "values are NaN, they are excluded from every mean/median, and aggregate['n_queries_without_positive'] "
    "reports how many. If no query has a positive, every aggregate metric is NaN.",
    "retrieval/ties": "ties='pessimistic' (default): a gallery item scoring equal to a positive ranks "
    "above it. 'optimistic': it ranks below. 'average': each positive's rank is the mean of the two "
    "(fractional); metrics are evaluated on those ranks. Positives tied with each other take consecutive "
    "ranks.",
    "retrieval/nan_scores": "NaN scores raise ValueError naming how many; non-finite embeddings raise too.",
    "retrieval/precision_denominator": "precision@k divides the relevant items in the top k by k, also when the "
    "query has fewer than k positives (so its maximum is min(n_positives, k) / k) or the gallery has fewer than "
    "k items.",
    "retrieval/top_k": "top-k lists order equal scores by the tie policy: 'pessimistic' lists non-relevant items "
    "first, 'optimistic' relevant ones first, 'average' keeps gallery order; then by gallery index.",
}

_SORT_FALLBACK_POSITIVES = 16  # above this many positives per query one row sort beats repeated passes
_DENSE_BLOCK_ELEMENTS = 1 << 22
_COUNT_BUFFER_BYTES = 1 << 19


@dataclass(frozen=True)
class RetrievalResult:
    """Per-query arrays (Q,) and aggregates (means over queries that have at least one positive).

    ``per_query`` keys: ``n_positives``, ``first_rank``, ``reciprocal_rank``, ``ap``, and per k ``success@k``,
    ``recall@k``, ``precision@k``, ``ndcg@k`` (NaN for queries without positives). ``aggregate`` keys:
    ``success@k``, ``recall@k``, ``precision@k``, ``ndcg@k``, ``mrr``, ``map``, ``median_rank``, ``mean_rank``,
    ``n_queries_without_positive``. ``top_k_index`` / ``top_k_score`` (Q, min(top_k, G)): each query's
    highest-ranked gallery indices and their scores, best first, when asked for with ``top_k``; else None.
    """

    per_query: dict[str, np.ndarray]
    aggregate: dict[str, float]
    n_queries: int
    n_queries_without_positive: int
    ties: str
    ks: tuple[int, ...] = field(default=(1, 5, 10))
    top_k_index: np.ndarray | None = None
    top_k_score: np.ndarray | None = None


def _group_array(groups: Any) -> np.ndarray:
    arr = np.asarray(groups)
    if arr.ndim <= 1 or isinstance(groups, np.ndarray):
        return arr
    # A sequence of tuples (composite ids) would become 2-D; keep one object per id instead.
    out = np.empty(len(groups), dtype=object)
    for i, g in enumerate(groups):
        out[i] = g
    return out


def encode_groups(query_groups: Any, gallery_groups: Any) -> tuple[np.ndarray, np.ndarray]:
    """Map two arrays of hashable group ids (Q,), (G,) to shared int64 codes."""
    qg = _group_array(query_groups)
    gg = _group_array(gallery_groups)
    if qg.ndim != 1 or gg.ndim != 1:
        raise ValueError(f"groups must be 1-D; got query_groups {qg.shape}, gallery_groups {gg.shape}")
    if qg.dtype.kind != gg.dtype.kind:
        qg, gg = qg.astype(object), gg.astype(object)
    try:
        _, inv = np.unique(np.concatenate([qg, gg]), return_inverse=True)
        codes = inv.astype(np.int64).ravel()
    except TypeError:
        table: dict[Any, int] = {}
        codes = np.array([table.setdefault(g, len(table)) for g in (*qg.tolist(), *gg.tolist())], dtype=np.int64)
    return codes[: qg.shape[0]], codes[qg.shape[0] :]


class _Positives:
    """Positive gallery indices of every query in CSR form."""

    def __init__(self, q_codes: np.ndarray, g_codes: np.ndarray) -> None:
        self.q_codes, self.g_codes = q_codes, g_codes
        self.g_order = np.argsort(g_codes, kind="stable")
        g_sorted = g_codes[self.g_order]
        self.start = np.searchsorted(g_sorted, q_codes, side="left")
        self.n_pos = np.searchsorted(g_sorted, q_codes, side="right") - self.start

    def block(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Flat (local query id, gallery index) of the positives of queries a..b-1, and their counts."""
        n_pos = self.n_pos[a:b]
        total = int(n_pos.sum())
        qid = np.repeat(np.arange(b - a), n_pos)
        seg = np.cumsum(n_pos) - n_pos
        offsets = np.arange(total) - seg[qid]
        gidx = self.g_order[self.start[a:b][qid] + offsets]
        return qid, gidx, n_pos


def _count_at_least(rows: np.ndarray, thr: np.ndarray, strict: bool) -> np.ndarray:
    """Per row, how many entries are >= (or >) that row's threshold.

    Compares a few rows at a time into a cache-sized buffer and counts each row with the 1-D count_nonzero,
    about twice as fast as one (B, G) comparison followed by count_nonzero(axis=1).
    """
    n_rows, n_cols = rows.shape
    step = max(1, _COUNT_BUFFER_BYTES // max(n_cols, 1))
    buf = np.empty((min(step, n_rows), n_cols), dtype=bool)
    op = np.greater if strict else np.greater_equal
    out = np.empty(n_rows, dtype=np.int64)
    for a in range(0, n_rows, step):
        b = min(a + step, n_rows)
        block = buf[: b - a]
        op(rows[a:b], thr[a:b, None], out=block)
        for i in range(b - a):
            out[a + i] = np.count_nonzero(block[i])
    return out


def _block_ranks(scores: np.ndarray, qid: np.ndarray, gidx: np.ndarray, n_pos: np.ndarray, ties: str) -> tuple:
    """Ranks of every positive of a block of queries, positives ordered by descending score within a query."""
    total = qid.shape[0]
    if total == 0:
        empty = np.zeros(0)
        return qid, empty.astype(np.int64), empty
    ps = scores[qid, gidx]
    order = np.lexsort((-ps, qid))
    ps = ps[order]
    seg = np.cumsum(n_pos) - n_pos
    idx = np.arange(total)
    m = idx - seg[qid] + 1
    new_run = np.ones(total, dtype=bool)
    new_run[1:] = (qid[1:] != qid[:-1]) | (ps[1:] != ps[:-1])
    run_start = np.maximum.accumulate(np.where(new_run, idx, 0))
    run_id = np.cumsum(new_run) - 1
    run_end = np.append(np.flatnonzero(new_run)[1:] - 1, total - 1)[run_id]
    pos_ge = run_end - seg[qid] + 1
    pos_gt = run_start - seg[qid]

    need_ge = ties in ("pessimistic", "average")
    need_gt = ties in ("optimistic", "average")
    all_ge = np.zeros(total, dtype=np.int64)
    all_gt = np.zeros(total, dtype=np.int64)
    by_pass = n_pos <= _SORT_FALLBACK_POSITIVES
    for j in range(int(n_pos[by_pass].max(initial=0))):
        rows = np.flatnonzero(by_pass & (n_pos > j))
        block = scores if rows.shape[0] == scores.shape[0] else scores[rows]
        where = seg[rows] + j
        if need_ge:
            all_ge[where] = _count_at_least(block, ps[where], strict=False)
        if need_gt:
            all_gt[where] = _count_at_least(block, ps[where], strict=True)
    for r in np.flatnonzero(~by_pass & (n_pos > 0)):
        row_sorted = np.sort(scores[r])
        sl = slice(seg[r], seg[r] + n_pos[r])
        g = row_sorted.shape[0]
        all_ge[sl] = g - np.searchsorted(row_sorted, ps[sl], side="left")
        all_gt[sl] = g - np.searchsorted(row_sorted, ps[sl], side="right")

    if ties == "pessimistic":
        rank = (m + all_ge - pos_ge).astype(np.float64)
    elif ties == "optimistic":
        rank = (m + all_gt - pos_gt).astype(np.float64)
    else:
        rank = m + 0.5 * ((all_ge - pos_ge) + (all_gt - pos_gt))
    return qid, m, rank


def _block_top(
    scores: np.ndarray, q_codes: np.ndarray, g_codes: np.ndarray, k: int, ties: str
) -> tuple[np.ndarray, np.ndarray]:
    """The k highest-ranked gallery indices (B, k) of a block of queries and their scores, best first.

    One partition finds each row's k largest; rows where more items tie at the k-th score than fit are redone
    with every tied item as a candidate. Candidates sort by score, then relevance as the tie policy orders
    it, then index.
    """
    n_g = scores.shape[1]
    rows = np.arange(scores.shape[0])[:, None]
    index = np.argpartition(scores, n_g - k, axis=1)[:, n_g - k :]
    kth = scores[rows[:, 0], index[:, 0]]  # position n_g - k holds each row's k-th largest score

    def tie_key(relevant: np.ndarray) -> np.ndarray:
        return {"pessimistic": relevant, "optimistic": ~relevant}.get(ties, np.zeros_like(relevant))

    top = scores[rows, index]
    order = np.lexsort((index, tie_key(g_codes[index] == q_codes[:, None]), -top), axis=-1)
    index, top = np.take_along_axis(index, order, axis=1), np.take_along_axis(top, order, axis=1)
    crowded = np.flatnonzero(np.count_nonzero(scores >= kth[:, None], axis=1) > k)
    for i in crowded:
        cand = np.flatnonzero(scores[i] >= kth[i])
        s = scores[i, cand]
        order = np.lexsort((cand, tie_key(g_codes[cand] == q_codes[i]), -s))[:k]
        index[i], top[i] = cand[order], s[order]
    return index, top.astype(np.float64)


def _finish(
    n_pos: np.ndarray,
    qid: np.ndarray,
    m: np.ndarray,
    rank: np.ndarray,
    ks: tuple[int, ...],
    ties: str,
    top: tuple[np.ndarray, np.ndarray] | None,
) -> RetrievalResult:
    n_q = n_pos.shape[0]
    valid = n_pos > 0
    denom = np.where(valid, n_pos, 1).astype(np.float64)
    nan = np.full(n_q, np.nan)

    def per_query_mean(weights: np.ndarray) -> np.ndarray:
        return np.where(valid, np.bincount(qid, weights=weights, minlength=n_q) / denom, np.nan)

    first = m == 1
    first_rank = nan.copy()
    first_rank[qid[first]] = rank[first]
    per_query: dict[str, np.ndarray] = {
        "n_positives": n_pos.astype(np.int64),
        "first_rank": first_rank,
        "reciprocal_rank": 1.0 / first_rank,
        "ap": per_query_mean(m / rank),
    }
    gain = 1.0 / np.log2(1.0 + rank)
    discounts = 1.0 / np.log2(np.arange(2, max(ks) + 2))
    ideal_table = np.concatenate(([1.0], np.cumsum(discounts)))
    with np.errstate(invalid="ignore"):
        for k in ks:
            hit = rank <= k
            per_query[f"success@{k}"] = np.where(valid, first_rank <= k, np.nan)
            per_query[f"recall@{k}"] = per_query_mean(hit.astype(np.float64))
            per_query[f"precision@{k}"] = np.where(valid, np.bincount(qid, weights=hit, minlength=n_q) / k, np.nan)
            dcg = np.bincount(qid, weights=np.where(hit, gain, 0.0), minlength=n_q)
            ideal = ideal_table[np.minimum(n_pos, k)]
            per_query[f"ndcg@{k}"] = np.where(valid, dcg / ideal, np.nan)

    n_valid = int(valid.sum())

    def agg(values: np.ndarray, fn: Any = np.mean) -> float:
        return float(fn(values[valid])) if n_valid else float("nan")

    aggregate: dict[str, float] = {}
    for k in ks:
        aggregate[f"success@{k}"] = agg(per_query[f"success@{k}"])
        aggregate[f"recall@{k}"] = agg(per_query[f"recall@{k}"])
        aggregate[f"precision@{k}"] = agg(per_query[f"precision@{k}"])
        aggregate[f"ndcg@{k}"] = agg(per_query[f"ndcg@{k}"])
    aggregate["mrr"] = agg(per_query["reciprocal_rank"])
    aggregate["map"] = agg(per_query["ap"])
    aggregate["median_rank"] = agg(first_rank, np.median)
    aggregate["mean_rank"] = agg(first_rank)
    aggregate["n_queries_without_positive"] = float(n_q - n_valid)
    top_index, top_score = top if top is not None else (None, None)
    return RetrievalResult(per_query, aggregate, n_q, n_q - n_valid, ties, ks, top_index, top_score)


def _prepare(
    n_queries: int, n_gallery: int, query_groups: Any, gallery_groups: Any, ks: Any, ties: str, top_k: int
) -> tuple[_Positives, tuple[int, ...]]:
    check_choice("ties", ties, TIE_POLICIES)
    ks_t = check_ks(ks)
    check_positive_int("top_k", top_k, minimum=0)
    q_codes, g_codes = encode_groups(query_groups, gallery_groups)
    if q_codes.shape[0] != n_queries or g_codes.shape[0] != n_gallery:
        raise ValueError(
            f"scores cover {n_queries} queries x {n_gallery} gallery items but query_groups has "
            f"{q_codes.shape[0]} and gallery_groups has {g_codes.shape[0]}; they must match"
        )
    if n_queries == 0 or n_gallery == 0:
        raise ValueError(f"need at least one query and one gallery item; got {n_queries} x {n_gallery}")
    return _Positives(q_codes, g_codes), ks_t


def _run_blocks(blocks: Any, pos: _Positives, ks: tuple[int, ...], ties: str, top_k: int) -> RetrievalResult:
    qids, ms, ranks, tops = [], [], [], []
    for a, b, block_scores in blocks:
        qid, gidx, n_pos = pos.block(a, b)
        qid_s, m, rank = _block_ranks(block_scores, qid, gidx, n_pos, ties)
        qids.append(qid_s + a)
        ms.append(m)
        ranks.append(rank)
        if top_k:
            k = min(top_k, block_scores.shape[1])
            tops.append(_block_top(block_scores, pos.q_codes[a:b], pos.g_codes, k, ties))
    top = (np.concatenate([t[0] for t in tops]), np.concatenate([t[1] for t in tops])) if tops else None
    return _finish(pos.n_pos, np.concatenate(qids), np.concatenate(ms), np.concatenate(ranks), ks, ties, top)


def retrieval_metrics(
    scores: Any,
    query_groups: Any,
    gallery_groups: Any,
    *,
    ks: Any = (1, 5, 10),
    ties: str = "pessimistic",
    top_k: int = 0,
) -> RetrievalResult:
    """Retrieval metrics from a dense (Q, G) score matrix; groups (Q,) and (G,) define relevance.

    success@k: 1 if any positive is in the top k. recall@k: fraction of the query's positives in the top k.
    precision@k: relevant items in the top k divided by k (not by min(n_positives, k)). reciprocal_rank / mrr:
    1 / rank of the first positive. ap / map: mean over positives of precision at their rank. ndcg@k: binary
    gains, log2(1 + rank) discount, ideal DCG over min(n_positives, k). first_rank / median_rank / mean_rank:
    1-based rank of the first positive. Ties, the precision denominator and queries without positives follow
    ``UNDEFINED_POLICIES``. ``top_k > 0`` also keeps each query's ``top_k`` best gallery items (``top_k_index``,
    ``top_k_score``), so a view can show the very ranking these metrics come from.
    """
    s = check_matrix(scores, "scores")
    n_q, n_g = s.shape
    pos, ks_t = _prepare(n_q, n_g, query_groups, gallery_groups, ks, ties, top_k)
    step = max(1, _DENSE_BLOCK_ELEMENTS // max(n_g, 1))
    blocks = ((a, min(a + step, n_q), s[a : a + step]) for a in range(0, n_q, step))
    return _run_blocks(blocks, pos, ks_t, ties, top_k)


def retrieval_metrics_from_embeddings(
    queries: Any,
    gallery: Any,
    query_groups: Any,
    gallery_groups: Any,
    *,
    ks: Any = (1, 5, 10),
    chunk_size: int = 1024,
    ties: str = "pessimistic",
    top_k: int = 0,
) -> RetrievalResult:
    """Retrieval metrics scoring ``queries`` (Q, D) against ``gallery`` (G, D) by dot product, chunk by chunk.

    Only a (chunk_size, G) block of scores exists at a time; the caller L2-normalises for cosine similarity.
    Same metrics and policies as ``retrieval_metrics``.
    """
    q = check_matrix(queries, "queries")
    g = check_matrix(gallery, "gallery")
    chunk_size = check_positive_int("chunk_size", chunk_size)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"queries have dimension {q.shape[1]} but gallery has {g.shape[1]}; they must match")
    for name, arr in (("queries", q), ("gallery", g)):
        n_bad = int(np.count_nonzero(~np.isfinite(arr)))
        if n_bad:
            raise ValueError(f"{name} contains {n_bad} non-finite value(s); only finite values are allowed")
    n_q, n_g = q.shape[0], g.shape[0]
    pos, ks_t = _prepare(n_q, n_g, query_groups, gallery_groups, ks, ties, top_k)
    g_t = g.T
    blocks = ((a, min(a + chunk_size, n_q), q[a : a + chunk_size] @ g_t) for a in range(0, n_q, chunk_size))
    return _run_blocks(blocks, pos, ks_t, ties, top_k)
