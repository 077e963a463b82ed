"""Embedding space: a UMAP or PCA map of a run's joint space (cached), box/lasso selection, geometry diagnostics."""

from __future__ import annotations

import streamlit as st

from workbench.ui import analysis as ui
from workbench.ui.common import friendly_errors, init_page
from workbench.viz import figures, get_projection

db = str(init_page("Embedding space", icon="🗺️"))
ui.init_state()
st.title("Embedding space")
st.caption("Test-split images and texts in the run's joint space, projected to 2-D. Projections are cached per "
           "run and parameters, so a revisit is instant. Select points with the box or lasso tool.")

runs = ui.done_runs(db)
if runs.empty:
    st.info("No finished runs yet. Start some on the Runs page.")
    st.stop()

c1, c2 = st.columns(2)
with c1:
    run_id = ui.pick_run(runs, "Run", "embed_run")
with c2:
    second = None
    if len(runs) > 1 and st.toggle("Show a second run side by side", key="embed_compare"):
        second = ui.pick_run(runs[runs["run_id"] != run_id], "Second run", "embed_run_b")
shown = [r for r in (run_id, second) if r]

with st.form("embed_form"):
    f1, f2, f3, f4 = st.columns(4)
    method = f1.radio("Method", ["umap", "pca"], format_func=str.upper, horizontal=True, key="embed_method")
    n_neighbors = f2.slider("UMAP n_neighbors", 2, 100, 15, key="embed_n_neighbors")
    min_dist = f3.slider("UMAP min_dist", 0.0, 1.0, 0.1, 0.05, key="embed_min_dist")
    sample_size = f4.number_input("UMAP fit sample size", 50, 200_000, 5000, step=500, key="embed_sample_size",
                                  help="UMAP is fitted on a stratified sample of at most this many points "
                                       "(by modality and category); the rest are placed with transform.")
    if st.form_submit_button("Compute projection", type="primary"):
        st.session_state["embed_params"] = {"method": method, "n_neighbors": n_neighbors, "min_dist": min_dist,
                                            "sample_size": int(sample_size), "runs": shown}

committed = st.session_state["embed_params"]
if not committed or committed["runs"] != shown:
    st.info("Choose the runs and parameters, then press **Compute projection** (UMAP takes a while the first "
            "time; results are cached).")
    st.stop()
params = {k: v for k, v in committed.items() if k != "runs"}

o1, o2 = st.columns(2)
color_by = o1.selectbox("Colour by", list(figures.COLOR_BY), key="embed_color_by",
                        format_func=lambda c: {"correct": "correctness"}.get(c, c))
lines = o2.checkbox("Join matched images and texts with lines", key="embed_lines")

plot_cols = st.columns(len(shown) + (1 if len(shown) == 1 else 0))
for i, rid in enumerate(shown):
    with plot_cols[i]:
        result = None
        with friendly_errors("Projecting"), st.spinner("Projecting (UMAP compiles on first use)…"):
            result = get_projection(rid, db=db, **params)
        if result is None:
            continue
        label = runs.set_index("run_id").at[rid, "label"]
        fig = figures.embedding_figure(result.frame, color_by=color_by, lines=lines, title=label)
        event = st.plotly_chart(fig, on_select="rerun", selection_mode=("box", "lasso"), key=f"embed_chart_{i}",
                                width="stretch")
        st.caption(result.description + (" (read from the projection cache)" if result.from_cache else ""))
        picked = ui.selected_items(event, result.frame)
        if len(picked):
            ui.item_gallery(picked, total=len(ui.selected_items(event, result.frame, limit=10**9)),
                            columns=4 if second else 6)
        if second:
            ui.diagnostics_panel(rid, db)
if not second:
    with plot_cols[1]:
        st.markdown("**Geometry diagnostics**")
        ui.diagnostics_panel(run_id, db)
