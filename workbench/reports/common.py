"""Format-independent pieces of a report: number formatting, tables and the reproducibility card.

Tables are returned as plain DataFrames of *unescaped* strings; each renderer escapes them for its own format.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from workbench.evaluation.compare import format_p_value
from workbench.metrics import RETRIEVAL_TABLE_KEYS, get_metric, metric_view
from workbench.reports.data import SLICE_MINIMUM, ReportData, RunReport, flip_counts
from workbench.reports.explanations import MismatchExplanation

HEADLINE = (
    "pair/accuracy", "pair/precision", "pair/recall", "pair/f1", "pair/roc_auc", "pair/pr_auc", "pair/ece",
    "pair/brier", "pair/log_loss", "pair/threshold", "t2i/success@1", "t2i/success@5", "t2i/recall@5", "t2i/mrr",
    "t2i/ndcg@10", "i2t/success@1",
    "i2t/success@5", "i2t/recall@5", "i2t/mrr", "i2t/ndcg@10", "zeroshot/acc@1",
)
RETRIEVAL_BARS = ("success@1", "success@5", "success@10", "recall@5", "precision@5", "mrr", "ndcg@10")
DIGITS = 4


def fmt(value: Any, digits: int = DIGITS) -> str:
    """A metric value as shown in every format (``0.4894``); empty for missing values."""
    if value is None:
        return ""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return ""
    if math.isinf(number):
        return "∞" if number > 0 else "-∞"
    if number == int(number) and abs(number) >= 1 and abs(number) < 1e9:
        return str(int(number)) if digits == 0 else f"{number:.{digits}f}"
    return f"{number:.{digits}f}"


def fmt_ci(low: Any, high: Any) -> str:
    return f"[{fmt(low)}, {fmt(high)}]" if fmt(low) and fmt(high) else ""


def with_ci(value: Any, low: Any, high: Any) -> str:
    """``0.8125 [0.7000, 0.9000]``, or the value alone when there is no interval."""
    ci = fmt_ci(low, high)
    return fmt(value) + (f" {ci}" if ci else "")


def direction(name: str) -> str:
    """↑ when higher is better, ↓ when lower is better, empty when the registry does not know the metric."""
    try:
        return "↑" if get_metric(name).higher_is_better else "↓"
    except (KeyError, ValueError):
        return ""


def metrics_table(run: RunReport, *, names: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Headline metrics of one run: metric, value, 95% CI, n, direction."""
    frame = run.metrics
    if names is not None:
        order = {n: i for i, n in enumerate(names)}
        frame = frame[frame["name"].isin(order)].assign(_o=lambda f: f["name"].map(order)).sort_values("_o")
    rows = [{"metric": r.name, "": direction(r.name), "value": fmt(r.value), "95% CI": fmt_ci(r.ci_low, r.ci_high),
             "n": "" if pd.isna(r.n) else str(int(r.n))} for r in frame.itertuples()]
    return pd.DataFrame(rows, columns=["metric", "", "value", "95% CI", "n"])


def leaderboard_table(data: ReportData) -> pd.DataFrame:
    """Runs × headline metrics (value with CI), the baseline first; from ``compare_runs``' table."""
    if data.comparison is None:
        return pd.DataFrame()
    names = [n for n in HEADLINE if n in data.comparison["metrics"]]
    rows = []
    for entry in data.comparison["table"]:
        row = {"run": entry["run_id"], "config": entry["config"], "baseline": "yes" if entry["baseline"] else ""}
        for n in names:
            low, high = entry.get(f"{n} CI") or (None, None)
            row[n] = fmt(entry[n]) + (f" {fmt_ci(low, high)}" if fmt_ci(low, high) else "")
        rows.append(row)
    return pd.DataFrame(rows)


def tests_table(data: ReportData) -> pd.DataFrame:
    """Paired tests of each run against the baseline: metric, test, delta, CI, p, Holm-adjusted p."""
    if data.comparison is None:
        return pd.DataFrame()
    rows = []
    for entry in data.comparison["tests"]:
        for name in metric_view("paired_tests"):
            t = entry.get(name) or {}
            p = t.get("p_holm")
            rows.append({"run": entry["run_id"], "metric": name, "test": t.get("test", ""),
                         "delta vs baseline": fmt(t.get("delta")), "95% CI": fmt_ci(t.get("ci_low"), t.get("ci_high")),
                         "p": format_p_value(t.get("p_value")), "p (Holm)": format_p_value(p),
                         "clusters": t.get("n_clusters", ""),
                         "significant": "" if p is None else ("yes" if p < 0.05 else "no")})
    return pd.DataFrame(rows)


TOO_FEW = "too few pairs"
SLICES_NOTE = (f"Worst slices: lowest ↑ accuracy among slices with {SLICE_MINIMUM}; smaller slices are greyed "
               f"and marked {TOO_FEW} and never ranked. Intervals: 95% bootstrap over products. Pair kinds and swapped "
               "attributes are all test positives against that kind of negative.")
CALIBRATION_NOTE = ("Scores are mapped to match probabilities by a calibrator fitted on the val split only (Platt "
                    "scaling by default, isotonic when the config's [threshold] section sets calibration to "
                    "isotonic); the reliability diagram, ECE (10 equal-width bins), Brier score and log loss are "
                    "measured on test. ↓ lower is better.")


def slice_display(frame: pd.DataFrame) -> pd.DataFrame:
    """A slice table (``RunReport.slice_table`` or ``worst_slices``) as strings: each metric "value [low, high]",
    pairs, positives, negatives, and a note "too few pairs" where the slice is below the stated minimum."""
    metrics = [c for c in frame.columns if c.startswith("pair/") and not c.endswith((" ci_low", " ci_high"))]
    out = pd.DataFrame({"slice": frame["slice_kind"].astype(str) + ": " + frame["slice_value"].astype(str)})

    def count(column: str) -> list[str]:
        return ["" if pd.isna(v) else str(int(v)) for v in frame[column]] if column in frame else [""] * len(frame)

    out["pairs"], out["positives"], out["negatives"] = count("n"), count("n_pos"), count("n_neg")
    nan = pd.Series(float("nan"), index=frame.index)
    for name in metrics:
        out[name] = [with_ci(v, lo, hi) for v, lo, hi in zip(
            frame[name], frame.get(f"{name} ci_low", nan), frame.get(f"{name} ci_high", nan), strict=True)]
    few = frame["too_few"].fillna(False).astype(bool) if "too_few" in frame else pd.Series(False, index=frame.index)
    out["note"] = [TOO_FEW if f else "" for f in few]
    return out.reset_index(drop=True)


def calibration_table(data: ReportData) -> pd.DataFrame:
    """Per run: the val-fitted calibrator, and ECE, Brier and log loss of its test probabilities with 95% CIs."""
    rows = []
    for run in data.runs:
        stored = (run.curves or {}).get("calibration") or {}
        row = {"run": run.label, "calibrator": stored.get("method", "none stored"),
               "fitted on": f"val ({stored['n_val']} pairs)" if stored.get("n_val") else ""}
        for name in ("pair/ece", "pair/brier", "pair/log_loss"):
            m = run.metrics[run.metrics["name"] == name]
            row[name] = "" if m.empty else with_ci(*m[["value", "ci_low", "ci_high"]].iloc[0])
        rows.append(row)
    return pd.DataFrame(rows)


def confusion_table(run: RunReport) -> pd.DataFrame:
    c = run.confusion
    return pd.DataFrame([
        {"": "actual match", "predicted match": str(c["tp"]), "predicted non-match": str(c["fn"])},
        {"": "actual non-match", "predicted match": str(c["fp"]), "predicted non-match": str(c["tn"])},
    ])


def operating_point(run: RunReport) -> dict[str, str]:
    """The decision rule and its headline numbers (stored metrics, not recomputed)."""
    rule = f"score ≥ {fmt(run.threshold)}" if run.threshold is not None else "no stored threshold"
    if run.per_category_thresholds:
        rule += f" (per-category thresholds for {len(run.per_category_thresholds)} categories)"
    policy = ((run.curves or {}).get("threshold_options") or run.config.get("threshold") or {}).get("policy", "")
    return {"decision rule": rule, "chosen on": f"val split, policy {policy}".strip(),
            **{name.split("/")[1]: fmt(run.metric(name)) for name in
               ("pair/accuracy", "pair/precision", "pair/recall", "pair/f1", "pair/specificity")}}


def retrieval_frame(data: ReportData) -> pd.DataFrame:
    """Long frame (run, name, value, ci_low, ci_high) of the retrieval metrics, for bar charts."""
    rows = []
    for run in data.runs:
        for d in ("t2i", "i2t"):
            for key in RETRIEVAL_BARS:
                m = run.metrics[run.metrics["name"] == f"{d}/{key}"]
                if not m.empty:
                    r = m.iloc[0]
                    rows.append({"run": run.label, "name": f"{d}/{key}", "value": r["value"], "ci_low": r["ci_low"],
                                 "ci_high": r["ci_high"]})
    return pd.DataFrame(rows, columns=["run", "name", "value", "ci_low", "ci_high"])


def retrieval_table(run: RunReport) -> pd.DataFrame:
    names = [f"{d}/{k}" for d in ("t2i", "i2t") for k in RETRIEVAL_TABLE_KEYS]  # the registry's retrieval view
    return metrics_table(run, names=tuple(names))


def slices_long(data: ReportData) -> pd.DataFrame:
    """Per-slice metrics of every run (columns run, slice_kind, slice_value, name, value) for the heatmap."""
    frames = [r.slices.assign(run=r.label) for r in data.runs]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def flips_table(data: ReportData) -> pd.DataFrame:
    return flip_counts(data)


ROBUSTNESS_NOTE = ("Test pairs re-scored with perturbed photos or titles (the other side clean), per severity "
                   "(0 = clean); each value with its 95% product-bootstrap CI; drop = clean − perturbed (positive "
                   "when the perturbation hurts) with a paired-bootstrap CI; changed = distinct items the "
                   "perturbation altered / perturbed.")


def robustness_command(run_id: str) -> str:
    """The command that computes (and stores) a run's robustness results."""
    return f"python -m workbench robustness {run_id} --suite image,text --severities 1,3,5"


def robustness_missing(data: ReportData) -> str:
    """One line when no run of the report has robustness results (empty when some run has them)."""
    if any(not run.robustness.empty for run in data.runs):
        return ""
    commands = "; ".join(robustness_command(run.run_id) for run in data.runs)
    which = "this run" if len(data.runs) == 1 else "these runs"
    return f"No robustness results are stored for {which}; compute them with: {commands}"


def robustness_clean(run: RunReport) -> str:
    """The clean run's values the drops are measured against, e.g. ``pair/accuracy 0.8125 [0.7000, 0.9000]``."""
    first = run.robustness.drop_duplicates("metric")
    return "; ".join(f"{r.metric} {with_ci(r.clean_value, r.clean_ci_low, r.clean_ci_high)}"
                     for r in first.itertuples())


def robustness_table(run: RunReport) -> pd.DataFrame:
    """One row per (perturbation, severity): each metric with its CI, its drop against clean with its CI, and how
    many distinct items the perturbation changed."""
    frame = run.robustness
    if frame.empty:
        return pd.DataFrame()
    metrics = list(dict.fromkeys(frame["metric"]))
    rows = []
    for (perturbation, severity), group in frame.groupby(["perturbation", "severity"], sort=True):
        by_metric = group.set_index("metric")
        first = group.iloc[0]
        row = {"perturbation": perturbation, "modality": first["modality"], "severity": str(int(severity))}
        for name in metrics:
            if name in by_metric.index:
                r = by_metric.loc[name]
                row[name] = with_ci(r["value"], r["ci_low"], r["ci_high"])
                row[f"{name} drop"] = with_ci(r["drop"], r["drop_ci_low"], r["drop_ci_high"])
        row["changed"] = f"{int(first['n_changed'])}/{int(first['n_items'])}"
        rows.append(row)
    return pd.DataFrame(rows)


def environment_rows(run: RunReport) -> list[tuple[str, str]]:
    """The reproducibility card of one run as (field, value) rows; values are unescaped strings."""
    env = run.environment or {}
    rows: list[tuple[str, str]] = [
        ("run id", run.run_id), ("config", run.config_name), ("config fingerprint", run.fingerprint),
        ("eval set", run.eval_set), ("eval-set content hash", str(run.eval_set_hash or "")),
    ]
    rows += [(f"{side.replace('_', ' ')}", _encoder_line(run.timings.get(side))) for side in
             ("image_encoder", "text_encoder") if run.timings.get(side)]
    device = env.get("device")
    device_text = run.device or ""
    if isinstance(device, dict):
        device_text = " ".join(str(v) for v in device.values() if v)
    rows += [("seed", "" if run.seed is None else str(run.seed)), ("device", device_text)]
    rows += [(lib, str(env[lib])) for lib in ("python", "torch", "transformers", "duckdb", "numpy", "scikit-learn",
                                              "platform") if env.get(lib)]
    rows += [("git SHA", str(env.get("git_sha") or "unknown")), ("started", run.started_at or ""),
             ("finished", run.finished_at or ""), ("config file", run.config_file),
             ("recreate with", run.command)]
    return rows


def _encoder_line(info: dict | None) -> str:
    if not info:
        return ""
    parts = [str(info.get("encoder", "")), f"fingerprint {info.get('fingerprint') or info.get('cache_key') or '?'}"]
    return " · ".join(p for p in parts if p)


def reproducibility(data: ReportData, run: RunReport) -> dict:
    """The reproducibility card as data (JSON report and tests)."""
    env = run.environment or {}
    info = data.eval_sets.get(run.eval_set, {})
    return {
        "eval_set": run.eval_set, "eval_set_hash": run.eval_set_hash, "eval_set_seed": info.get("seed"),
        "eval_set_recreate_command": info.get("recreate_command"), "split_seed": info.get("seed"),
        "run_seed": run.seed, "config_fingerprint": run.fingerprint, "config_toml": run.config_toml,
        "config_file": run.config_file, "command": run.command,
        "encoders": {side: {k: (run.timings.get(side) or {}).get(k) for k in ("encoder", "fingerprint")}
                     for side in ("image_encoder", "text_encoder") if run.timings.get(side)},
        "device": run.device, "device_detail": env.get("device"),
        "versions": {k: env.get(k) for k in ("python", "torch", "transformers", "duckdb", "numpy", "scikit-learn")
                     if env.get(k)},
        "platform": env.get("platform"), "git_sha": env.get("git_sha"),
        "started_at": run.started_at, "finished_at": run.finished_at,
    }


def eval_set_rows(info: dict) -> list[tuple[str, str]]:
    rows = [("name", str(info.get("name", ""))), ("content hash", str(info.get("content_hash") or "")),
            ("split seed", "" if info.get("seed") is None else str(info["seed"])),
            ("source", str(info.get("source") or "")),
            ("size", f"{info.get('n_products')} products, {info.get('n_images')} images, {info.get('n_texts')} "
                     f"texts, {info.get('n_pairs')} pairs")]
    if info.get("recreate_command"):
        rows.append(("recreate with", info["recreate_command"]))
    if info.get("leakage_warning"):
        rows.append(("leakage warning", info["leakage_warning"]))
    return rows


EXPLANATIONS_NOTE = ("The most confident mistakes explained: the photo's relevance map over the part the encoder "
                     "sees and each word's attribution (red raises the score, blue lowers it), by the method named.")


def explanation_words(explanation: MismatchExplanation) -> str:
    """The most attributed words with their signed attributions, e.g. ``red +0.4120, bag -0.1000``."""
    return ", ".join(f"{word} {value:+.4f}" for word, value in explanation.top_words())


def explanation_summary(explanation: MismatchExplanation) -> str:
    """One line per explained mismatch: method, top words, and why a side was left unexplained (or the error)."""
    if explanation.error:
        return explanation.error
    parts = [f"method: {explanation.method}"]
    if explanation.text_tokens:
        parts.append(f"top words: {explanation_words(explanation) or 'no word moved the score'}")
    parts += [f"{side} not explained: {why}" for side, why in explanation.reasons.items()]
    return " · ".join(parts)
