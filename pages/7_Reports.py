"""Reports: export one run, or a comparison of several, as HTML, PDF, Markdown, JSON, CSV or Parquet."""

from __future__ import annotations

import streamlit as st

from workbench.ui import cache
from workbench.ui import reports as ui
from workbench.ui.common import friendly_errors, init_page

db = init_page("Reports", icon=":material/description:")
st.title("Reports")
st.caption("Shareable exports of stored results: metrics with CIs, curves, slices, retrieval, mismatches, flips "
           "and a reproducibility card (config, hashes, versions and the command that recreates each run).")

runs = cache.finished_runs(db)
if runs.empty:
    st.info("No finished runs yet. Start some on the Runs page.")
    st.stop()

selected = ui.choose_runs(runs)
left, right = st.columns([2, 1])
fmt = left.radio("Format", list(ui.FORMAT_LABELS), format_func=ui.FORMAT_LABELS.get, horizontal=True,
                 key="reports_format")
projection = right.selectbox("Embedding map", list(ui.PROJECTIONS), format_func=ui.PROJECTIONS.get,
                             key="reports_projection")

if st.button("Generate", type="primary", disabled=not selected, key="reports_generate"):
    st.session_state[ui.STATE_KEY] = ui.request(selected, fmt, projection)

req = st.session_state.get(ui.STATE_KEY)
if req:
    report = None
    with friendly_errors("Generating the report"), st.spinner("Generating the report…"):
        report = ui.rendered(db, req)
    if report is not None:
        ui.download_buttons(db, req)
        ui.preview(report)
