"""JSON report with a versioned schema (``schema/report.schema.json``, documented in docs/REPORTS.md).

``runs[i].metrics`` maps canonical metric names to ``{"value", "ci_low", "ci_high"}`` exactly as
``python -m workbench metrics RUN --json`` prints them, except that missing values are ``null`` (strict JSON has
no NaN). Everything else is derived from the same stored data as the other formats.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.reports import common
from workbench.reports.data import ReportData, RunReport

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "report.schema.json"


@lru_cache(maxsize=1)
def load_schema() -> dict:
    """The JSON Schema of the report (draft 2020-12)."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def clean(value: Any) -> Any:
    """JSON-safe: NaN/±inf → None, numpy scalars/arrays → Python, timestamps → ISO strings."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return [clean(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def _num(value: Any) -> float | None:
    if value is None or pd.isna(value):
        return None
    return float(value)


def metrics_mapping(run: RunReport) -> dict[str, dict[str, float | None]]:
    """Headline metrics as ``{name: {"value", "ci_low", "ci_high"}}`` (the CLI's ``metrics --json`` shape)."""
    return {r.name: {"value": _num(r.value), "ci_low": _num(r.ci_low), "ci_high": _num(r.ci_high)}
            for r in run.metrics.itertuples()}


def _records(frame: pd.DataFrame, columns: list[str]) -> list[dict]:
    if frame.empty:
        return []
    return clean(frame[columns].astype(object).where(frame[columns].notna(), None).to_dict("records"))


def _mismatches(run: RunReport) -> list[dict]:
    """Top mismatches; the explained ones gain ``explanation`` ({method, text_tokens, image_relevance}) or
    ``explanation_error`` (one line)."""
    records = _records(run.mismatches, ["kind", "pair_id", "score", "threshold", "label", "image_id", "text_id",
                                        "text", "category", "pair_kind"])
    for record in records:
        explanation = run.explanations.get(record["pair_id"])
        if explanation is not None and explanation.error:
            record["explanation_error"] = explanation.error
        elif explanation is not None:
            record["explanation"] = clean(explanation.to_json())
    return records


def robustness_mapping(results: pd.DataFrame, *, drop: bool = False) -> dict[str, list[dict]]:
    """Stored robustness rows as the CLI's ``robustness --json`` prints them: perturbation -> [{severity, metric,
    value, ci_low, ci_high}]; with ``drop`` the same shape holds the drop against clean and its CI."""
    if results.empty:
        return {}
    from workbench.robustness import results_json

    columns = {"drop": "value", "drop_ci_low": "ci_low", "drop_ci_high": "ci_high"} if drop else {}
    return results_json(results.drop(columns=["value", "ci_low", "ci_high"] if drop else []).rename(columns=columns))


def _run(data: ReportData, run: RunReport) -> dict:
    curves = run.curves or {}
    return {
        "run_id": run.run_id,
        "config_name": run.config_name,
        "config": clean(run.config),
        "config_fingerprint": run.fingerprint,
        "eval_set": run.eval_set,
        "eval_set_hash": run.eval_set_hash,
        "status": run.status,
        "threshold": run.threshold,
        "per_category_thresholds": run.per_category_thresholds,
        "metrics": metrics_mapping(run),
        "metric_n": {r.name: (None if pd.isna(r.n) else int(r.n)) for r in run.metrics.itertuples()},
        "slices": _records(run.slices, ["name", "slice_kind", "slice_value", "value", "ci_low", "ci_high", "n",
                                        "n_pos", "n_neg", "too_few"]),
        "worst_slices": _records(run.worst_slices, list(run.worst_slices.columns)),
        "confusion": {k: int(v) for k, v in run.confusion.items()},
        "curves": clean({k: curves.get(k) for k in ("roc", "pr", "reliability")}),
        "calibration": clean(curves.get("calibration")),
        "policies": clean(curves.get("policies") or {}),
        "retrieval": clean(run.retrieval),
        "diagnostics": clean(run.diagnostics or {}),
        "projection": None if run.projection is None else {
            "params": clean(run.projection.params), "description": run.projection.description,
            "n_points": int(len(run.projection.frame))},
        "mismatches": _mismatches(run),
        "explanation_note": run.explanation_note,
        "robustness": robustness_mapping(run.robustness),
        "robustness_drop": robustness_mapping(run.robustness, drop=True),
        "robustness_seed": run.robustness_seed,
        "reproducibility": clean(common.reproducibility(data, run)),
    }


def _comparisons(data: ReportData) -> list[dict]:
    if data.comparison is None:
        return []
    out = []
    table = {row["run_id"]: row for row in data.comparison["table"]}
    base = table[data.comparison["baseline"]]
    for test in data.comparison["tests"]:
        row = table[test["run_id"]]
        deltas = {n: (None if row.get(n) is None or base.get(n) is None else row[n] - base[n])
                  for n in data.comparison["metrics"]}
        flips = data.comparison["flips"].get(test["run_id"], {})
        out.append({
            "run_id": test["run_id"], "baseline": data.comparison["baseline"],
            "metric_deltas": clean(deltas),
            "tests": clean({k: v for k, v in test.items() if k not in ("run_id", "baseline")}),
            "flips": {k: list(v) for k, v in flips.items()},
        })
    return out


def to_json_dict(data: ReportData) -> dict:
    """The report as a JSON-ready dict (validates against :func:`load_schema`)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "title": data.title,
        "generated_at": data.generated_at,
        "baseline": data.run_ids[0],
        "run_ids": data.run_ids,
        "eval_sets": clean(data.eval_sets),
        "runs": [_run(data, r) for r in data.runs],
        "leaderboard": clean(data.comparison["table"]) if data.comparison else [],
        "comparisons": _comparisons(data),
    }


def render_json(data: ReportData) -> str:
    return json.dumps(to_json_dict(data), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
