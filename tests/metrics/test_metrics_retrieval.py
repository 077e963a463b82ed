from __future__ import annotations

import numpy as np
import pytest

from workbench.metrics import UNDEFINED_POLICIES, retrieval_metrics, retrieval_metrics_from_embeddings

KS = (1, 3, 5, 10)


def _naive_order(row: np.ndarray, relevant: np.ndarray, ties: str) -> np.ndarray:
    """The whole gallery sorted by a full sort: score, then relevance as the tie policy orders it, then index."""
    index = np.arange(row.shape[0])
    if ties == "pessimistic":
        return np.lexsort((index, relevant, -row))  # among equal scores negatives (False) come first
    if ties == "optimistic":
        return np.lexsort((index, ~relevant, -row))
    return np.lexsort((index, -row))


def _naive_ranks(row: np.ndarray, relevant: np.ndarray, ties: str) -> np.ndarray:
    """1-based ranks of the positives by a full sort (ties broken against / for the positives)."""
    r_pess = np.flatnonzero(relevant[_naive_order(row, relevant, "pessimistic")]) + 1.0
    r_opt = np.flatnonzero(relevant[_naive_order(row, relevant, "optimistic")]) + 1.0
    return {"pessimistic": r_pess, "optimistic": r_opt, "average": (r_pess + r_opt) / 2}[ties]


def _naive(scores: np.ndarray, qg: np.ndarray, gg: np.ndarray, ks: tuple[int, ...], ties: str) -> dict:
    per: dict[str, list[float]] = {"first_rank": [], "reciprocal_rank": [], "ap": []}
    for k in ks:
        per.update({f"success@{k}": [], f"recall@{k}": [], f"precision@{k}": [], f"ndcg@{k}": []})
    skipped = 0
    for i in range(scores.shape[0]):
        relevant = gg == qg[i]
        if not relevant.any():
            skipped += 1
            continue
        r = _naive_ranks(scores[i], relevant, ties)
        n = r.shape[0]
        per["first_rank"].append(r[0])
        per["reciprocal_rank"].append(1 / r[0])
        per["ap"].append(float(np.mean(np.arange(1, n + 1) / r)))
        for k in ks:
            per[f"success@{k}"].append(float(r[0] <= k))
            per[f"recall@{k}"].append(float(np.mean(r <= k)))
            if ties == "average":  # no single list: the positives' mean ranks decide
                per[f"precision@{k}"].append(float(np.sum(r <= k)) / k)
            else:  # literally: the relevant share of the first k of the sorted gallery, over k
                per[f"precision@{k}"].append(float(relevant[_naive_order(scores[i], relevant, ties)[:k]].sum()) / k)
            dcg = sum(1 / np.log2(1 + x) for x in r if x <= k)
            ideal = sum(1 / np.log2(2 + j) for j in range(min(n, k)))
            per[f"ndcg@{k}"].append(dcg / ideal)
    agg = {key: float(np.mean(v)) for key, v in per.items() if key not in ("first_rank", "reciprocal_rank", "ap")}
    agg["mrr"] = float(np.mean(per["reciprocal_rank"]))
    agg["map"] = float(np.mean(per["ap"]))
    agg["median_rank"] = float(np.median(per["first_rank"]))
    agg["mean_rank"] = float(np.mean(per["first_rank"]))
    agg["n_queries_without_positive"] = float(skipped)
    return agg


def _random_case(seed: int, n_q: int = 40, n_g: int = 60, levels: int = 5) -> tuple:
    rng = np.random.default_rng(seed)
    gg = rng.integers(0, 25, n_g)
    gg[:20] = 99  # one product with 20 gallery items: exercises the per-row sort path
    qg = rng.integers(0, 30, n_q)  # ids 25..29 have no gallery item
    qg[0] = 99
    scores = rng.integers(0, levels, (n_q, n_g)).astype(np.float64)  # heavy ties
    return scores, qg, gg


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ties", ["pessimistic", "optimistic", "average"])
def test_matches_naive_reference(seed: int, ties: str) -> None:
    scores, qg, gg = _random_case(seed)
    res = retrieval_metrics(scores, qg, gg, ks=KS, ties=ties)
    ref = _naive(scores, qg, gg, KS, ties)
    assert set(res.aggregate) == set(ref)
    for key, value in ref.items():
        assert res.aggregate[key] == pytest.approx(value, abs=1e-12), key
    assert res.n_queries_without_positive == ref["n_queries_without_positive"] > 0


def test_tiny_hand_computed() -> None:
    # Query "a" has positives at columns 1 (0.5, tied with negative "c") and 3 (0.1): pessimistic ranks 3, 4.
    # Query "b" has its only positive at column 0 (0.2), below all three others: rank 4.
    scores = np.array([[0.9, 0.5, 0.5, 0.1], [0.2, 0.8, 0.3, 0.8]])
    res = retrieval_metrics(scores, np.array(["a", "b"]), np.array(["b", "a", "c", "a"]), ks=(1, 3))
    np.testing.assert_array_equal(res.per_query["first_rank"], [3, 4])
    np.testing.assert_allclose(res.per_query["ap"], [(1 / 3 + 2 / 4) / 2, 1 / 4])
    np.testing.assert_array_equal(res.per_query["success@3"], [1, 0])
    np.testing.assert_array_equal(res.per_query["recall@3"], [0.5, 0])
    np.testing.assert_allclose(res.per_query["precision@3"], [1 / 3, 0])  # denominator k = 3, not n_positives
    np.testing.assert_array_equal(res.per_query["precision@1"], res.per_query["success@1"])
    ideal = 1 + 1 / np.log2(3)
    np.testing.assert_allclose(res.per_query["ndcg@3"], [(1 / np.log2(4)) / ideal, 0])
    assert res.aggregate["mrr"] == pytest.approx((1 / 3 + 1 / 4) / 2)
    assert res.aggregate["median_rank"] == 3.5
    opt = retrieval_metrics(scores, np.array(["a", "b"]), np.array(["b", "a", "c", "a"]), ties="optimistic")
    np.testing.assert_array_equal(opt.per_query["first_rank"], [2, 4])
    avg = retrieval_metrics(scores, np.array(["a", "b"]), np.array(["b", "a", "c", "a"]), ties="average")
    np.testing.assert_array_equal(avg.per_query["first_rank"], [2.5, 4])


def test_queries_without_positive_are_counted_not_dropped() -> None:
    scores = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    res = retrieval_metrics(scores, ["x", "y", "zz"], ["x", "y"], ks=(1,))
    assert res.n_queries_without_positive == 1
    assert res.aggregate["n_queries_without_positive"] == 1.0
    assert np.isnan(res.per_query["success@1"][2]) and np.isnan(res.per_query["first_rank"][2])
    assert res.aggregate["success@1"] == 1.0
    assert "retrieval/no_positive" in UNDEFINED_POLICIES
    none = retrieval_metrics(scores, ["p", "q", "r"], ["x", "y"], ks=(1,))
    assert none.n_queries_without_positive == 3 and np.isnan(none.aggregate["mrr"])


def test_chunked_embeddings_equal_dense() -> None:
    rng = np.random.default_rng(5)
    q = rng.integers(-3, 4, (53, 8)).astype(np.float64)  # small integers: every dot product is exact
    g = rng.integers(-3, 4, (71, 8)).astype(np.float64)
    qg = rng.integers(0, 30, 53)
    gg = rng.integers(0, 30, 71)
    dense = retrieval_metrics(q @ g.T, qg, gg, ks=KS)
    for chunk in (1, 7, 100):
        chunked = retrieval_metrics_from_embeddings(q, g, qg, gg, ks=KS, chunk_size=chunk)
        assert chunked.aggregate == dense.aggregate
        for key, value in dense.per_query.items():
            np.testing.assert_array_equal(chunked.per_query[key], value)


def test_object_and_mixed_group_ids() -> None:
    scores = np.array([[0.9, 0.1], [0.2, 0.8]])
    res = retrieval_metrics(scores, [("p", 1), ("p", 2)], [("p", 1), ("p", 2)], ks=(1,))
    assert res.aggregate["success@1"] == 1.0
    mixed = retrieval_metrics(scores, np.array([1, 2]), np.array(["1", "2"]), ks=(1,))
    assert mixed.n_queries_without_positive == 2  # 1 != "1"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"ties": "random"}, "pessimistic"), ({"ks": (0, 5)}, "positive ints"), ({"ks": ()}, "non-empty")],
)
def test_invalid_options(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        retrieval_metrics(np.eye(2), [0, 1], [0, 1], **kwargs)


def test_nan_and_shape_errors() -> None:
    with pytest.raises(ValueError, match="1 NaN"):
        retrieval_metrics(np.array([[np.nan, 1.0]]), [0], [0, 1])
    with pytest.raises(ValueError, match="must match"):
        retrieval_metrics(np.eye(2), [0, 1, 2], [0, 1])


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic", "average"])
def test_top_k_lists_match_a_full_sort_and_the_ranks(ties: str) -> None:
    scores, qg, gg = _random_case(2)  # five score levels: most of each top-k is decided by the tie policy
    res = retrieval_metrics(scores, qg, gg, ks=KS, ties=ties, top_k=7)
    assert res.top_k_index.shape == res.top_k_score.shape == (scores.shape[0], 7)
    for i in range(scores.shape[0]):
        relevant = gg == qg[i]
        expected = _naive_order(scores[i], relevant, ties)[:7]
        np.testing.assert_array_equal(res.top_k_index[i], expected)
        np.testing.assert_array_equal(res.top_k_score[i], scores[i, expected])
        if ties == "average" or not relevant.any():
            continue
        # the list is the ranking behind the metrics: the first relevant entry sits at first_rank
        hits = np.flatnonzero(relevant[res.top_k_index[i]]) + 1
        first = res.per_query["first_rank"][i]
        assert (hits[0] == first) if first <= 7 else hits.size == 0
        assert hits[hits <= 5].size / 5 == res.per_query["precision@5"][i]


def test_top_k_from_embeddings_equals_dense_and_is_capped_by_the_gallery() -> None:
    rng = np.random.default_rng(8)
    q = rng.integers(-2, 3, (23, 4)).astype(np.float64)  # small integers: exact dot products, many ties
    g = rng.integers(-2, 3, (9, 4)).astype(np.float64)
    qg, gg = rng.integers(0, 5, 23), rng.integers(0, 5, 9)
    dense = retrieval_metrics(q @ g.T, qg, gg, top_k=20)
    assert dense.top_k_index.shape == (23, 9)  # k above the gallery size lists the whole gallery
    for chunk in (1, 5, 100):
        chunked = retrieval_metrics_from_embeddings(q, g, qg, gg, top_k=20, chunk_size=chunk)
        np.testing.assert_array_equal(chunked.top_k_index, dense.top_k_index)
        np.testing.assert_array_equal(chunked.top_k_score, dense.top_k_score)
    without = retrieval_metrics(q @ g.T, qg, gg)
    assert without.top_k_index is None and without.top_k_score is None


@pytest.mark.parametrize("top_k", [-1, 2.5, True])
def test_invalid_top_k(top_k) -> None:
    with pytest.raises(ValueError, match="top_k"):
        retrieval_metrics(np.eye(2), [0, 1], [0, 1], top_k=top_k)
