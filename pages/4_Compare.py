"""Compare: leaderboard with CIs and paired tests, curves, operating point, calibration, slices, retrieval, flips,
robustness."""

from __future__ import annotations

import streamlit as st

from workbench.ui import cache, detail
from workbench.ui import compare as ui
from workbench.ui import robustness as robust_ui
from workbench.ui.common import friendly_errors, init_page

db = init_page("Compare runs", icon=":material/balance:")
detail.detail_dialog(db)
st.title("Compare runs")
st.caption("All numbers are on the test split, with thresholds chosen on val. Intervals are 95% percentile "
           "bootstraps over products; tests are paired on the same pairs, against the baseline.")

runs = cache.finished_runs(db)
if runs.empty:
    st.info("No finished runs yet. Start some on the Runs page.")
    st.stop()

selected, baseline = ui.choose_runs(runs)
if not selected:
    st.info("Pick at least one run.")
    st.stop()
ui.leakage_banner(runs, selected, db)
labels = ui.short_labels(selected, runs)
ui.label_legend(selected, labels, runs)
version = cache.metrics_version(tuple(selected), db)

comparison = None
with friendly_errors("Comparing runs"), st.spinner("Comparing runs (paired bootstrap)…"):
    comparison = cache.comparison(tuple(selected), baseline, db, version)
if comparison is None:
    st.stop()

st.subheader("Leaderboard")
ui.leaderboard(comparison, labels)

st.subheader("ROC and precision–recall")
curve_map = ui.curve_map(selected, labels, db, version)
ui.curves_panel(curve_map)

st.subheader("Operating point")
focus = st.radio("Run", selected, format_func=labels.get, horizontal=True, key="compare_focus")
with friendly_errors("Operating point"):
    ui.operating_point_panel(focus, db, version, cache.curves(focus, db, version))

st.subheader("Calibration")
slices = cache.slice_frame(tuple((r, labels[r]) for r in selected), db, version)
ui.calibration_panel(curve_map, slices)

st.subheader("Per-slice performance")
c1, c2 = st.columns([1, 2])
metric = c1.selectbox("Metric", list(ui.SLICE_METRIC_CHOICES), key="compare_slice_metric")
kinds = c2.multiselect("Slices", list(ui.SLICE_KINDS), default=list(ui.SLICE_KINDS), key="compare_slice_kinds")
ui.slice_panel(slices[slices["slice_kind"].isin(kinds)], metric)

st.subheader("Retrieval")
ui.retrieval_panel(slices)

st.subheader("Flips against the baseline")
if len(selected) < 2:
    st.caption("Select a second run to see which pairs flip between right and wrong.")
else:
    ui.flips_panel(comparison, labels, db, version)

st.subheader("Robustness")
robust_ui.robustness_tab(selected, labels, db)
