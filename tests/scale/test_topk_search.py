from __future__ import annotations

import numpy as np
import pytest

from workbench.metrics import retrieval_metrics_from_embeddings
from workbench.scale import cuml_available, search
from workbench.scale.search import (
    ann_recall,
    compare_ann_to_exact,
    exact_topk,
    faiss_topk,
    retrieval_metrics_from_topk,
)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _clustered(n: int, dim: int = 32, n_groups: int = 50, seed: int = 0, spread: float = 0.3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_groups, dim))
    groups = rng.integers(0, n_groups, n)
    return _unit(centres[groups] + spread * rng.normal(size=(n, dim))), groups


def _brute(q: np.ndarray, g: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    s = q.astype(np.float64) @ g.T.astype(np.float64)
    idx = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, idx, axis=1), idx


def test_exact_topk_matches_numpy_argsort():
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(37, 16)).astype(np.float32), rng.normal(size=(501, 16)).astype(np.float32)
    scores, idx = exact_topk(q, g, k=7, chunk_size=64, device="cpu")
    ref_s, ref_i = _brute(q, g, 7)
    assert idx.shape == (37, 7) and scores.dtype == np.float32 and idx.dtype == np.int64
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_allclose(scores, ref_s, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("chunk_size", [1, 5, 64, 10_000])
def test_chunk_size_does_not_change_results(chunk_size):
    rng = np.random.default_rng(1)
    q, g = rng.normal(size=(23, 8)), rng.normal(size=(97, 8))
    ref = exact_topk(q, g, k=10, chunk_size=4096, device="cpu")
    got = exact_topk(q, g, k=10, chunk_size=chunk_size, gallery_chunk_size=chunk_size, device="cpu")
    np.testing.assert_array_equal(got[1], ref[1])
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-6, atol=1e-6)


def test_k_larger_than_gallery_is_capped():
    scores, idx = exact_topk(np.eye(3), np.eye(3)[:2], k=10, device="cpu")
    assert idx.shape == (3, 2)
    np.testing.assert_array_equal(idx[:2, 0], [0, 1])


def test_big_gallery_uses_bounded_blocks(monkeypatch):
    shapes: list[tuple[int, int]] = []
    original = search._block_scores

    def spy(q, g):
        out = original(q, g)
        shapes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(search, "_block_scores", spy)
    rng = np.random.default_rng(2)
    q, g = rng.normal(size=(300, 4)).astype(np.float32), rng.normal(size=(60_000, 4)).astype(np.float32)
    _, idx = exact_topk(q, g, k=5, chunk_size=256, gallery_chunk_size=1024, device="cpu")
    assert max(shapes) == (256, 1024)
    assert len(shapes) == 2 * -(-60_000 // 1024)
    np.testing.assert_array_equal(idx[:20], _brute(q[:20], g, 5)[1])


def test_bad_inputs_name_the_value():
    with pytest.raises(ValueError, match="k=0"):
        exact_topk(np.ones((2, 3)), np.ones((4, 3)), k=0)
    with pytest.raises(ValueError, match="dimension 3 but gallery has 4"):
        exact_topk(np.ones((2, 3)), np.ones((4, 4)))
    with pytest.raises(ValueError, match="must not exceed"):
        retrieval_metrics_from_topk(np.zeros((2, 3), dtype=int), [0, 1], [0, 1, 2], ks=(5,))


def test_ann_recall_hand_case():
    exact = np.array([[0, 1, 2], [3, 4, 5]])
    approx = np.array([[2, 0, 9], [-1, -1, -1]])
    assert ann_recall(approx, exact) == pytest.approx(2 / 6)
    assert ann_recall(exact, exact) == 1.0


def test_streaming_metrics_equal_full_ranking_metrics():
    q, qg = _clustered(400, dim=16, n_groups=40, seed=3, spread=0.9)
    g, gg = _clustered(900, dim=16, n_groups=40, seed=4, spread=0.9)
    gg = np.where(np.arange(900) % 97 == 0, 999, gg)  # a few gallery items nobody asks for
    qg = np.where(np.arange(400) % 53 == 0, 1000, qg)  # a few queries without positives
    full = retrieval_metrics_from_embeddings(q, g, qg, gg, ks=(1, 5, 10))
    _, idx = exact_topk(q, g, k=10, chunk_size=128, device="cpu")
    got = retrieval_metrics_from_topk(idx, qg, gg, ks=(1, 5, 10), chunk_size=37)
    for k in (1, 5, 10):
        for name in ("success", "recall", "ndcg"):
            assert got[f"{name}@{k}"] == pytest.approx(full.aggregate[f"{name}@{k}"], abs=1e-12), (name, k)
    rr = full.per_query["reciprocal_rank"]
    first = full.per_query["first_rank"]
    valid = full.per_query["n_positives"] > 0
    assert got["mrr@10"] == pytest.approx(np.mean(np.where(first[valid] <= 10, rr[valid], 0.0)), abs=1e-12)
    assert got["n_queries_without_positive"] == full.n_queries_without_positive > 0
    assert got["truncated_at"] == 10


def test_faiss_recall_is_high_on_clustered_data_and_metric_error_reported():
    g, gg = _clustered(6000, dim=32, n_groups=60, seed=5, spread=0.25)
    q, qg = _clustered(300, dim=32, n_groups=60, seed=6, spread=0.25)
    _, exact = exact_topk(q, g, k=10, device="cpu")
    for index in ("hnsw", "ivf"):
        timings: dict = {}
        _, approx = faiss_topk(q, g, k=10, index=index, timings=timings)
        report = compare_ann_to_exact(approx, exact, qg, gg, ks=(1, 5, 10))
        assert report["ann_recall"] > 0.9, (index, report["ann_recall"])
        assert set(report["difference"]) >= {"success@10", "recall@10", "ndcg@10", "mrr@10"}
        assert all(abs(v) < 0.05 for v in report["difference"].values()), report["difference"]
        assert timings["build_s"] >= 0 and timings["search_s"] >= 0


def test_cuml_available_is_a_bool():
    assert isinstance(cuml_available(), bool)
