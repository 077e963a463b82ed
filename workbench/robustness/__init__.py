"""Robustness suites: deterministic image and text perturbations at severities 1..5, and a run's test pairs
re-scored under each of them with product-bootstrap CIs and the drop against the clean run."""

from __future__ import annotations

from .perturbations import (
    SEVERITIES,
    SUITES,
    Perturbation,
    get_perturbation,
    list_perturbations,
    perturb,
    resolve_suite,
)
from .suite import METRICS, content_key, load_robustness, parse_severities, results_json, run_robustness

__all__ = [
    "METRICS",
    "SEVERITIES",
    "SUITES",
    "Perturbation",
    "content_key",
    "get_perturbation",
    "list_perturbations",
    "load_robustness",
    "parse_severities",
    "perturb",
    "resolve_suite",
    "results_json",
    "run_robustness",
]
