"""Everything a report shows, read from the database once (:func:`build_report_data`); no metric is recomputed.

Metrics, CIs, curves, thresholds and comparisons come from what the run stored (``metrics``, ``run_artifacts``,
``runs.threshold``) and from :func:`workbench.evaluation.compare_runs`; the per-pair table applies the stored
threshold(s) to the stored scores, so its predictions and confusion counts are exactly those behind the metrics.
"""

from __future__ import annotations

import io
import shlex
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench import store
from workbench.config import config_from_dict, dump_config_toml
from workbench.data.leakage import leakage_message
from workbench.evaluation.aggregate import (
    MIN_SLICE_NEGATIVES,
    MIN_SLICE_POSITIVES,
    apply_thresholds,
    load_calibrator,
    load_metrics,
)
from workbench.evaluation.compare import compare_runs
from workbench.evaluation.label_errors import SIGNAL_HELP, SIGNALS, label_error_candidates
from workbench.evaluation.results import get_artifact, scored_pairs
from workbench.metrics import Calibrator, confusion_counts, metric_view
from workbench.reports.explanations import MismatchExplanation, explain_mismatches
from workbench.run.runner import get_run

SLICE_METRICS: tuple[str, ...] = metric_view("slice")
WORST_SLICE_METRIC = "pair/accuracy"
PAIR_COLUMNS: tuple[str, ...] = (
    "pair_id", "split", "image_id", "text_id", "label", "score", "probability", "threshold", "prediction", "correct",
    "category", "pair_kind", "swapped_attribute", "product_id", "language", "text",
)
SLICE_MINIMUM = f"at least {MIN_SLICE_POSITIVES} positives and {MIN_SLICE_NEGATIVES} negatives on test"
PROJECTION_METHODS: tuple[str, ...] = ("pca", "umap")


@dataclass
class RunReport:
    """One run's section of a report."""

    run_id: str
    config_name: str
    config: dict
    config_toml: str
    fingerprint: str
    eval_set: str
    eval_set_hash: str | None
    seed: int | None
    device: str | None
    status: str
    environment: dict
    timings: dict
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    threshold: float | None
    per_category_thresholds: dict[str, float]
    metrics: pd.DataFrame  # headline: name, slice_kind, slice_value, value, ci_low, ci_high, n
    slices: pd.DataFrame  # every non-'all' slice, long format
    slice_table: pd.DataFrame  # wide: slice_kind, slice_value, n, n_pos, n_neg, too_few, then per SLICE_METRICS
    # entry its value and "<name> ci_low" / "<name> ci_high"
    worst_slices: pd.DataFrame
    curves: dict | None
    confusion: dict[str, int]  # tp fp tn fn on the test split at the stored threshold(s)
    retrieval: dict[str, dict]  # direction -> {"method", "gallery", "ties", "n_without_positive"}
    diagnostics: dict | None
    pairs: pd.DataFrame  # per-pair results, every split (PAIR_COLUMNS)
    mismatches: pd.DataFrame  # top false positives / false negatives of the test split, with thumbnails
    projection: Any = None  # workbench.viz.projection.ProjectionResult or None
    projection_note: str = ""
    config_file: str = ""  # sidecar TOML file name, relative to the report
    command: str = ""  # CLI command that recreates the run with the sidecar config
    name: str | None = None  # the name people gave the run
    alias: str = ""  # a short stand-in for ``label`` where space is tight (the PDF's "A · kw"), with a legend
    explanations: dict[str, MismatchExplanation] = field(default_factory=dict)  # top mismatches' pair_id -> …
    explanation_note: str = ""  # one line when the top mismatches carry no explanation (off, or restore failed)
    robustness: pd.DataFrame = field(default_factory=pd.DataFrame)  # load_robustness() rows of one seed
    robustness_seed: int | None = None  # the perturbation seed shown (the lowest stored)

    def metric(self, name: str) -> float | None:
        """The headline value of one canonical metric (None when the run has no such metric)."""
        row = self.metrics[self.metrics["name"] == name]
        return None if row.empty or pd.isna(row["value"].iloc[0]) else float(row["value"].iloc[0])

    @property
    def label(self) -> str:
        return self.alias or f"{self.name or self.config_name} ({self.run_id})"


@dataclass
class ReportData:
    """A report of one or more runs; the first run is the baseline of the comparison."""

    title: str
    generated_at: str
    runs: list[RunReport]
    eval_sets: dict[str, dict]
    comparison: dict | None = None  # compare_runs() output when several runs
    flips: pd.DataFrame = field(default_factory=pd.DataFrame)  # run_id, direction, pair_id, text, scores …
    projection_method: str = "pca"
    label_errors: pd.DataFrame = field(default_factory=pd.DataFrame)  # top label-error candidates (test split)
    label_errors_note: str = ""  # how they were ranked, or why there are none

    @property
    def run_ids(self) -> list[str]:
        return [r.run_id for r in self.runs]

    @property
    def baseline(self) -> RunReport:
        return self.runs[0]


def _iso(value: Any) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value.isoformat(timespec="seconds") if hasattr(value, "isoformat") else str(value)


def _per_pair(frame: pd.DataFrame, threshold: float | None, per_category: dict[str, float],
              calibrator: Calibrator | None) -> pd.DataFrame:
    out = frame.copy()
    out["label"] = out["label"].astype(int)
    # The run's val-fitted calibrator applied to its stored scores: the probabilities behind ECE and Brier.
    out["probability"] = calibrator.predict(out["score"].to_numpy()) if calibrator and len(out) else np.nan
    if threshold is None:
        out["threshold"] = np.nan
        out["prediction"] = pd.array([pd.NA] * len(out), dtype="Int64")
        out["correct"] = pd.array([pd.NA] * len(out), dtype="boolean")
    else:
        out["threshold"] = apply_thresholds(out, threshold, per_category)
        # Same decision rule as compute_metrics: score - threshold >= 0.
        out["prediction"] = ((out["score"] - out["threshold"]) >= 0).astype(int)
        out["correct"] = out["prediction"] == out["label"]
    return out


SLICE_COLUMNS: tuple[str, ...] = ("slice_kind", "slice_value", "n", "n_pos", "n_neg", "too_few",
                                   *(f"{m}{part}" for m in SLICE_METRICS for part in ("", " ci_low", " ci_high")))


def _slice_table(slices: pd.DataFrame) -> pd.DataFrame:
    """One row per slice: pairs, positives, negatives, the too-few flag, and each slice metric with its CI."""
    pair = slices[slices["name"].isin(SLICE_METRICS)] if not slices.empty else slices
    if pair.empty:
        return pd.DataFrame(columns=list(SLICE_COLUMNS))
    keys = ["slice_kind", "slice_value"]
    parts = [pair.pivot_table(index=keys, columns="name", values=column, aggfunc="first", dropna=False).rename(
        columns=lambda n, c=column: n if c == "value" else f"{n} {c}") for column in ("value", "ci_low", "ci_high")]
    wide = pd.concat(parts, axis=1)
    counts = pair.groupby(keys).agg(n=("n", "max"), n_pos=("n_pos", "max"), n_neg=("n_neg", "max"),
                                    too_few=("too_few", "any"))
    wide = counts.join(wide).reset_index()
    for column in SLICE_COLUMNS:
        if column not in wide.columns:
            wide[column] = np.nan
    return wide[list(SLICE_COLUMNS)]


def worst_slices(slice_table: pd.DataFrame, *, metric: str = WORST_SLICE_METRIC, k: int = 5) -> pd.DataFrame:
    """The ``k`` slices with the lowest ``metric``; slices with too few pairs (``too_few``) are never ranked."""
    if slice_table.empty or metric not in slice_table:
        return slice_table.head(0)
    table = slice_table[~slice_table["too_few"].fillna(False).astype(bool) & slice_table[metric].notna()]
    return table.sort_values([metric, "n", "slice_kind", "slice_value"], ascending=[True, False, True, True]).head(
        k).reset_index(drop=True)


def _thumbnail(path: str | None, max_side: int) -> bytes | None:
    """PNG bytes of a small thumbnail, or None when the image cannot be read (reports still render)."""
    if not path or max_side <= 0:
        return None
    from workbench.data.images import ImageError, load_image

    try:
        image = load_image(path, max_side=max_side)
    except (ImageError, OSError, ValueError):
        return None
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _mismatches(pairs: pd.DataFrame, k: int, thumb_side: int) -> pd.DataFrame:
    test = pairs[(pairs["split"] == "test") & pairs["prediction"].notna()].copy()
    test["margin"] = test["score"] - test["threshold"]
    fp = test[(test["label"] == 0) & (test["prediction"] == 1)].assign(kind="false positive")
    fn = test[(test["label"] == 1) & (test["prediction"] == 0)].assign(kind="false negative")
    # The most confident mistakes first: highest-scoring negatives, lowest-scoring positives.
    top = pd.concat([fp.sort_values(["margin", "pair_id"], ascending=[False, True]).head(k),
                     fn.sort_values(["margin", "pair_id"], ascending=[True, True]).head(k)], ignore_index=True)
    top["thumbnail"] = [_thumbnail(p, thumb_side) for p in top["image_path"]]
    return top[["kind", "pair_id", "score", "threshold", "margin", "label", "image_id", "text_id", "text", "category",
                "pair_kind", "swapped_attribute", "image_path", "thumbnail"]]


def reproduce_command(run: RunReport, config_file: str) -> str:
    """The CLI command that recreates ``run`` from its config sidecar file (run from the report's folder)."""
    parts = ["python", "-m", "workbench", "run", "--eval-set", run.eval_set, "--config", config_file]
    if run.seed is not None:
        parts += ["--seed", str(run.seed)]
    if run.device in ("cpu", "cuda", "mps"):
        parts += ["--device", run.device]
    return shlex.join(parts)


def recreate_eval_set_command(info: dict) -> str | None:
    """For the bundled synthetic catalogue: the command that regenerates the same eval set (same content hash)."""
    if info.get("format") != "catalog":
        return None
    n_products = (info.get("options") or {}).get("n_products", info.get("n_products"))
    return shlex.join(["python", "-m", "workbench", "catalog", "--name", str(info["name"]), "--products",
                       str(n_products), "--seed", str(info.get("seed") or 0)])


def config_file_name(stem: str, run_id: str) -> str:
    """Sidecar config file name for one run of a report named ``stem``."""
    return f"{stem}.{run_id}.config.toml"


def _eval_set_info(con, name: str) -> dict:
    import json

    row = store.query_frame(con, "SELECT name, created_at, source, format, content_hash, seed, options, n_products, "
                                 "n_images, n_texts, n_pairs, audit FROM eval_sets WHERE name = ?", [name])
    if row.empty:
        return {"name": name, "content_hash": None, "seed": None}
    info = row.iloc[0].to_dict()
    info["options"] = json.loads(info["options"] or "{}")
    info["created_at"] = _iso(info["created_at"])
    for key in ("seed", "n_products", "n_images", "n_texts", "n_pairs"):
        info[key] = None if pd.isna(info[key]) else int(info[key])
    info["recreate_command"] = recreate_eval_set_command(info)
    info["leakage_warning"] = leakage_message(name, json.loads(info.pop("audit") or "{}"))
    return info


def _load_run(run_id: str, db, *, top_k: int, thumb_side: int) -> RunReport:
    record = get_run(run_id, db=db)
    if record["status"] != "done":
        raise ValueError(f"Run {run_id!r} is {record['status']}, not done; only finished runs can be reported.")
    config = config_from_dict(record["config"])
    metrics = load_metrics(run_id, db=db, slices=True)
    headline = metrics[metrics["slice_kind"] == "all"].reset_index(drop=True)
    slices = metrics[metrics["slice_kind"] != "all"].reset_index(drop=True)
    curves = get_artifact(run_id, "curves", db=db)
    calibrator = load_calibrator(run_id, db=db)
    threshold = None if pd.isna(record.get("threshold")) else float(record["threshold"])
    if threshold is None and curves and curves.get("threshold") is not None:
        threshold = float(curves["threshold"])
    per_category = {str(k): float(v) for k, v in ((curves or {}).get("per_category_thresholds") or {}).items()}
    with store.connect(db) as con:
        raw = scored_pairs(con, run_id).sort_values(["split", "pair_id"], ignore_index=True)
    pairs = _per_pair(raw, threshold, per_category, calibrator)
    test = pairs[pairs["split"] == "test"]
    confusion = ({"tp": 0, "fp": 0, "tn": 0, "fn": 0} if threshold is None or test.empty else
                 confusion_counts(test["label"].to_numpy(), (test["score"] - test["threshold"]).to_numpy(),
                                  threshold=0.0))
    retrieval = {}
    for direction in ("t2i", "i2t"):
        payload = get_artifact(run_id, f"retrieval/{direction}", db=db)
        if payload:
            retrieval[direction] = {k: payload.get(k) for k in ("method", "gallery", "ties", "n_without_positive")}
    slice_table = _slice_table(slices)
    report = RunReport(
        run_id=run_id, config_name=str(record["config_name"] or config.name), config=config.to_dict(),
        config_toml=dump_config_toml(config), fingerprint=str(record["fingerprint"] or config.fingerprint()),
        eval_set=str(record["eval_set"]), eval_set_hash=record.get("eval_set_hash"),
        seed=None if pd.isna(record.get("seed")) else int(record["seed"]), device=record.get("device"),
        status=str(record["status"]), environment=record.get("environment") or {},
        timings=record.get("timings") or {}, created_at=_iso(record.get("created_at")),
        started_at=_iso(record.get("started_at")), finished_at=_iso(record.get("finished_at")),
        threshold=threshold, per_category_thresholds=per_category, metrics=headline, slices=slices,
        slice_table=slice_table, worst_slices=worst_slices(slice_table), curves=curves, confusion=confusion,
        retrieval=retrieval, diagnostics=get_artifact(run_id, "diagnostics", db=db),
        pairs=pairs[list(PAIR_COLUMNS)].reset_index(drop=True),
        mismatches=_mismatches(pairs, top_k, thumb_side), name=record.get("name") or None,
    )
    return report


def _flips(comparison: dict, runs: list[RunReport]) -> pd.DataFrame:
    base = runs[0].pairs.set_index("pair_id")
    rows = []
    for run in runs[1:]:
        other = run.pairs.set_index("pair_id")
        for direction, ids in (comparison.get("flips") or {}).get(run.run_id, {}).items():
            for pair_id in ids:
                rows.append({
                    "run_id": run.run_id, "config": run.config_name, "direction": direction, "pair_id": pair_id,
                    "label": int(base.at[pair_id, "label"]), "pair_kind": base.at[pair_id, "pair_kind"],
                    "text": base.at[pair_id, "text"], "baseline_score": float(base.at[pair_id, "score"]),
                    "score": float(other.at[pair_id, "score"]) if pair_id in other.index else np.nan,
                })
    columns = ["run_id", "config", "direction", "pair_id", "label", "pair_kind", "text", "baseline_score", "score"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["n_in_direction"] = frame.groupby(["run_id", "direction"])["pair_id"].transform("size")
    return frame


def flip_counts(data: ReportData) -> pd.DataFrame:
    """Per compared run: how many test pairs it gets right where the baseline is wrong, and the reverse."""
    rows = []
    for run in data.runs[1:]:
        flips = (data.comparison or {}).get("flips", {}).get(run.run_id, {})
        rows.append({"run_id": run.run_id, "config": run.config_name,
                     "right_here_wrong_baseline": len(flips.get("right_here_wrong_baseline", [])),
                     "wrong_here_right_baseline": len(flips.get("wrong_here_right_baseline", []))})
    return pd.DataFrame(rows, columns=["run_id", "config", "right_here_wrong_baseline", "wrong_here_right_baseline"])


def build_report_data(
    run_ids: list[str] | str,
    *,
    db=None,
    title: str | None = None,
    projection: str | None = "pca",
    projection_sample: int = 2000,
    top_k: int = 8,
    thumb_side: int = 96,
    max_flips: int = 20,
    compare: bool = True,
    top_label_errors: int = 10,
    explain: bool = True,
    explain_top: int = 3,
) -> ReportData:
    """Assemble a report of ``run_ids`` (the first is the baseline) from what the database stores.

    ``projection``: "pca" (default, fast), "umap", or None to leave the joint-space map out.
    ``thumb_side`` 0 skips thumbnails; ``compare=False`` skips the paired tests (per-pair exports need neither).
    ``explain``: explain each run's top ``explain_top`` false positives and negatives (rebuilds the run's models:
    seconds for the bundled configs; a run that cannot be rebuilt gets a one-line reason, never an error).
    Stored robustness results (``python -m workbench robustness``) are always included.
    """
    run_ids = [run_ids] if isinstance(run_ids, str) else list(dict.fromkeys(run_ids))
    if not run_ids:
        raise ValueError("A report needs at least one run id.")
    if explain_top < 0:
        raise ValueError(f"explain_top={explain_top!r} must be 0 or more (mismatches explained per kind and run)")
    if projection is not None and projection not in PROJECTION_METHODS:
        raise ValueError(f"projection={projection!r} is not supported; allowed: {list(PROJECTION_METHODS)} or None")
    runs = [_load_run(r, db, top_k=top_k, thumb_side=thumb_side) for r in run_ids]
    for run in runs:
        _attach_robustness(run, db)
        if explain:
            run.explanations, run.explanation_note = explain_mismatches(
                run.run_id, run.mismatches, db=db, device=run.device, top=explain_top)
        else:
            run.explanation_note = "Explanations not computed (turn them on with --explain / explain=True)."
    with store.connect(db) as con:
        eval_sets = {name: _eval_set_info(con, name) for name in dict.fromkeys(r.eval_set for r in runs)}
    comparison = None
    flips = pd.DataFrame()
    if len(runs) > 1 and compare:
        comparison = compare_runs(run_ids, db=db, baseline=run_ids[0])
        flips = _flips(comparison, runs)
        flips = flips.groupby(["run_id", "direction"], sort=False).head(max_flips).reset_index(drop=True)
    label_errors, label_errors_note = _label_errors(runs, db, top_label_errors, thumb_side)
    if projection is not None:
        for run in runs:
            _attach_projection(run, db, projection, projection_sample)
    names = ", ".join(dict.fromkeys(r.config_name for r in runs))
    default_title = (f"Evaluation report: {names}" if len(runs) == 1 else f"Comparison report: {names}")
    return ReportData(title=title or default_title, generated_at=datetime.now().isoformat(timespec="seconds"),
                      runs=runs, eval_sets=eval_sets, comparison=comparison, flips=flips,
                      projection_method=projection or "none", label_errors=label_errors,
                      label_errors_note=label_errors_note)


LABEL_ERROR_COLUMNS = ("rank", "pair_id", "score", *SIGNALS, "label", "pair_kind", "text")


def _label_errors(runs: list[RunReport], db, top: int, thumb_side: int) -> tuple[pd.DataFrame, str]:
    """The test pairs the report's runs make most suspect of a wrong label, and a sentence on how (or why not)."""
    if top <= 0:
        return pd.DataFrame(), ""
    if len({r.eval_set for r in runs}) > 1:
        return pd.DataFrame(), "Not ranked: the runs are on different eval sets."
    try:
        table = label_error_candidates([r.run_id for r in runs], db=db, top=top, split="test")
    except (ValueError, KeyError) as exc:
        return pd.DataFrame(), f"Not ranked: {exc.args[0] if exc.args else exc}"
    table = table[list(LABEL_ERROR_COLUMNS)].assign(
        thumbnail=[_thumbnail(path, thumb_side) for path in table["image_path"]])
    note = (f"Test split, top {len(table)}: each pair's signals in [0, 1] (higher = more suspicious) and their mean "
            "as its score. " + "; ".join(f"{name}: {text}" for name, text in SIGNAL_HELP.items())
            + ". The neighbourhood signal follows LEMoN (Zhang et al., ICML 2025); a dash means the pair's image "
              "or text has no stored joint-space vector.")
    return table, note


def _attach_robustness(run: RunReport, db) -> None:
    """The run's stored robustness results; of one perturbation seed (the lowest) when several were run, so
    each (perturbation, severity, metric) appears once."""
    from workbench.robustness import load_robustness

    frame = load_robustness(run.run_id, db=db)
    if frame.empty:
        return
    run.robustness_seed = int(frame["seed"].min())
    run.robustness = frame[frame["seed"] == run.robustness_seed].reset_index(drop=True)


def _attach_projection(run: RunReport, db, method: str, sample_size: int) -> None:
    try:
        from workbench.viz.projection import get_projection
    except ImportError as exc:  # the projection module is optional for a report
        run.projection_note = f"joint-space map unavailable ({exc})"
        return
    try:
        run.projection = get_projection(run.run_id, db=db, method=method, sample_size=sample_size, seed=0)
        run.projection_note = str(getattr(run.projection, "description", "") or "")
    except (ValueError, KeyError, RuntimeError) as exc:
        run.projection_note = f"joint-space map unavailable: {exc}"


def write_config_sidecars(data: ReportData, out: Path) -> list[Path]:
    """Write each run's config as TOML next to the report and record the file name and recreate command."""
    paths = []
    for run in data.runs:
        name = config_file_name(out.stem, run.run_id)
        path = out.parent / name
        path.write_text(run.config_toml, encoding="utf-8")
        run.config_file = name
        run.command = reproduce_command(run, name)
        paths.append(path)
    return paths


def assign_commands(data: ReportData, stem: str) -> None:
    """Fill in sidecar names and commands without writing files (for in-memory renders, e.g. the app)."""
    for run in data.runs:
        run.config_file = config_file_name(stem, run.run_id)
        run.command = reproduce_command(run, run.config_file)
