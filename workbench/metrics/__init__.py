"""Pure numpy metric functions, their specs, and statistics (never the store)."""

from __future__ import annotations

from .calibration import (
    CALIBRATION_METHODS,
    Calibrator,
    bootstrap_calibration_metrics,
    brier_score_loss,
    calibration_metrics,
    calibrator_from_dict,
    fit_calibrator,
)
from .classification import (
    THRESHOLD_POLICIES,
    choose_threshold,
    confusion_counts,
    expected_calibration_error,
    pair_metrics,
    pr_curve_points,
    reliability_curve,
    roc_curve_points,
)
from .classification import UNDEFINED_POLICIES as _PAIR_POLICIES
from .diagnostics import alignment, hubness, modality_gap, uniformity
from .registry import (
    FAMILIES,
    HEADLINE_METRICS,
    METRIC_VIEWS,
    RETRIEVAL_TABLE_KEYS,
    MetricSpec,
    get_metric,
    list_metrics,
    metric_view,
)
from .retrieval import (
    TIE_POLICIES,
    RetrievalResult,
    encode_groups,
    retrieval_metrics,
    retrieval_metrics_from_embeddings,
)
from .retrieval import UNDEFINED_POLICIES as _RETRIEVAL_POLICIES
from .stats import (
    BOOTSTRAP_PAIR_METRICS,
    bootstrap_ci,
    bootstrap_pair_metrics,
    delong_test,
    holm,
    mcnemar,
    paired_bootstrap,
)
from .zeroshot import UNDEFINED_POLICIES as _ZEROSHOT_POLICIES
from .zeroshot import zeroshot_metrics, zeroshot_metrics_from_ranks, zeroshot_ranks

UNDEFINED_POLICIES: dict[str, str] = {**_PAIR_POLICIES, **_RETRIEVAL_POLICIES, **_ZEROSHOT_POLICIES}

__all__ = [
    "BOOTSTRAP_PAIR_METRICS",
    "CALIBRATION_METHODS",
    "FAMILIES",
    "HEADLINE_METRICS",
    "METRIC_VIEWS",
    "RETRIEVAL_TABLE_KEYS",
    "THRESHOLD_POLICIES",
    "TIE_POLICIES",
    "UNDEFINED_POLICIES",
    "Calibrator",
    "MetricSpec",
    "RetrievalResult",
    "alignment",
    "bootstrap_calibration_metrics",
    "bootstrap_ci",
    "bootstrap_pair_metrics",
    "brier_score_loss",
    "calibration_metrics",
    "calibrator_from_dict",
    "choose_threshold",
    "confusion_counts",
    "delong_test",
    "encode_groups",
    "expected_calibration_error",
    "fit_calibrator",
    "get_metric",
    "holm",
    "hubness",
    "list_metrics",
    "metric_view",
    "mcnemar",
    "modality_gap",
    "pair_metrics",
    "paired_bootstrap",
    "pr_curve_points",
    "reliability_curve",
    "retrieval_metrics",
    "retrieval_metrics_from_embeddings",
    "roc_curve_points",
    "uniformity",
    "zeroshot_metrics",
    "zeroshot_metrics_from_ranks",
    "zeroshot_ranks",
]
