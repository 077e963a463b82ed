"""Runs: start configs × eval sets in the background, watch them live, inspect logs and errors, cancel."""

from __future__ import annotations

import streamlit as st

from workbench.ui import configs
from workbench.ui import runs as runs_ui
from workbench.ui.common import init_page

db = init_page("Runs", icon="🏃")
configs.init_state()
st.title("Runs")
st.caption("Runs execute one after another in a background thread of this server: you can switch pages, reload or "
           "open a new tab. Runs started from the command line on the same database appear here too.")

catalog, _ = configs.config_catalog(str(db))
with st.expander("Start runs", expanded=True):
    started = runs_ui.start_form(db, catalog, st.session_state[configs.SELECTION_KEY])
if started:
    st.success(f"Started {len(started)} run(s); they run one after another.")


def live_body(runs) -> None:
    st.subheader("All runs")
    runs_ui.show_table(runs)
    if not runs.empty:
        st.subheader("Run details")
        runs_ui.show_details(db, runs)


runs_ui.live(db, live_body)
