"""Self-contained HTML report: plotly.js inlined once, thumbnails as data URIs, no external resources.

Every untrusted string (titles, texts, file names, config values) passes through :func:`html.escape`; plotly
figure JSON escapes ``<`` itself, and the figure builders escape labels and hover text.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Iterable

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from workbench.evaluation.label_errors import SIGNALS
from workbench.reports import common
from workbench.reports.data import ReportData
from workbench.reports.explanations import MismatchExplanation

PLOTLY_CONFIG = {"displaylogo": False, "responsive": True, "toImageButtonOptions": {"format": "png"}}
MAX_PROJECTION_POINTS = 4000

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC","Noto Sans CJK JP",sans-serif;margin:0;
color:#1f2328;background:#fff;line-height:1.45}
main{max-width:1200px;margin:0 auto;padding:16px 28px 60px}
header{background:#f6f8fa;border-bottom:1px solid #d0d7de;padding:16px 28px}
h1{font-size:1.6em;margin:0 0 4px}h2{border-bottom:1px solid #d0d7de;padding-bottom:4px;margin-top:36px}
nav a{margin-right:14px;color:#0969da;text-decoration:none;font-size:.92em}
table{border-collapse:collapse;margin:8px 0 16px;font-size:.86em;display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.muted{color:#59636e;font-size:.9em}.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:12px}
.grid>*{min-width:0;overflow:hidden}
pre{background:#f6f8fa;border:1px solid #d0d7de;padding:8px;overflow-x:auto;font-size:.85em}
code{font-family:ui-monospace,"DejaVu Sans Mono",monospace}
img.thumb{width:72px;height:72px;object-fit:contain;border:1px solid #d0d7de;background:#fff}
img.overlay{width:240px;height:auto;border:1px solid #d0d7de;background:#fff;display:block}
.card{border:1px solid #d0d7de;border-radius:6px;padding:8px 14px;margin:12px 0}
tr.too-few td{color:#777;background:#e0e0e0}
.warning{border:1px solid #d4a72c;background:#fff8c5;border-radius:6px;padding:8px 14px;margin:12px 0}
"""

e = html.escape


def _cell(value) -> str:
    if value is None or (not isinstance(value, str | bytes) and pd.isna(value)):
        return ""
    return e(str(value))


def table(frame: pd.DataFrame, *, render: dict[str, Callable[[object], str]] | None = None,
          numeric: Iterable[str] = (), row_class: Callable[[dict], str] | None = None) -> str:
    """An HTML table; every header and cell escaped unless a ``render`` function (which must escape) is given.

    ``row_class(record)`` may return a CSS class name for a row (e.g. greyed slices with too few pairs).
    """
    if frame is None or frame.empty:
        return '<p class="muted">(none)</p>'
    render = render or {}
    numeric = set(numeric)
    head = "".join(f"<th>{e(str(c))}</th>" for c in frame.columns)
    rows = []
    for record in frame.to_dict("records"):
        cells = []
        for column in frame.columns:
            value = record[column]
            body = render[column](value) if column in render else _cell(value)
            cls = ' class="num"' if column in numeric else ""
            cells.append(f"<td{cls}>{body}</td>")
        cls = row_class(record) if row_class else ""
        rows.append((f'<tr class="{e(cls)}">' if cls else "<tr>") + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def kv_table(rows: list[tuple[str, str]], *, code: Iterable[str] = ()) -> str:
    code = set(code)
    body = "".join(
        f"<tr><th>{e(k)}</th><td>{f'<code>{e(v)}</code>' if k in code else e(v)}</td></tr>" for k, v in rows)
    return f"<table><tbody>{body}</tbody></table>"


def figure(fig: go.Figure, *, height: int | None = None) -> str:
    if height is not None:
        fig.update_layout(height=height)
    return fig.to_html(full_html=False, include_plotlyjs=False, config=PLOTLY_CONFIG)


def data_uri(png: bytes | None) -> str | None:
    return None if not png else "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _thumb(value: object) -> str:
    uri = data_uri(value if isinstance(value, bytes) else None)
    return f'<img class="thumb" alt="" src="{uri}">' if uri else '<span class="muted">no image</span>'


def _summary(data: ReportData) -> str:
    parts = ["<h2 id=\"summary\">Summary</h2>"]
    runs = pd.DataFrame([{"run": r.run_id, "config": r.config_name, "eval set": r.eval_set,
                          "finished": r.finished_at or "", "role": "baseline" if i == 0 and len(data.runs) > 1 else ""}
                         for i, r in enumerate(data.runs)])
    parts.append(table(runs))
    for info in data.eval_sets.values():
        if info.get("leakage_warning"):
            parts.append(f'<p class="warning" role="alert">⚠ {e(info["leakage_warning"])}</p>')
        parts.append(f"<h3>Eval set {e(str(info.get('name')))}</h3>" + kv_table(common.eval_set_rows(info),
                                                                               code={"recreate with"}))
    return "".join(parts)


def _metrics(data: ReportData) -> str:
    parts = ['<h2 id="metrics">Metrics</h2>',
             '<p class="muted">Test split; 95% percentile-bootstrap confidence intervals resampling products. '
             "↑ higher is better, ↓ lower is better.</p>"]
    if data.comparison is not None:
        board = common.leaderboard_table(data)
        parts.append("<h3>Leaderboard (first run = baseline)</h3>"
                     + table(board, numeric=[c for c in board.columns if "/" in c]))
        parts.append("<h3>Paired tests against the baseline</h3>"
                     '<p class="muted">Paired bootstrap for F1/PR-AUC, McNemar for accuracy, DeLong for ROC-AUC; '
                     "p-values Holm-corrected across compared runs.</p>" + table(common.tests_table(data)))
    for run in data.runs:
        parts.append(f"<h3>{e(run.label)}</h3>"
                     + table(common.metrics_table(run), numeric=("value", "n")))
    return "".join(parts)


def _curves(data: ReportData) -> str:
    from workbench.viz.figures import pr_figure, reliability_figure, roc_figure

    curves = {r.label: r.curves for r in data.runs}
    return ('<h2 id="curves">ROC, precision–recall and calibration</h2><div class="grid">'
            + figure(roc_figure(curves), height=430) + figure(pr_figure(curves), height=430) + "</div>"
            + figure(reliability_figure(curves), height=430)
            + f'<p class="muted">{e(common.CALIBRATION_NOTE)}</p>' + table(common.calibration_table(data)))


def _operating(data: ReportData) -> str:
    from workbench.viz.figures import confusion_figure

    parts = ['<h2 id="operating">Operating point and confusion matrix</h2>']
    for run in data.runs:
        op = common.operating_point(run)
        parts.append(f'<h3>{e(run.label)}</h3><div class="grid"><div>'
                     + kv_table(list(op.items())) + table(common.confusion_table(run), numeric=(
                         "predicted match", "predicted non-match"))
                     + f"</div><div>{figure(confusion_figure(run.confusion), height=320)}</div></div>")
    return "".join(parts)


def _slices(data: ReportData) -> str:
    from workbench.viz.figures import slice_heatmap

    parts = ['<h2 id="slices">Slices</h2>', f'<p class="muted">{e(common.SLICES_NOTE)}</p>']
    for run in data.runs:
        parts.append(f"<h3>Worst slices — {e(run.label)}</h3>" + table(common.slice_display(run.worst_slices)))
    long = common.slices_long(data)
    if not long.empty:
        parts.append(figure(slice_heatmap(long, metric="pair/accuracy")))
    for run in data.runs:
        parts.append(f"<details><summary>All slices — {e(run.label)} (greyed: {e(common.TOO_FEW)})</summary>"
                     + table(common.slice_display(run.slice_table),
                             row_class=lambda r: "too-few" if r["note"] else "") + "</details>")
    return "".join(parts)


def _retrieval(data: ReportData) -> str:
    from workbench.viz.figures import retrieval_figure

    parts = ['<h2 id="retrieval">Retrieval</h2>']
    frame = common.retrieval_frame(data)
    if not frame.empty:
        parts.append(figure(retrieval_figure(frame), height=430))
    for run in data.runs:
        notes = "; ".join(f"{d}: {info.get('method')} ({info.get('gallery')}, ties {info.get('ties')})"
                          for d, info in run.retrieval.items())
        parts.append(f"<h3>{e(run.label)}</h3><p class=\"muted\">{e(notes)}</p>"
                     + table(common.retrieval_table(run), numeric=("value", "n")))
    return "".join(parts)


def _projection(data: ReportData) -> str:
    from workbench.viz.figures import embedding_figure

    parts = ['<h2 id="projection">Joint embedding space</h2>']
    for run in data.runs:
        parts.append(f"<h3>{e(run.label)}</h3><p class=\"muted\">{e(run.projection_note)}</p>")
        if run.projection is not None and len(run.projection.frame):
            frame = run.projection.frame
            if len(frame) > MAX_PROJECTION_POINTS:
                frame = frame.sample(MAX_PROJECTION_POINTS, random_state=0)
                parts.append(f'<p class="muted">{MAX_PROJECTION_POINTS} of {len(run.projection.frame)} points '
                             "shown (seeded sample).</p>")
            parts.append(figure(embedding_figure(frame, color_by="modality"), height=560))
    return "".join(parts)


def _explanation(value: object) -> str:
    """A mismatch's overlay (heatmap over the photo, words coloured by attribution), method and top words."""
    if not isinstance(value, MismatchExplanation):
        return ""
    uri = data_uri(value.png)
    image = f'<img class="overlay" alt="explanation overlay" src="{uri}">' if uri else ""
    return image + f'<span class="muted">{e(common.explanation_summary(value))}</span>'


def _mismatches(data: ReportData) -> str:
    parts = ['<h2 id="mismatches">Top mismatches</h2>',
             '<p class="muted">Test split, at the stored threshold: the highest-scoring non-matching pairs (false '
             "positives) and the lowest-scoring matching pairs (false negatives). "
             f"{e(common.EXPLANATIONS_NOTE)}</p>"]
    for run in data.runs:
        frame = run.mismatches.assign(score=run.mismatches["score"].map(common.fmt),
                                      threshold=run.mismatches["threshold"].map(common.fmt),
                                      explanation=run.mismatches["pair_id"].map(run.explanations.get))
        columns = ["kind", "thumbnail", "text", "score", "threshold", "category", "pair_kind", "image_id", "pair_id"]
        if run.explanations and not run.explanation_note:  # a run-level note says it once instead
            columns.insert(3, "explanation")
        note = f'<p class="muted">{e(run.explanation_note)}</p>' if run.explanation_note else ""
        parts.append(f"<h3>{e(run.label)}</h3>{note}" + table(
            frame[columns], render={"thumbnail": _thumb, "explanation": _explanation},
            numeric=("score", "threshold")))
    return "".join(parts)


def _robustness(data: ReportData) -> str:
    from workbench.viz.robustness import robustness_figure

    parts = ['<h2 id="robustness">Robustness</h2>']
    missing = common.robustness_missing(data)
    if missing:
        return "".join(parts) + f'<p class="muted">{e(missing)}</p>'
    parts.append(f'<p class="muted">{e(common.ROBUSTNESS_NOTE)}</p>')
    results = {run.label: run.robustness for run in data.runs if not run.robustness.empty}
    parts.append(figure(robustness_figure(results, metric="pair/roc_auc")))
    for run in data.runs:
        if run.robustness.empty:
            parts.append(f'<h3>{e(run.label)}</h3><p class="muted">No robustness results stored; compute them '
                         f"with <code>{e(common.robustness_command(run.run_id))}</code></p>")
            continue
        parts.append(f'<h3>{e(run.label)}</h3><p class="muted">Perturbation seed {run.robustness_seed}; clean: '
                     f"{e(common.robustness_clean(run))}</p>" + table(common.robustness_table(run)))
    return "".join(parts)


def _label_errors(data: ReportData) -> str:
    if not data.label_errors_note:
        return ""
    frame = data.label_errors.copy()
    numeric = ("score", *SIGNALS)
    for column in numeric:
        if column in frame:
            frame[column] = frame[column].map(lambda v: "–" if pd.isna(v) else common.fmt(v))
    return ('<h2 id="label-errors">Likely label errors</h2>'
            f'<p class="muted">{e(data.label_errors_note)}</p>'
            + table(frame, render={"thumbnail": _thumb}, numeric=numeric))


def _flips(data: ReportData) -> str:
    if data.comparison is None:
        return ""
    flips = data.flips.copy()
    if not flips.empty:
        flips["baseline_score"] = flips["baseline_score"].map(common.fmt)
        flips["score"] = flips["score"].map(common.fmt)
        flips = flips.drop(columns=["n_in_direction"])
    return ('<h2 id="flips">Flips against the baseline</h2>'
            '<p class="muted">Test pairs one run classifies correctly and the other does not (each at its own '
            "stored threshold).</p>" + table(common.flips_table(data)) + "<h3>Examples</h3>" + table(flips))


def _repro(data: ReportData) -> str:
    parts = ['<h2 id="reproducibility">Reproducibility</h2>']
    for run in data.runs:
        parts.append(f'<div class="card"><h3>{e(run.label)}</h3>'
                     + kv_table(common.environment_rows(run), code={"recreate with", "config fingerprint",
                                                                    "eval-set content hash", "git SHA"})
                     + f"<p>Config (<code>{e(run.config_file)}</code>, written next to this report):</p>"
                     + f"<pre><code>{e(run.config_toml)}</code></pre></div>")
    return "".join(parts)


def _run_section(builder: Callable[[ReportData], str], data: ReportData) -> str:
    """A section that cannot be drawn (e.g. a run without curves) shows its reason instead of failing the report."""
    try:
        return builder(data)
    except (ValueError, KeyError, TypeError) as exc:
        return f'<p class="muted">Section unavailable: {e(str(exc))}</p>'


SECTIONS: tuple[tuple[str, str, Callable[[ReportData], str]], ...] = (
    ("summary", "Summary", _summary), ("metrics", "Metrics", _metrics), ("curves", "Curves", _curves),
    ("operating", "Operating point", _operating), ("slices", "Slices", _slices),
    ("retrieval", "Retrieval", _retrieval), ("robustness", "Robustness", _robustness),
    ("projection", "Embedding space", _projection),
    ("mismatches", "Mismatches", _mismatches), ("label-errors", "Label errors", _label_errors),
    ("flips", "Flips", _flips),
    ("reproducibility", "Reproducibility", _repro),
)


def render_html(data: ReportData) -> str:
    """The whole report as one HTML document (UTF-8, no external resources)."""
    sections = [(anchor, label, _run_section(builder, data)) for anchor, label, builder in SECTIONS]
    nav = "".join(f'<a href="#{anchor}">{e(label)}</a>' for anchor, label, body in sections if body)
    body = "".join(s for _, _, s in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline' 'unsafe-eval'; font-src data:\">"
        f"<title>{e(data.title)}</title><style>{CSS}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        f"<header><h1>{e(data.title)}</h1><p class=\"muted\">Generated {e(data.generated_at)} by the matching "
        f"workbench · {len(data.runs)} run(s) · projection: {e(data.projection_method)}</p><nav>{nav}</nav></header>"
        f"<main>{body}</main></body></html>\n"
    )
