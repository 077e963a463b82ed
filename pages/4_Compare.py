"""Compare: leaderboard with CIs and paired tests, curves, operating point, calibration, slices, retrieval, flips."""

from __future__ import annotations

import streamlit as st

from workbench.ui import analysis as ui
from workbench.ui.common import friendly_errors, init_page
from workbench.viz import figures

db = str(init_page("Compare runs", icon="⚖️"))
ui.init_state()
st.title("Compare runs")
st.caption("All numbers are on the test split, with thresholds chosen on val. Intervals are 95% percentile "
           "bootstraps over products; tests are paired on the same pairs, against the baseline.")

runs = ui.done_runs(db)
if runs.empty:
    st.info("No finished runs yet. Start some on the Runs page.")
    st.stop()

selected, baseline = ui.run_selection(runs)
if not selected:
    st.info("Pick at least one run.")
    st.stop()
ui.leakage_banner(runs, selected, db)
labels = dict(zip(runs["run_id"], runs["label"], strict=True))
version = ui.metrics_version(tuple(selected), db)

comparison = None
with friendly_errors("Comparing runs"), st.spinner("Comparing runs (paired bootstrap)…"):
    comparison = ui.compare(tuple(selected), baseline, db, version)
if comparison is None:
    st.stop()

st.subheader("Leaderboard")
ui.leaderboard(comparison, labels)

st.subheader("ROC and precision–recall")
curve_map = {labels[r]: ui.curves(r, db, version) for r in selected}
left, right = st.columns(2)
left.plotly_chart(figures.roc_figure(curve_map), width="stretch", key="compare_roc")
right.plotly_chart(figures.pr_figure(curve_map), width="stretch", key="compare_pr")

st.subheader("Operating point")
focus = st.radio("Run", selected, format_func=labels.get, horizontal=True, key="compare_focus")
with friendly_errors("Operating point"):
    ui.operating_point_panel(focus, db, version, ui.curves(focus, db, version))

st.subheader("Calibration")
slices = ui.slice_frame(tuple((r, labels[r]) for r in selected), db, version)
ui.calibration_panel(curve_map, slices)

st.subheader("Per-slice performance")
c1, c2 = st.columns([1, 2])
metric = c1.selectbox("Metric", ["pair/roc_auc", "pair/f1", "pair/accuracy", "pair/pr_auc"], key="compare_slice_metric")
kinds = c2.multiselect("Slices", list(ui.SLICE_KINDS), default=list(ui.SLICE_KINDS), key="compare_slice_kinds")
ui.slice_panel(slices[slices["slice_kind"].isin(kinds)], metric)

st.subheader("Retrieval")
ui.retrieval_panel(slices)

st.subheader("Flips against the baseline")
if len(selected) < 2:
    st.caption("Select a second run to see which pairs flip between right and wrong.")
else:
    ui.flips_panel(comparison, labels, db)
