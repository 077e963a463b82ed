"""Mismatches: false positives / negatives and hardest negatives as a gallery, retrieval failures, label errors."""

from __future__ import annotations

import streamlit as st

from workbench.ui import cache, detail
from workbench.ui import mismatches as ui
from workbench.ui.common import init_page, pick_run

db = init_page("Mismatches", icon=":material/manage_search:")
detail.detail_dialog(db)
st.title("Mismatches")
st.caption("Where a run goes wrong on the test split, at its own val-chosen threshold. Mark pairs whose label is "
           "wrong; metrics can then be recomputed without them.")

runs = cache.finished_runs(db)
if runs.empty:
    st.info("No finished runs yet. Start some on the Runs page.")
    st.stop()
run_id = pick_run(runs, "Run", "mismatch_run")
eval_set = runs.set_index("run_id").at[run_id, "eval_set"]
ui.flash()
version = cache.metrics_version((run_id,), db)
ui.exclusion_toggle(run_id, db, version)
marked = cache.marked_pairs(eval_set, db)

ui.mismatch_gallery(run_id, eval_set, db, version, marked)

st.subheader("Retrieval failures")
ui.retrieval_failures(run_id, db, version)

st.subheader("Likely label errors")
ui.likely_label_errors(run_id, runs, eval_set, db, marked)

st.subheader("Pairs marked as label errors")
st.dataframe(marked, hide_index=True, width="stretch")
