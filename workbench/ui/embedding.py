"""Embedding space: projection parameters behind a form, the cached map with box/lasso selection, geometry
diagnostics. Projections come from :mod:`workbench.ui.cache` (shared, computed once per run and parameters)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pandas as pd
import streamlit as st

from workbench.ui import cache
from workbench.ui.common import escape_markdown, friendly_errors
from workbench.ui.selection import lasso_selection
from workbench.viz import ProjectionResult, figures

COLOR_BY = figures.COLOR_BY
COLOR_BY_LABELS = figures.COLOR_BY_LABELS
DIAGNOSTICS_HELP = {
    "diag/modality_gap": "distance between the image and text centroids (lower = closer modalities)",
    "diag/alignment": "mean squared distance of matched pairs (lower is better)",
    "diag/uniformity": "log mean Gaussian potential (lower = more spread out)",
    "diag/hubness": "skewness of k-occurrence (high = a few hubs dominate)",
}


JOINT_SPACE = "joint space of the fusion head"  # the diagnostics' ``space`` of a head with its own joint space
MAX_PROBED = 20  # runs checked for a joint space when choosing the default


def has_joint_space(run_id: str, db: str) -> bool:
    """Whether the run's head has its own joint space (not the CCA view stored for heads that score pairs)."""
    _, art = cache.diagnostics(run_id, db, cache.metrics_version((run_id,), db))
    return str(art.get("space", "")).startswith(JOINT_SPACE)


def pick_map_run(runs: pd.DataFrame, db: str, label: str, key: str) -> str:
    """A run picker whose default is the first run (of ``selected_runs``, then newest first) with a joint space,
    since the CCA view of a pair-scoring head says little about that head."""
    ids = list(runs["run_id"])
    labels = dict(zip(runs["run_id"], runs["label"], strict=True))
    if st.session_state.get(key) not in ids:
        preferred = [r for r in st.session_state["selected_runs"] if r in labels]
        ordered = list(dict.fromkeys([*preferred, *ids]))
        joint = [r for r in ordered[:MAX_PROBED] if has_joint_space(r, db)]
        st.session_state[key] = (joint or ordered)[0]
    return st.selectbox(label, ids, key=key,
                        format_func=lambda r: labels[r] + ("" if has_joint_space(r, db) else " (CCA view)"))


def parameters_form(shown: list[str]) -> None:
    """Method (outside the form, so the UMAP-only controls show only under UMAP) and UMAP parameters; 'Compute
    projection' commits them (with the runs) to ``embed_params``."""
    method = st.radio("Method", ["umap", "pca"], format_func=str.upper, horizontal=True, key="embed_method",
                      help="PCA is instant and uses every point; UMAP keeps neighbourhoods but compiles on first "
                           "use.")
    with st.form("embed_form"):
        params: dict[str, Any] = {"method": method}
        if method == "umap":
            f1, f2, f3 = st.columns(3)
            params["n_neighbors"] = f1.slider("UMAP n_neighbors", 2, 100, 15, key="embed_n_neighbors")
            params["min_dist"] = f2.slider("UMAP min_dist", 0.0, 1.0, 0.1, 0.05, key="embed_min_dist")
            params["sample_size"] = int(f3.number_input(
                "UMAP fit sample size", 50, 200_000, 5000, step=500, key="embed_sample_size",
                help="UMAP is fitted on a stratified sample of at most this many points (by modality and "
                     "category); the rest are placed with transform."))
        else:
            st.caption("PCA has no parameters: the first two principal components of every point.")
        if st.form_submit_button("Compute projection", type="primary"):
            st.session_state["embed_params"] = {**params, "runs": shown}


def color_options(eval_sets: list[str], db: str) -> list[str]:
    """What the points can be coloured by; 'tag' only when a shown eval set has tagged products."""
    tagged = any(not cache.tag_counts(name, db).empty for name in eval_sets)
    return [c for c in figures.COLOR_BY if c != "tag" or tagged]


def with_tags(result: ProjectionResult, eval_set: str, db: str) -> ProjectionResult:
    """A copy whose frame has a ``tag`` column: the item's product's tags, comma-joined (None when untagged); the
    cached result itself is never changed."""
    by_product: dict[str, list[str]] = {}
    for tag in cache.tag_counts(eval_set, db)["tag"]:
        for product in cache.tagged_products(eval_set, tag, db):
            by_product.setdefault(product, []).append(tag)
    tags = result.frame["product_id"].map(lambda p: ", ".join(by_product[p]) if p in by_product else None)
    return replace(result, frame=result.frame.assign(tag=tags))


def committed_params(shown: list[str]) -> dict | None:
    """The committed projection parameters when they were committed for exactly these runs, else None."""
    committed = st.session_state["embed_params"]
    if not committed or committed["runs"] != shown:
        return None
    return {k: v for k, v in committed.items() if k != "runs"}


def projection(run_id: str, db: str, params: dict) -> ProjectionResult | None:
    """The run's cached map (None, with the reason shown, when it cannot be computed)."""
    with friendly_errors("Projecting"), st.spinner("Projecting (UMAP compiles on first use)…"):
        version = cache.metrics_version((run_id,), db)
        return cache.projection(run_id, db, version, tuple(sorted(params.items())))
    return None


def projection_chart(result: ProjectionResult, *, label: str, color_by: str, lines: bool, key: str, eval_set: str,
                     db: str) -> None:
    """The map, its description and, for the points picked with the box or lasso tool, a table with thumbnails
    and texts and the actions on their products (:func:`workbench.ui.selection.lasso_selection`)."""
    fig = figures.embedding_figure(result.frame, color_by=color_by, lines=lines, title=label)
    event = st.plotly_chart(fig, on_select="rerun", selection_mode=("box", "lasso"), key=key, width="stretch")
    st.caption(result.description + (" (read from the projection cache)" if result.from_cache else ""))
    picked = selected_items(event, result.frame, limit=len(result.frame))
    if len(picked):
        lasso_selection(picked, eval_set, db, key=f"{key}_selection")


def diagnostics_panel(run_id: str, db: str) -> None:
    """Modality gap, alignment, uniformity, hubness and the description of the space they were measured in."""
    stored, art = cache.diagnostics(run_id, db, cache.metrics_version((run_id,), db))
    for col, (name, text) in zip(st.columns(len(DIAGNOSTICS_HELP)), DIAGNOSTICS_HELP.items(), strict=True):
        value = stored.get(name, art.get(name))
        col.metric(name.split("/")[1].replace("_", " "), "—" if value is None or pd.isna(value) else f"{value:.3f}",
                   help=text)
    if art.get("space"):
        st.caption(f"Measured in: {escape_markdown(art['space'])}.")
    if art.get("zero_vectors_left_out"):
        st.caption(f"{art['zero_vectors_left_out']} items with all-zero vectors were left out of these numbers.")


def selected_items(event: Any, frame: pd.DataFrame, limit: int = 24) -> pd.DataFrame:
    """Rows of the projection frame picked by a box/lasso selection (customdata = [item_id, modality])."""
    points = (getattr(event, "selection", None) or {}).get("points", []) if event else []
    keys = set()
    for p in points:
        custom = p.get("customdata")
        if isinstance(custom, (list, tuple)) and len(custom) >= 2:
            keys.add((str(custom[0]), str(custom[1])))
    if not keys:
        return frame.iloc[:0]
    mask = [(i, m) in keys for i, m in zip(frame["item_id"], frame["modality"], strict=True)]
    return frame[mask].head(limit)
