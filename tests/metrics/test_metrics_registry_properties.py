from __future__ import annotations

import numpy as np
import pytest

from workbench.metrics import (
    FAMILIES,
    HEADLINE_METRICS,
    get_metric,
    list_metrics,
    pair_metrics,
    retrieval_metrics,
    zeroshot_metrics,
    zeroshot_metrics_from_ranks,
    zeroshot_ranks,
)


def test_headline_metrics_resolve() -> None:
    for name in HEADLINE_METRICS:
        spec = get_metric(name)
        assert spec.name == name
    assert len(set(HEADLINE_METRICS)) == len(HEADLINE_METRICS)


def test_parameterised_names_and_unknown_names() -> None:
    spec = get_metric("t2i/ndcg@20")
    assert spec.params["k"][0] == 20 and spec.direction == "higher" and spec.family == "retrieval"
    assert get_metric("t2i/median_rank").direction == "lower"
    assert get_metric("i2t/mean_rank").direction == "lower"
    with pytest.raises(KeyError, match="Available"):
        get_metric("t2i/recall5")
    with pytest.raises(KeyError, match="pair/f1"):
        get_metric("pair/f2")
    with pytest.raises(ValueError, match="retrieval"):
        list_metrics("retrievl")


def test_specs_are_well_formed() -> None:
    specs = list_metrics()
    assert {s.family for s in specs} == set(FAMILIES)
    for s in specs:
        assert s.range[0] < s.range[1] and s.description and "\n" not in s.description
        for default_and_text in s.params.values():
            assert len(default_and_text) == 2
    for family in FAMILIES:
        assert all(s.family == family for s in list_metrics(family))


def _random_pairs(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 200)
    return y, np.round(rng.random(200) * 0.7 + 0.3 * y, 2)


def test_every_pair_output_has_a_spec() -> None:
    y, s = _random_pairs(0)
    for key in pair_metrics(y, s, threshold=0.5):
        assert get_metric(f"pair/{key}").family == "pair"


def test_every_retrieval_output_has_a_spec() -> None:
    res = retrieval_metrics(np.random.default_rng(0).random((5, 6)), [0, 1, 2, 3, 9], [0, 1, 2, 3, 4, 4], ks=(1, 7))
    for prefix in ("t2i", "i2t"):
        for key in res.aggregate:
            assert get_metric(f"{prefix}/{key}").family == "retrieval"
    z = zeroshot_metrics(np.eye(3), np.eye(3), np.array([0, 1, 2]), ks=(1, 2))
    for key in z:
        assert get_metric(f"zeroshot/{key}").family == "zeroshot"


PAIR_SPECS = [s for s in list_metrics("pair") if s.name not in ("pair/ece",)]


@pytest.mark.parametrize("spec", PAIR_SPECS, ids=lambda s: s.name)
def test_pair_metric_order_invariance(spec) -> None:
    y, s = _random_pairs(1)
    perm = np.random.default_rng(2).permutation(len(y))
    a = pair_metrics(y, s, threshold=0.5)[spec.key]
    b = pair_metrics(y[perm], s[perm], threshold=0.5)[spec.key]
    assert a == pytest.approx(b, abs=1e-12)


@pytest.mark.parametrize("spec", [s for s in PAIR_SPECS if s.key not in ("brier", "log_loss")], ids=lambda s: s.name)
def test_pair_metric_monotone_transform_invariance(spec) -> None:
    y, s = _random_pairs(3)
    a = pair_metrics(y, s, threshold=0.5)[spec.key]
    b = pair_metrics(y, np.exp(3 * s) - 7, threshold=float(np.exp(1.5) - 7))[spec.key]
    assert a == pytest.approx(b, abs=1e-12)


@pytest.mark.parametrize("spec", PAIR_SPECS, ids=lambda s: s.name)
def test_pair_metric_perfect_scores(spec) -> None:
    y = np.array([0, 1, 1, 0, 1, 0, 0])
    m = pair_metrics(y, y.astype(float), threshold=0.5)
    expected = spec.range[1] if spec.direction == "higher" else spec.range[0]
    assert m[spec.key] == pytest.approx(expected, abs=1e-12)


def _retrieval_case(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gg = rng.integers(0, 12, 50)
    qg = rng.integers(0, 14, 30)
    return np.round(rng.random((30, 50)), 1), qg, gg


RET_KEYS = [s.key.format(k=5) for s in list_metrics("retrieval") if s.name.startswith("t2i/")]


@pytest.mark.parametrize("key", RET_KEYS)
@pytest.mark.parametrize("ties", ["pessimistic", "average"])
def test_retrieval_order_and_monotone_invariance(key: str, ties: str) -> None:
    scores, qg, gg = _retrieval_case(4)
    base = retrieval_metrics(scores, qg, gg, ks=(5,), ties=ties).aggregate[key]
    rng = np.random.default_rng(5)
    pq, pg = rng.permutation(30), rng.permutation(50)
    permuted = retrieval_metrics(scores[pq][:, pg], qg[pq], gg[pg], ks=(5,), ties=ties).aggregate[key]
    transformed = retrieval_metrics(np.tanh(4 * scores) * 10 + 3, qg, gg, ks=(5,), ties=ties).aggregate[key]
    assert permuted == pytest.approx(base, abs=1e-12)
    assert transformed == pytest.approx(base, abs=1e-12)


@pytest.mark.parametrize("key", [k for k in RET_KEYS if k != "n_queries_without_positive"])
def test_retrieval_perfect_scores(key: str) -> None:
    _, qg, gg = _retrieval_case(6)
    perfect = (qg[:, None] == gg[None, :]).astype(float)
    res = retrieval_metrics(perfect, qg, gg, ks=(5,))
    spec = get_metric(f"t2i/{key}")
    expected = 1.0 if key.startswith(("success", "ndcg", "mrr", "map", "median", "mean")) else None
    n_pos = res.per_query["n_positives"]
    valid = n_pos > 0
    if key.startswith("recall"):
        # recall@5 is 1 only for queries with at most 5 positives
        expected = float(np.mean(np.minimum(n_pos[valid], 5) / n_pos[valid]))
    if key.startswith("precision"):
        # precision@5 is 1 only for queries with at least 5 positives: the denominator is k
        expected = float(np.mean(np.minimum(n_pos[valid], 5) / 5))
    assert expected is not None, f"no perfect-score expectation for {key}"
    assert res.aggregate[key] == pytest.approx(expected, abs=1e-12)
    if spec.direction == "higher":
        assert res.aggregate[key] <= spec.range[1]
    else:
        assert res.aggregate[key] == spec.range[0]


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic", "average"])
def test_success_bounds_recall_and_precision_and_hits_are_monotone_in_k(ties: str) -> None:
    scores, qg, gg = _retrieval_case(7)
    ks = (1, 2, 5, 10, 50)
    res = retrieval_metrics(scores, qg, gg, ks=ks, ties=ties)
    n_pos = res.per_query["n_positives"]
    valid = n_pos > 0
    for k in ks:
        assert np.all(res.per_query[f"success@{k}"][valid] >= res.per_query[f"recall@{k}"][valid])
        assert np.all(res.per_query[f"success@{k}"][valid] >= res.per_query[f"precision@{k}"][valid])
        # both count the same hits: precision over k, recall over the query's positives
        np.testing.assert_allclose(res.per_query[f"precision@{k}"][valid] * k,
                                   res.per_query[f"recall@{k}"][valid] * n_pos[valid], atol=1e-12)
    np.testing.assert_array_equal(res.per_query["precision@1"], res.per_query["success@1"])
    for small, large in zip(ks, ks[1:], strict=False):
        hits_small = res.per_query[f"precision@{small}"][valid] * small
        assert np.all(res.per_query[f"precision@{large}"][valid] * large >= hits_small - 1e-12)
    for small, large in zip(ks, ks[1:], strict=False):
        for name in ("success", "recall"):
            assert np.all(res.per_query[f"{name}@{large}"][valid] >= res.per_query[f"{name}@{small}"][valid])
            assert res.aggregate[f"{name}@{large}"] >= res.aggregate[f"{name}@{small}"]
    assert res.aggregate["success@50"] == 1.0 and res.aggregate["recall@50"] == 1.0


ZS_KEYS = [s.key.format(k=2) for s in list_metrics("zeroshot")]


def _zeroshot_case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return np.round(rng.random((40, 6)), 1), rng.integers(0, 6, 40)  # rounded: many ties


@pytest.mark.parametrize("key", ZS_KEYS)
@pytest.mark.parametrize("ties", ["pessimistic", "optimistic", "average"])
def test_zeroshot_order_and_monotone_invariance(key: str, ties: str) -> None:
    scores, labels = _zeroshot_case(9)

    def metric(s: np.ndarray, lab: np.ndarray) -> float:
        return zeroshot_metrics_from_ranks(zeroshot_ranks(s, lab, ties=ties), lab, ks=(2,))[key]

    rng = np.random.default_rng(10)
    rows, classes = rng.permutation(40), rng.permutation(6)
    relabel = np.argsort(classes)  # class c moves to column relabel[c]
    base = metric(scores, labels)
    assert metric(scores[rows][:, classes], relabel[labels[rows]]) == pytest.approx(base, abs=1e-12)
    assert metric(np.exp(2 * scores) - 5, labels) == pytest.approx(base, abs=1e-12)


@pytest.mark.parametrize("key", ZS_KEYS)
def test_zeroshot_perfect_and_fully_tied_scores(key: str) -> None:
    _, labels = _zeroshot_case(11)
    perfect = np.eye(6)[labels]
    spec = get_metric(f"zeroshot/{key}")
    assert zeroshot_metrics(perfect, np.eye(6), labels, ks=(2,))[key] == spec.range[1]
    # a scorer that cannot tell the classes apart earns nothing under the default (pessimistic) ties
    assert zeroshot_metrics(np.zeros((40, 3)), np.zeros((6, 3)), labels, ks=(2,))[key] == spec.range[0]


def test_every_metric_view_names_registered_metrics_once():
    from workbench.metrics import METRIC_VIEWS, get_metric, metric_view

    for name, metrics in METRIC_VIEWS.items():
        assert metric_view(name) == metrics
        assert len(set(metrics)) == len(metrics), name
        for metric in metrics:
            get_metric(metric)  # raises for a name the registry does not know
    with pytest.raises(ValueError, match="Available"):
        metric_view("nope")
