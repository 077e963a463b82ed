"""Embedding space: a UMAP or PCA map of a run's joint space (cached), box/lasso selection, geometry diagnostics."""

from __future__ import annotations

import streamlit as st

from workbench.ui import cache, detail
from workbench.ui import embedding as ui
from workbench.ui.common import init_page

db = init_page("Embedding space", icon=":material/scatter_plot:")
detail.detail_dialog(db)
st.title("Embedding space")
st.caption("Test-split images and texts in the run's joint space, projected to 2-D. Projections are cached per "
           "run and parameters, so a revisit is instant. Select points with the box or lasso tool.")

runs = cache.finished_runs(db)
if runs.empty:
    st.info("No finished runs yet. Start some on the Runs page.")
    st.stop()

c1, c2 = st.columns(2)
with c1:
    run_id = ui.pick_map_run(runs, db, "Run", "embed_run")
with c2:
    second = None
    if len(runs) > 1 and st.toggle("Show a second run below", key="embed_compare"):
        second = ui.pick_map_run(runs[runs["run_id"] != run_id], db, "Second run", "embed_run_b")
shown = [r for r in (run_id, second) if r]

ui.parameters_form(shown)
params = ui.committed_params(shown)
if params is None:
    st.info("Choose the runs and parameters, then press **Compute projection** (UMAP takes a while the first "
            "time; results are cached).")
    st.stop()

info = runs.set_index("run_id")
o1, o2 = st.columns(2)
color_by = o1.selectbox("Colour by", ui.color_options([info.at[r, "eval_set"] for r in shown], db),
                        key="embed_color_by", format_func=ui.COLOR_BY_LABELS.get)
lines = o2.checkbox("Join matched images and texts with lines", key="embed_lines")

for i, rid in enumerate(shown):
    result = ui.projection(rid, db, params)
    if result is None:
        continue
    eval_set = info.at[rid, "eval_set"]
    if color_by == "tag":
        result = ui.with_tags(result, eval_set, db)
    ui.projection_chart(result, label=info.at[rid, "label"], color_by=color_by, lines=lines,
                        key=f"embed_chart_{i}", eval_set=eval_set, db=db)
    st.markdown("**Geometry diagnostics**")
    ui.diagnostics_panel(rid, db)
