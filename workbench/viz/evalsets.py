"""Plotly figures of an eval set's make-up (no Streamlit): what the Eval sets page charts before any run."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go


def eval_set_figures(info: dict, data: dict[str, pd.DataFrame]) -> dict[str, go.Figure]:
    """Category balance, label balance per split, text lengths, image sizes and languages, by title.

    ``info`` is :func:`workbench.data.evalsets.get_eval_set_info`, ``data`` is
    :func:`workbench.data.evalsets.chart_data` (``texts`` with ``n_chars``/``language``, ``images`` with sizes).
    """
    pairs = info["pairs_by_split"].copy()
    pairs["label"] = pairs["label"].map({1: "match", 0: "no match"})
    categories = info["categories"].fillna({"category": "(none)"})
    return {
        "Categories": px.bar(categories, x="category", y="n_products", title="Products per category"),
        "Labels": px.bar(pairs, x="split", y="n", color="label", pattern_shape="pair_kind", barmode="stack",
                         title="Pairs per split, label and kind"),
        "Text length": px.histogram(data["texts"], x="n_chars", color="language", nbins=40, barmode="overlay",
                                    title="Text length (characters)"),
        "Image sizes": px.scatter(data["images"], x="width", y="height", opacity=0.5,
                                  title="Image sizes (pixels)"),
        "Languages": px.pie(info["languages"], names="language", values="n_texts", title="Texts per language"),
    }
