"""Plotly figure builders for pages and reports (no Streamlit).

Inputs are the stored artifacts and long-format frames of :mod:`workbench.evaluation`; every builder returns a
fresh ``go.Figure``. Point clouds use ``go.Scattergl`` with float32 coordinates (≈16 bytes per point in the
JSON payload) and escaped hover text, because item titles are untrusted.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from workbench.metrics import get_metric

PALETTE = qualitative.Plotly + qualitative.D3 + qualitative.Set3
CORRECT_LABELS = {True: "classified right", False: "classified wrong", None: "no positive test pair"}
CORRECT_COLORS = {"classified right": "#2ca02c", "classified wrong": "#d62728", "no positive test pair": "#9e9e9e"}
MODALITY_SYMBOLS = {"image": "circle", "text": "diamond"}
MAX_LINES = 5000
TOO_FEW_COLOR = "#e0e0e0"  # slices with too few pairs: greyed in heatmaps and tables
_LAYOUT = {"template": "plotly_white", "margin": {"l": 50, "r": 20, "t": 50, "b": 45}}


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _arr(values) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in (values or [])], dtype=float)


def _nearest(thresholds: np.ndarray, threshold: float | None) -> int | None:
    """Index of the curve point whose threshold is closest to the operating threshold."""
    if threshold is None or not len(thresholds):
        return None
    finite = np.where(np.isfinite(thresholds), thresholds, np.nan)
    if np.isnan(finite).all():
        return None
    return int(np.nanargmin(np.abs(finite - float(threshold))))


def _curve_figure(curves: Mapping[str, Mapping | None], *, key: str, x: str, y: str, title: str,
                  x_title: str, y_title: str, diagonal: bool) -> go.Figure:
    fig = go.Figure()
    if diagonal:
        fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance",
                                 line={"dash": "dot", "color": "#aaaaaa"}, hoverinfo="skip"))
    for i, (label, artifact) in enumerate(curves.items()):
        points = (artifact or {}).get(key)
        if not points:
            continue
        xs, ys = _arr(points.get(x)), _arr(points.get(y))
        thr = _arr(points.get("thresholds"))
        name = html.escape(str(label))
        custom = thr if len(thr) == len(xs) else None
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="lines", name=name, line={"color": _color(i), "width": 2}, customdata=custom,
            hovertemplate=f"{name}<br>{x_title} %{{x:.3f}}<br>{y_title} %{{y:.3f}}"
                          + ("<br>threshold %{customdata:.4g}" if custom is not None else "") + "<extra></extra>",
        ))
        idx = _nearest(thr, (artifact or {}).get("threshold")) if custom is not None else None
        if idx is not None:
            fig.add_trace(go.Scatter(
                x=[xs[idx]], y=[ys[idx]], mode="markers", showlegend=False,
                marker={"color": _color(i), "size": 11, "symbol": "x", "line": {"width": 1, "color": "black"}},
                hovertemplate=f"{name}: operating point (threshold {(artifact or {})['threshold']:.4g})"
                              "<extra></extra>",
            ))
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title, legend={"orientation": "h", "y": -0.2},
                      **_LAYOUT)
    fig.update_xaxes(range=[-0.01, 1.01])
    fig.update_yaxes(range=[-0.01, 1.01])
    return fig


def roc_figure(curves: Mapping[str, Mapping | None]) -> go.Figure:
    """ROC curves overlaid, one line per label (label → a run's ``curves`` artifact); × marks the operating point."""
    return _curve_figure(curves, key="roc", x="fpr", y="tpr", title="ROC curve (test split)",
                         x_title="false positive rate", y_title="true positive rate", diagonal=True)


def pr_figure(curves: Mapping[str, Mapping | None]) -> go.Figure:
    """Precision–recall curves overlaid (label → ``curves`` artifact); × marks the operating point."""
    return _curve_figure(curves, key="pr", x="recall", y="precision", title="Precision–recall curve (test split)",
                         x_title="recall", y_title="precision", diagonal=False)


def reliability_figure(curves: Mapping[str, Mapping | None]) -> go.Figure:
    """Reliability diagrams of the val-calibrated test probabilities overlaid (label → ``curves`` artifact).

    Marker size grows with the pairs in a bin; runs whose metrics predate calibration are named in a note.
    """
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated",
                             line={"dash": "dot", "color": "#aaaaaa"}, hoverinfo="skip"))
    missing = []
    for i, (label, artifact) in enumerate(curves.items()):
        rel = (artifact or {}).get("reliability")
        name = html.escape(str(label))
        if not rel:
            missing.append(name)
            continue
        method = html.escape(str(((artifact or {}).get("calibration") or {}).get("method", "uncalibrated")))
        mean_p, frac, count = _arr(rel.get("mean_predicted")), _arr(rel.get("fraction_positive")), _arr(
            rel.get("count"))
        keep = np.isfinite(mean_p) & np.isfinite(frac)
        share = count[keep] / max(float(np.nansum(count)), 1.0)
        fig.add_trace(go.Scatter(
            x=mean_p[keep], y=frac[keep], mode="lines+markers", name=name, customdata=count[keep],
            line={"color": _color(i)}, marker={"size": 6 + 14 * np.sqrt(share)},
            hovertemplate=f"{name} ({method} calibration)<br>mean probability %{{x:.3f}}<br>fraction of matches "
                          "%{y:.3f}<br>%{customdata:.0f} pairs<extra></extra>",
        ))
    if missing:
        fig.add_annotation(text="No reliability diagram (metrics computed before calibration; recompute them): "
                                + ", ".join(missing), showarrow=False, xref="paper", yref="paper", x=0, y=1.08,
                           xanchor="left", font={"size": 11, "color": "#666666"})
    fig.update_layout(title="Calibration (reliability diagram, test split; calibrator fitted on val)",
                      xaxis_title="mean calibrated probability", yaxis_title="fraction of true matches",
                      legend={"orientation": "h", "y": -0.2}, **_LAYOUT)
    fig.update_xaxes(range=[-0.01, 1.01])
    fig.update_yaxes(range=[-0.01, 1.01])
    return fig


def confusion_figure(counts: Mapping[str, int]) -> go.Figure:
    """2×2 confusion matrix (keys ``tp, fp, tn, fn``), rows = truth, columns = prediction.

    Each cell shows its name, its count in large type and its rate within its row (true positive rate, miss rate,
    false positive rate, specificity); the colour is that rate, so a small class is not washed out by a big one.
    The title sits left and the top margin leaves room for the plot toolbar.
    """
    for key in ("tp", "fp", "tn", "fn"):
        if key not in counts:
            raise ValueError(f"counts needs keys tp, fp, tn, fn; missing {key!r} in {sorted(counts)}")
    n = [[int(counts["tp"]), int(counts["fn"])], [int(counts["fp"]), int(counts["tn"])]]
    rates = [[cell / max(sum(row), 1) for cell in row] for row in n]
    names = [["true match (TP)", "missed match (FN)"], ["false match (FP)", "true non-match (TN)"]]
    rate_names = [["of actual matches", "of actual matches"], ["of actual non-matches", "of actual non-matches"]]
    text = [[f"{names[r][c]}<br><span style='font-size:26px'><b>{n[r][c]:,}</b></span><br>"
             f"{rates[r][c]:.1%} {rate_names[r][c]}" for c in range(2)] for r in range(2)]
    fig = go.Figure(go.Heatmap(
        z=rates, zmin=0.0, zmax=1.0, x=["predicted match", "predicted non-match"],
        y=["actual match", "actual non-match"], text=text, texttemplate="%{text}", textfont={"size": 15},
        colorscale="Blues", showscale=False, hoverinfo="skip",
    ))
    fig.update_yaxes(autorange="reversed", tickfont={"size": 14})
    fig.update_xaxes(side="bottom", tickfont={"size": 14})
    fig.update_layout(**{**_LAYOUT, "margin": {"l": 50, "r": 20, "t": 70, "b": 45}}, height=420,
                      title={"text": "Confusion matrix (test split)", "x": 0.0, "xanchor": "left", "y": 0.97,
                             "yanchor": "top"})
    return fig


def slice_heatmap(frame: pd.DataFrame, *, metric: str = "pair/roc_auc", n_worst: int = 3) -> go.Figure:
    """Runs × slices heatmap of one metric; the ``n_worst`` cells of each run are outlined and marked "(worst)".

    ``frame`` columns: run, slice_kind, slice_value, name, value (long format, e.g. ``load_metrics(slices=True)``
    per run); optional too_few, n_pos, n_neg, ci_low, ci_high. Cells flagged ``too_few`` are drawn grey, say
    "too few pairs" and are never ranked among the worst. "Worst" follows the metric's direction in the registry.
    """
    needed = {"run", "slice_kind", "slice_value", "name", "value"}
    if missing := needed - set(frame.columns):
        raise ValueError(f"frame lacks columns {sorted(missing)}; needs {sorted(needed)}")
    try:
        higher = get_metric(metric).higher_is_better
    except (KeyError, ValueError):
        higher = True
    data = frame[(frame["name"] == metric) & (frame["slice_kind"] != "all")].copy()
    fig = go.Figure()
    if data.empty:
        fig.add_annotation(text=f"No per-slice values of {metric}", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper")
        fig.update_layout(title=f"{metric} by slice", **_LAYOUT)
        return fig
    data["slice"] = data["slice_kind"].astype(str) + ": " + data["slice_value"].astype(str)
    data["too_few"] = data["too_few"].fillna(False).astype(bool) if "too_few" in data else False
    order = data.drop_duplicates("slice").sort_values(["slice_kind", "slice_value"])["slice"]

    def wide(column: str) -> np.ndarray:
        if column not in data:
            return np.full((len(order), data["run"].nunique()), np.nan)
        table = data.pivot_table(index="slice", columns="run", values=column, aggfunc="first", sort=False)
        return table.reindex(index=order, columns=list(dict.fromkeys(data["run"]))).to_numpy(dtype=float)

    z, few = wide("value"), wide("too_few") == 1
    columns = list(dict.fromkeys(data["run"]))
    worst = np.zeros_like(z, dtype=bool)
    for c in range(z.shape[1]):
        col = z[:, c]
        rankable = np.flatnonzero(np.isfinite(col) & ~few[:, c])  # too few pairs: never among the worst
        ranked = rankable[np.argsort(col[rankable] if higher else -col[rankable], kind="stable")]
        worst[ranked[:n_worst], c] = True
    text = np.array([["" if not np.isfinite(v) else f"{v:.3f}" + (" (worst)" if w else "") for v, w in zip(row, wrow,
                                                                                                   strict=True)]
                     for row, wrow in zip(z, worst, strict=True)], dtype=object).reshape(z.shape)
    counts = np.stack([wide("n_pos"), wide("n_neg"), wide("ci_low"), wide("ci_high")], axis=-1)
    runs = [html.escape(str(r)) for r in columns]
    slices = [html.escape(str(s)) for s in order]
    hover = ("%{y}<br>%{x}<br>" + metric + " %{z:.4f} [%{customdata[2]:.3f}, %{customdata[3]:.3f}]"
             "<br>%{customdata[0]:.0f} positives, %{customdata[1]:.0f} negatives<extra></extra>")
    fig.add_trace(go.Heatmap(
        z=np.where(few, np.nan, z), x=runs, y=slices, text=np.where(few, "", text), texttemplate="%{text}",
        customdata=counts,
        colorscale="RdYlGn" if higher else "RdYlGn_r", colorbar={"title": metric}, hovertemplate=hover,
    ))
    if few.any():
        fig.add_trace(go.Heatmap(
            z=np.where(few & np.isfinite(z), 0.0, np.nan), x=runs, y=slices,
            text=np.where(few, text + "<br>too few pairs", ""), texttemplate="%{text}",
            customdata=np.concatenate([counts, z[..., None]], axis=-1), showscale=False, name="too few pairs",
            colorscale=[[0, TOO_FEW_COLOR], [1, TOO_FEW_COLOR]], textfont={"color": "#777777"},
            hovertemplate=hover.replace("%{z:.4f}", "%{customdata[4]:.4f}").replace(
                "<extra>", " (too few pairs)<extra>"),
        ))
    for r, c in zip(*np.nonzero(worst), strict=True):
        fig.add_shape(type="rect", x0=c - 0.5, x1=c + 0.5, y0=r - 0.5, y1=r + 0.5, xref="x", yref="y",
                      line={"color": "black", "width": 2})
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category")
    fig.update_layout(title=f"{metric} by slice (outlined = {n_worst} worst per run; grey = too few pairs)",
                      height=max(300, 28 * len(slices) + 120), **_LAYOUT)
    return fig


def retrieval_figure(frame: pd.DataFrame) -> go.Figure:
    """Grouped bars, metric × run (columns run, name, value; optional ci_low, ci_high as error bars)."""
    needed = {"run", "name", "value"}
    if missing := needed - set(frame.columns):
        raise ValueError(f"frame lacks columns {sorted(missing)}; needs {sorted(needed)}")
    fig = go.Figure()
    names = list(dict.fromkeys(frame["name"]))
    for i, (run, group) in enumerate(frame.groupby("run", sort=False)):
        group = group.set_index("name").reindex(names)
        values = group["value"].to_numpy(dtype=float)
        error = None
        if {"ci_low", "ci_high"} <= set(group.columns):
            hi = group["ci_high"].to_numpy(dtype=float) - values
            lo = values - group["ci_low"].to_numpy(dtype=float)
            if np.isfinite(hi).any():
                error = {"type": "data", "array": np.nan_to_num(hi), "arrayminus": np.nan_to_num(lo),
                         "visible": True}
        fig.add_trace(go.Bar(x=names, y=values, name=html.escape(str(run)), marker_color=_color(i), error_y=error,
                             hovertemplate="%{x}: %{y:.4f}<extra>" + html.escape(str(run)) + "</extra>"))
    fig.update_layout(barmode="group", title="Retrieval (test gallery; bars = 95% CI)", yaxis_title="value",
                      legend={"orientation": "h", "y": -0.25}, **_LAYOUT)
    return fig


def _hover(frame: pd.DataFrame) -> np.ndarray:
    def one(row) -> str:
        label = html.escape(str(row.get("label_text") or ""))[:160]
        category = html.escape(str(row.get("category") or "—"))
        return f"{row.get('modality', '')} · {category}<br>{label}"
    return np.array([one(r) for r in frame.to_dict("records")], dtype=object)


def _groups(frame: pd.DataFrame, color_by: str) -> tuple[pd.Series, dict[str, str]]:
    if color_by == "correct":
        values = frame["correct"].map(lambda v: CORRECT_LABELS[None if v is None or pd.isna(v) else bool(v)])
        return values, dict(CORRECT_COLORS)
    missing = "image (no language)" if color_by == "language" else "no tag" if color_by == "tag" else "unknown"
    values = frame[color_by].astype(object).where(frame[color_by].notna(), missing).astype(str)
    levels = sorted(values.unique())
    return values, {level: _color(i) for i, level in enumerate(levels)}


COLOR_BY = ("modality", "category", "language", "pair_kind", "correct", "tag")
"""What the points of an embedding map can be coloured by; ``tag`` needs a ``tag`` column the caller adds (item
tags are user annotations, not part of a projection)."""
COLOR_BY_LABELS = {"modality": "modality", "category": "category", "language": "language",
                   "pair_kind": "pair kind", "correct": "decision correctness", "tag": "tag"}


def embedding_figure(frame: pd.DataFrame, *, color_by: str = "modality", lines: bool = False,
                     title: str | None = None) -> go.Figure:
    """2-D joint-space map, one ``Scattergl`` trace per colour group (images ●, texts ◆), the legend below the
    plot so the map keeps the full width.

    ``frame`` is a projection frame (item_id, modality, x, y, product_id, category, split, label_text, correct,
    language, pair_kind; ``tag`` when colouring by tag).
    Coordinates are sent as float32; ``customdata`` rows are ``[item_id, modality]`` so a box/lasso selection maps
    back to items. ``lines`` joins each image to the texts of its product (at most ``MAX_LINES``, said in the legend).
    """
    if color_by not in COLOR_BY:
        raise ValueError(f"color_by={color_by!r} is not supported; allowed: {list(COLOR_BY)}")
    if len(frame) and color_by not in frame and color_by != "correct":
        raise ValueError(f"color_by={color_by!r} needs a {color_by!r} column; the frame has {list(frame.columns)}")
    fig = go.Figure()
    if lines and len(frame):
        _add_lines(fig, frame)
    if len(frame):
        values, colors = _groups(frame, color_by)
        hover = _hover(frame)
        for level, color in colors.items():
            mask = (values == level).to_numpy()
            if not mask.any():
                continue
            sub = frame.loc[mask]
            symbols = sub["modality"].map(MODALITY_SYMBOLS).fillna("circle").tolist()
            fig.add_trace(go.Scattergl(
                x=sub["x"].to_numpy(dtype=np.float32), y=sub["y"].to_numpy(dtype=np.float32), mode="markers",
                name=f"{html.escape(level)} ({int(mask.sum()):,})",
                marker={"color": color, "size": 6, "opacity": 0.8, "symbol": symbols},
                customdata=np.column_stack([sub["item_id"].astype(str), sub["modality"].astype(str)]),
                hovertext=hover[mask], hovertemplate="%{hovertext}<extra></extra>",
            ))
    fig.update_layout(
        title=title or f"Joint embedding space ({len(frame):,} points; colour: {COLOR_BY_LABELS[color_by]})",
        xaxis={"showticklabels": False, "title": None, "zeroline": False},
        yaxis={"showticklabels": False, "title": None, "zeroline": False, "scaleanchor": "x", "scaleratio": 1},
        legend={"itemsizing": "constant", "orientation": "h", "yanchor": "top", "y": -0.02, "x": 0.0},
        dragmode="lasso", height=640, **_LAYOUT,
    )
    return fig


def _add_lines(fig: go.Figure, frame: pd.DataFrame) -> None:
    images = frame[frame["modality"] == "image"][["product_id", "x", "y"]].dropna(subset=["product_id"])
    texts = frame[frame["modality"] == "text"][["product_id", "x", "y"]].dropna(subset=["product_id"])
    joined = images.merge(texts, on="product_id", suffixes=("_i", "_t"))
    total = len(joined)
    if not total:
        return
    if total > MAX_LINES:
        joined = joined.iloc[np.linspace(0, total - 1, MAX_LINES).astype(int)]
    n = len(joined)
    xs = np.full(3 * n, np.nan, dtype=np.float32)
    ys = np.full(3 * n, np.nan, dtype=np.float32)
    xs[0::3], xs[1::3] = joined["x_i"].to_numpy(np.float32), joined["x_t"].to_numpy(np.float32)
    ys[0::3], ys[1::3] = joined["y_i"].to_numpy(np.float32), joined["y_t"].to_numpy(np.float32)
    name = f"matched pairs ({n:,})" if n == total else f"matched pairs ({n:,} of {total:,} shown)"
    fig.add_trace(go.Scattergl(x=xs, y=ys, mode="lines", name=name, hoverinfo="skip", connectgaps=False,
                               line={"color": "rgba(120,120,120,0.35)", "width": 1}))
