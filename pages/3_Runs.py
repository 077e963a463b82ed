"""Runs: start configs × eval sets in the background, watch them live (filtered and grouped), name and tag them,
inspect logs, errors and training loss, cancel."""

from __future__ import annotations

import streamlit as st

from workbench.ui import configs
from workbench.ui import runs as runs_ui
from workbench.ui.common import init_page

db = init_page("Runs", icon=":material/play_circle:")
st.title("Runs")
st.caption("Runs execute one after another in a background thread of this server: you can switch pages, reload or "
           "open a new tab. Runs started from the command line on the same database appear here too.")

catalog = configs.load_catalog(db).configs
with st.expander("Start runs", expanded=True):
    started = runs_ui.start_form(db, catalog, st.session_state[configs.SELECTION_KEY])
if started:
    st.success(f"Started {len(started)} run(s); they run one after another.")


def live_body(runs) -> None:
    st.subheader("All runs")
    shown, group_by = runs_ui.filters(runs) if not runs.empty else (runs, None)
    runs_ui.show_table(shown, group_by)
    if not runs.empty:
        st.subheader("Run details")
        runs_ui.show_details(db, runs)


runs_ui.live(db, live_body)
