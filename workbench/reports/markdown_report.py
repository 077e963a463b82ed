"""Markdown report: tables plus PNG figures (matplotlib) in a ``<name>_files/`` folder next to the file.

Untrusted text is HTML-escaped and Markdown punctuation backslash-escaped, so it renders as text in any viewer.
Config TOML sits in a fenced code block whose fence is longer than any backtick run inside (raw HTML is inert
there, and escaping would corrupt a copy-pasted config).
"""

from __future__ import annotations

import html
import re
from urllib.parse import quote

import pandas as pd

from workbench.evaluation.label_errors import SIGNALS
from workbench.reports import common, static
from workbench.reports.data import ReportData

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]|~])")


def esc(text: object) -> str:
    """Inline-safe text: HTML-escaped, Markdown punctuation escaped, newlines flattened."""
    value = "" if text is None or (not isinstance(text, str) and pd.isna(text)) else str(text)
    value = html.escape(value.replace("\r", " ").replace("\n", " "))
    return _MD_SPECIAL.sub(r"\\\1", value)


def code(text: object) -> str:
    """Inline code span that no content can break out of."""
    value = html.escape(str(text)).replace("\n", " ")
    ticks = max((len(m) for m in re.findall(r"`+", value)), default=0) + 1
    fence = "`" * ticks
    return f"{fence} {value} {fence}"


def fenced(text: str, lang: str = "") -> str:
    ticks = max(3, max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    fence = "`" * ticks
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def md_table(frame: pd.DataFrame) -> str:
    if frame is None or frame.empty:
        return "_(none)_"
    header = "| " + " | ".join(esc(c) or " " for c in frame.columns) + " |"
    sep = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(esc(v) for v in record.values()) + " |"
            for record in frame.astype(object).where(frame.notna(), "").to_dict("records")]
    return "\n".join([header, sep, *rows])


def kv(rows: list[tuple[str, str]], *, code_keys: tuple[str, ...] = ()) -> str:
    lines = ["| field | value |", "|---|---|"]
    for key, value in rows:
        lines.append(f"| {esc(key)} | {code(value) if key in code_keys and value else esc(value)} |")
    return "\n".join(lines)


def render_markdown(data: ReportData, files_dir: str, *, dpi: int = 110) -> tuple[str, dict[str, bytes]]:
    """The Markdown text and its PNG figures ``{file name: bytes}`` (to be written under ``files_dir``)."""
    images: dict[str, bytes] = {}

    def image(name: str, fig, alt: str) -> str:
        return png_link(name, static.to_png(fig, dpi=dpi), alt)

    def png_link(name: str, png: bytes, alt: str) -> str:
        file_name = f"{name}.png"
        images[file_name] = png
        return f"![{esc(alt)}]({quote(files_dir)}/{quote(file_name)})"

    figs = static.figures(data)
    out: list[str] = [f"# {esc(data.title)}", "",
                      f"Generated {esc(data.generated_at)} by the matching workbench · {len(data.runs)} run(s).", ""]
    runs = pd.DataFrame([{"run": r.run_id, "config": r.config_name, "eval set": r.eval_set,
                          "finished": r.finished_at or "",
                          "role": "baseline" if i == 0 and len(data.runs) > 1 else ""}
                         for i, r in enumerate(data.runs)])
    out += ["## Summary", "", md_table(runs), ""]
    for info in data.eval_sets.values():
        if info.get("leakage_warning"):
            out += [f"> **Warning:** {esc(info['leakage_warning'])}", ""]
        out += [f"### Eval set {esc(info.get('name'))}", "", kv(common.eval_set_rows(info),
                                                                code_keys=("recreate with",)), ""]

    out += ["## Metrics", "", "Test split; 95% percentile-bootstrap confidence intervals resampling products. "
            "↑ higher is better, ↓ lower is better.", ""]
    if data.comparison is not None:
        out += ["### Leaderboard (first run = baseline)", "", md_table(common.leaderboard_table(data)), "",
                "### Paired tests against the baseline", "", md_table(common.tests_table(data)), ""]
    for run in data.runs:
        out += [f"### {esc(run.label)}", "", md_table(common.metrics_table(run)), ""]

    out += ["## ROC, precision–recall and calibration", "", image("curves", figs["curves"], "ROC, PR and reliability"),
            "", esc(common.CALIBRATION_NOTE), "", md_table(common.calibration_table(data)), "",
            "## Operating point and confusion matrix", "", image("confusion", figs["confusion"], "confusion"), ""]
    for run in data.runs:
        out += [f"### {esc(run.label)}", "", kv(list(common.operating_point(run).items())), "",
                md_table(common.confusion_table(run)), ""]

    out += ["## Slices", "", esc(common.SLICES_NOTE), "", image("slices", figs["slices"], "accuracy by slice"), ""]
    for run in data.runs:
        out += [f"### Worst slices — {esc(run.label)}", "", md_table(common.slice_display(run.worst_slices)), "",
                f"### All slices — {esc(run.label)}", "", md_table(common.slice_display(run.slice_table)), ""]

    out += ["## Retrieval", "", image("retrieval", figs["retrieval"], "retrieval metrics"), ""]
    for run in data.runs:
        out += [f"### {esc(run.label)}", "", md_table(common.retrieval_table(run)), ""]

    out += ["## Robustness", ""]
    missing = common.robustness_missing(data)
    if missing:
        out += [esc(missing), ""]
    else:
        out += [esc(common.ROBUSTNESS_NOTE), ""]
        for run in data.runs:
            if run.robustness.empty:
                out += [f"### {esc(run.label)}", "", "No robustness results stored; compute them with "
                        f"{code(common.robustness_command(run.run_id))}", ""]
                continue
            out += [f"### {esc(run.label)}", "", f"Perturbation seed {run.robustness_seed}; clean: "
                    f"{esc(common.robustness_clean(run))}", "", md_table(common.robustness_table(run)), ""]

    out += ["## Joint embedding space", ""]
    for i, run in enumerate(data.runs, start=1):
        out += [f"### {esc(run.label)}", "", esc(run.projection_note), "",
                image(f"projection_{i}", figs[f"projection_{i}"], "joint space"), ""]

    out += ["## Top mismatches", "", "Test split, at the stored threshold: highest-scoring non-matches (false "
            "positives) and lowest-scoring matches (false negatives).", ""]
    for i, run in enumerate(data.runs, start=1):
        table = run.mismatches.assign(score=run.mismatches["score"].map(common.fmt),
                                      threshold=run.mismatches["threshold"].map(common.fmt))
        table = table[["kind", "text", "score", "threshold", "category", "pair_kind", "image_id", "pair_id"]]
        out += [f"### {esc(run.label)}", "", image(f"mismatches_{i}", figs[f"mismatches_{i}"], "thumbnails"), "",
                md_table(table), ""]
        if run.explanation_note:  # off, or the models could not be restored: one line for the run
            out += [esc(run.explanation_note), ""]
            continue
        explained = [(row, run.explanations[row.pair_id]) for row in run.mismatches.itertuples()
                     if row.pair_id in run.explanations]
        if explained:
            out += [f"#### Explanations — {esc(run.label)}", "", esc(common.EXPLANATIONS_NOTE), ""]
        for k, (row, explanation) in enumerate(explained, start=1):
            out += [f"- **{esc(row.kind)}** {code(row.pair_id)}: {esc(common.explanation_summary(explanation))}", ""]
            if explanation.png:
                out += [png_link(f"explanation_{i}_{k}", explanation.png, f"explanation of {row.pair_id}"), ""]

    if data.label_errors_note:
        out += ["## Likely label errors", "", esc(data.label_errors_note), ""]
        if not data.label_errors.empty:
            table = data.label_errors.drop(columns=["thumbnail"])
            for column in ("score", *SIGNALS):
                table[column] = table[column].map(lambda v: "–" if pd.isna(v) else common.fmt(v))
            out += [md_table(table), ""]

    if data.comparison is not None:
        flips = data.flips.copy()
        if not flips.empty:
            flips = flips.assign(baseline_score=flips["baseline_score"].map(common.fmt),
                                 score=flips["score"].map(common.fmt)).drop(columns=["n_in_direction"])
        out += ["## Flips against the baseline", "", md_table(common.flips_table(data)), "", "### Examples", "",
                md_table(flips), ""]

    out += ["## Reproducibility", ""]
    for run in data.runs:
        out += [f"### {esc(run.label)}", "",
                kv(common.environment_rows(run), code_keys=("recreate with", "config fingerprint",
                                                            "eval-set content hash", "git SHA")), "",
                f"Config ({code(run.config_file)}, written next to this report):", "", fenced(run.config_toml, "toml"),
                ""]
    return "\n".join(out), images
