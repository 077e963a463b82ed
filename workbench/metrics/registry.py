"""Metric metadata as data: one frozen spec per canonical metric name (the database key).

Names are ``family-prefix/key`` where ``key`` is the key of the computing function's output (``pair_metrics``,
``RetrievalResult.aggregate``, ``zeroshot_metrics``) or the diagnostic's function name. Parameterised names
are registered as templates (``t2i/ndcg@{k}``) and resolved by ``get_metric("t2i/ndcg@20")``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

__all__ = [
    "MetricSpec", "FAMILIES", "HEADLINE_METRICS", "METRIC_VIEWS", "RETRIEVAL_TABLE_KEYS", "get_metric", "list_metrics",
    "metric_view",
]

FAMILIES: tuple[str, ...] = ("pair", "retrieval", "zeroshot", "diagnostic")
DIRECTIONS: tuple[str, ...] = ("higher", "lower")
INF = math.inf


@dataclass(frozen=True)
class MetricSpec:
    """Everything pages and reports need to know about one metric."""

    name: str
    family: str
    direction: str
    range: tuple[float, float]
    description: str
    params: MappingProxyType[str, tuple[Any, str]] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family={self.family!r} is not supported; allowed: {list(FAMILIES)}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction={self.direction!r} is not supported; allowed: {list(DIRECTIONS)}")
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))

    @property
    def key(self) -> str:
        """The name after the family prefix, e.g. ``recall@5`` for ``t2i/recall@5``."""
        return self.name.split("/", 1)[1]

    @property
    def higher_is_better(self) -> bool:
        return self.direction == "higher"


_TIES = ("pessimistic", "tie policy: pessimistic | optimistic | average")
_THRESHOLD = (None, "decision threshold; a pair is predicted positive iff score >= threshold")
_K_RET = (10, "cut-off rank k")


def _pair_specs() -> list[MetricSpec]:
    thr = {"threshold": _THRESHOLD}
    rows: list[tuple[str, str, tuple[float, float], str, dict[str, tuple[Any, str]]]] = [
        ("accuracy", "higher", (0, 1), "Fraction of pairs classified correctly at the threshold.", thr),
        ("precision", "higher", (0, 1), "TP / (TP + FP) at the threshold; 0 when nothing is predicted.", thr),
        ("recall", "higher", (0, 1), "TP / (TP + FN) at the threshold (true positive rate).", thr),
        ("f1", "higher", (0, 1), "Harmonic mean of precision and recall at the threshold.", thr),
        ("specificity", "higher", (0, 1), "TN / (TN + FP) at the threshold (true negative rate).", thr),
        ("balanced_accuracy", "higher", (0, 1), "Mean of recall and specificity at the threshold.", thr),
        ("mcc", "higher", (-1, 1), "Matthews correlation coefficient at the threshold.", thr),
        ("roc_auc", "higher", (0, 1), "Area under the ROC curve (ties count one half).", {}),
        ("pr_auc", "higher", (0, 1), "Average precision (scikit-learn definition).", {}),
        ("brier", "lower", (0, 1), "Brier score: mean squared error of the val-calibrated match probabilities.", {}),
        ("log_loss", "lower", (0, INF), "Mean negative log-likelihood of the val-calibrated match probabilities.", {}),
        (
            "ece",
            "lower",
            (0, 1),
            "Expected calibration error of the val-calibrated probabilities over equal-width bins.",
            {"n_bins": (10, "number of equal-width bins on [0, 1]")},
        ),
    ]
    return [MetricSpec(f"pair/{k}", "pair", d, r, desc, p) for k, d, r, desc, p in rows]


def _retrieval_specs(prefix: str) -> list[MetricSpec]:
    what = "text-to-image" if prefix == "t2i" else "image-to-text"
    ties = {"ties": _TIES}
    k_ties = {"k": _K_RET, "ties": _TIES}
    rows: list[tuple[str, str, tuple[float, float], str, dict[str, tuple[Any, str]]]] = [
        (
            "success@{k}",
            "higher",
            (0, 1),
            f"{what}: fraction of queries with any positive in the top k.",
            k_ties,
        ),
        (
            "recall@{k}",
            "higher",
            (0, 1),
            f"{what}: mean fraction of a query's positives in the top k.",
            k_ties,
        ),
        (
            "precision@{k}",
            "higher",
            (0, 1),
            f"{what}: mean fraction of the top k that is relevant (denominator k, even below k positives).",
            k_ties,
        ),
        ("ndcg@{k}", "higher", (0, 1), f"{what}: binary-gain nDCG of the top k (log2 discount).", k_ties),
        ("mrr", "higher", (0, 1), f"{what}: mean reciprocal rank of the first positive.", ties),
        ("map", "higher", (0, 1), f"{what}: mean average precision over the full ranking.", ties),
        ("median_rank", "lower", (1, INF), f"{what}: median 1-based rank of the first positive.", ties),
        ("mean_rank", "lower", (1, INF), f"{what}: mean 1-based rank of the first positive.", ties),
        (
            "n_queries_without_positive",
            "lower",
            (0, INF),
            f"{what}: queries skipped because no gallery item shares their product.",
            {},
        ),
    ]
    return [MetricSpec(f"{prefix}/{k}", "retrieval", d, r, desc, p) for k, d, r, desc, p in rows]


def _other_specs() -> list[MetricSpec]:
    return [
        MetricSpec(
            "zeroshot/acc@{k}",
            "zeroshot",
            "higher",
            (0, 1),
            "Fraction of images whose true class is among the top-k scored class prompts.",
            {"k": (1, "cut-off rank k"), "ties": _TIES},
        ),
        MetricSpec(
            "zeroshot/mean_per_class_recall",
            "zeroshot",
            "higher",
            (0, 1),
            "Top-1 recall averaged over the classes present.",
            {"ties": _TIES},
        ),
        MetricSpec(
            "diag/modality_gap",
            "diagnostic",
            "lower",
            (0, 2),
            "Distance between image and text centroids of normalised embeddings.",
        ),
        MetricSpec(
            "diag/alignment",
            "diagnostic",
            "lower",
            (0, 4),
            "Mean squared distance of matched normalised image-text pairs.",
        ),
        MetricSpec(
            "diag/uniformity",
            "diagnostic",
            "lower",
            (-INF, 0),
            "Log mean Gaussian potential between normalised embeddings; lower is more uniform.",
            {"t": (2.0, "temperature of the Gaussian potential")},
        ),
        MetricSpec(
            "diag/hubness",
            "diagnostic",
            "lower",
            (-INF, INF),
            "Skewness of k-occurrence counts; high means a few hub items dominate neighbour lists.",
            {"k": (10, "neighbourhood size")},
        ),
    ]


_REGISTRY: dict[str, MetricSpec] = {
    s.name: s for s in [*_pair_specs(), *_retrieval_specs("t2i"), *_retrieval_specs("i2t"), *_other_specs()]
}
_TEMPLATES: list[tuple[re.Pattern[str], MetricSpec]] = [
    (re.compile(re.escape(s.name).replace(re.escape("{k}"), r"([1-9][0-9]*)") + r"\Z"), s)
    for s in _REGISTRY.values()
    if "{k}" in s.name
]

# precision@1 always equals success@1 (only the first positive can rank 1), so views show it from k = 5.
RETRIEVAL_TABLE_KEYS: tuple[str, ...] = (
    "success@1", "success@5", "success@10", "recall@1", "recall@5", "recall@10", "precision@5", "precision@10",
    "mrr", "map", "ndcg@10", "median_rank", "n_queries_without_positive",
)  # fmt: skip
"""Per-direction keys of the full retrieval table (prefix ``t2i/`` or ``i2t/``), in display order."""

HEADLINE_METRICS: tuple[str, ...] = (
    "pair/accuracy", "pair/precision", "pair/recall", "pair/f1", "pair/roc_auc", "pair/pr_auc", "pair/ece",
    "pair/brier",
    *(f"{d}/{key}" for d in ("t2i", "i2t") for key in (
        "success@1", "success@5", "success@10", "recall@1", "recall@5", "recall@10", "precision@5",
        "precision@10", "mrr", "ndcg@10")),
    "zeroshot/acc@1",
)  # fmt: skip
"""The leaderboard of a comparison, in column order."""

METRIC_VIEWS: dict[str, tuple[str, ...]] = {
    # every metric of a comparison's leaderboard (JSON, reports)
    "headline": HEADLINE_METRICS,
    # the columns that fit on screen: pair metrics, calibration and the first retrieval cut-offs
    "leaderboard": (
        "pair/accuracy", "pair/precision", "pair/recall", "pair/f1", "pair/roc_auc", "pair/pr_auc", "pair/ece",
        "pair/brier", "t2i/success@1", "t2i/success@5", "t2i/mrr", "i2t/success@1", "i2t/success@5", "i2t/mrr",
    ),
    # computed per slice (category, pair kind, swapped attribute, language …) with product-bootstrap CIs
    "slice": ("pair/accuracy", "pair/f1", "pair/roc_auc", "pair/pr_auc"),
    # compared between runs with a paired, product-clustered test each
    "paired_tests": ("pair/f1", "pair/pr_auc", "pair/accuracy", "pair/roc_auc"),
    # before/after excluding marked label errors
    "before_after": ("pair/accuracy", "pair/f1", "pair/roc_auc", "pair/pr_auc", "pair/ece", "t2i/success@5",
                     "t2i/mrr", "i2t/success@5"),
    "calibration": ("pair/ece", "pair/brier", "pair/log_loss"),
}  # fmt: skip
"""Named views over the registry: which metrics a page, report or comparison shows, declared once."""


def metric_view(name: str) -> tuple[str, ...]:
    """The canonical metric names of one view (see :data:`METRIC_VIEWS`)."""
    if name not in METRIC_VIEWS:
        raise ValueError(f"metric view {name!r} not found. Available: {sorted(METRIC_VIEWS)}")
    return METRIC_VIEWS[name]


def list_metrics(family: str | None = None) -> list[MetricSpec]:
    """Registered specs of one family or all; parameterised ones as templates (``t2i/recall@{k}``)."""
    if family is not None and family not in FAMILIES:
        raise ValueError(f"family={family!r} is not supported; allowed: {list(FAMILIES)}")
    return [s for s in _REGISTRY.values() if family is None or s.family == family]


def get_metric(name: str) -> MetricSpec:
    """The spec of a canonical name; ``t2i/ndcg@20`` resolves the ``t2i/ndcg@{k}`` template with k = 20."""
    spec = _REGISTRY.get(name)
    if spec is not None:
        return spec
    for pattern, template in _TEMPLATES:
        match = pattern.match(name)
        if match:
            k = int(match.group(1))
            params = dict(template.params)
            params["k"] = (k, params["k"][1])
            return replace(template, name=name, params=MappingProxyType(params))
    raise KeyError(f"metric {name!r} not found. Available: {sorted(_REGISTRY)}")
