"""Robustness curves: a metric against perturbation severity, one panel per perturbation, variants side by side.

Input is what :func:`workbench.robustness.load_robustness` returns, one frame per variant (run). Severity 0 is
the clean run; each curve carries its 95% CI as a shaded band, so a drop that stays inside the clean band reads
as noise at a glance.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

PALETTE = qualitative.Plotly + qualitative.D3
COLUMNS = 4


def _rgba(hex_color: str, alpha: float) -> str:
    value = hex_color.lstrip("#")
    r, g, b = (int(value[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def robustness_figure(results: Mapping[str, pd.DataFrame], *, metric: str = "pair/roc_auc",
                      perturbations: list[str] | None = None, seed: int | None = None) -> go.Figure:
    """``metric`` vs severity with CI bands: a panel per perturbation, a colour per variant (``results`` maps a
    variant label, e.g. the config name, to its robustness frame). ``perturbations`` picks and orders the
    panels (default: every one present); ``seed`` picks one perturbation seed when several were stored."""
    frames = {}
    for label, frame in results.items():
        missing = {"perturbation", "severity", "seed", "metric", "value", "ci_low", "ci_high", "clean_value",
                   "clean_ci_low", "clean_ci_high"} - set(frame.columns)
        if missing:
            raise ValueError(f"results[{label!r}] lacks columns {sorted(missing)}; pass load_robustness() frames")
        rows = frame[frame["metric"] == metric]
        seeds = sorted(rows["seed"].unique())
        if seed is None and len(seeds) > 1:
            raise ValueError(f"results[{label!r}] holds seeds {seeds}; choose one with seed=")
        frames[label] = rows if seed is None else rows[rows["seed"] == seed]
    present = list(dict.fromkeys(p for f in frames.values() for p in f["perturbation"]))
    panels = present if perturbations is None else [p for p in perturbations if p in present]
    if not panels:
        raise ValueError(f"No {metric!r} robustness results to plot (perturbations present: {present}).")
    n_rows = math.ceil(len(panels) / COLUMNS)
    fig = make_subplots(rows=n_rows, cols=min(COLUMNS, len(panels)), subplot_titles=panels, shared_yaxes=True,
                        vertical_spacing=0.5 / n_rows if n_rows > 1 else 0.1, horizontal_spacing=0.03)
    for v, (label, frame) in enumerate(frames.items()):
        color = PALETTE[v % len(PALETTE)]
        for p, name in enumerate(panels):
            rows = frame[frame["perturbation"] == name].sort_values("severity")
            if rows.empty:
                continue
            clean = rows.iloc[0]
            x = [0, *rows["severity"].astype(int)]
            y = [clean["clean_value"], *rows["value"]]
            low = [clean["clean_ci_low"], *rows["ci_low"]]
            high = [clean["clean_ci_high"], *rows["ci_high"]]
            where = {"row": p // COLUMNS + 1, "col": p % COLUMNS + 1}
            fig.add_trace(go.Scatter(x=x + x[::-1], y=high + low[::-1], fill="toself", fillcolor=_rgba(color, 0.15),
                                     line={"width": 0}, hoverinfo="skip", showlegend=False, legendgroup=label),
                          **where)
            fig.add_trace(go.Scatter(
                x=x, y=y, mode="lines+markers", name=html.escape(label), legendgroup=label, showlegend=p == 0,
                line={"color": color}, customdata=list(zip(low, high, strict=True)),
                hovertemplate=f"{html.escape(label)}<br>severity %{{x}}<br>{metric} %{{y:.3f}} "
                              "[%{customdata[0]:.3f}, %{customdata[1]:.3f}]<extra></extra>"), **where)
    fig.update_xaxes(tickvals=[0, 1, 2, 3, 4, 5], ticktext=["clean", "1", "2", "3", "4", "5"])
    fig.update_layout(template="plotly_white", height=260 * n_rows + 80,
                      title=f"{metric} under perturbation (severity 0 = clean; bands: 95% CI)",
                      margin={"l": 50, "r": 20, "t": 70, "b": 40})
    return fig
