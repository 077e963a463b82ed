"""Training-loss curves of one run: its fusion head (train and val loss per epoch, the kept epoch marked, each
sub-head of a late fusion) and its trained towers (train loss per epoch), as stored in ``runs.curves``."""

from __future__ import annotations

import html
from collections.abc import Mapping

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.viz.figures import _LAYOUT, _color


def _losses(curves: Mapping) -> list[tuple[str, list, str]]:
    """(name, values per epoch, dash) of every loss of a head's curves, sub-heads of a late fusion included."""
    lines = [(kind, list(curves.get(f"{kind}_loss") or []), "solid" if kind == "train" else "dash")
             for kind in ("train", "val")]
    for k, sub in enumerate(curves.get("heads") or []):
        lines += [(f"head {k + 1} {name}", values, dash) for name, values, dash in _losses(sub)]
    return [line for line in lines if line[1]]


def training_curves_figure(curves: Mapping | None) -> go.Figure:
    """Loss per epoch of what the run trained: the fusion head (left, train solid and val dashed, a dotted line
    at the epoch whose weights were kept) and the trained towers (right; "from run …" when the tower's vectors
    came from the cache and its curve from the run that trained it). A note replaces the plot when nothing was
    trained (weight-free heads and encoders)."""
    curves = curves or {}
    head = _losses(curves)
    towers = {m: c for m, c in (curves.get("encoders") or {}).items() if c.get("train_loss")}
    fig = make_subplots(rows=1, cols=2 if towers and head else 1, subplot_titles=[
        title for title, shown in (("Fusion head", head), ("Trained towers", towers)) if shown] or None)
    for i, (name, values, dash) in enumerate(head):
        fig.add_trace(go.Scatter(x=list(range(1, len(values) + 1)), y=values, mode="lines+markers", name=name,
                                 line={"dash": dash, "color": _color(i // 2)}), row=1, col=1)
    if head and curves.get("best_epoch"):
        fig.add_vline(x=curves["best_epoch"], line={"dash": "dot", "color": "#888888"}, row=1, col=1,
                      annotation_text=f"kept epoch {curves['best_epoch']}")
    for j, (modality, tower) in enumerate(towers.items()):
        name = f"{modality} tower ({html.escape(str(tower.get('encoder', '?')))})"
        if tower.get("from_run"):
            name += f", from run {html.escape(str(tower['from_run']))}"
        values = list(tower["train_loss"])
        fig.add_trace(go.Scatter(x=list(range(1, len(values) + 1)), y=values, mode="lines+markers", name=name,
                                 line={"color": _color(len(head) + j)}), row=1, col=2 if head else 1)
    if not head and not towers:
        fig.add_annotation(text="Nothing was trained by epochs in this run (weight-free head and encoders).",
                           showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
    else:
        fig.update_xaxes(title_text="epoch")
        fig.update_yaxes(title_text="loss")
    fig.update_layout(**_LAYOUT, title="Training loss", height=360,
                      legend={"orientation": "h", "yanchor": "top", "y": -0.2})
    return fig
