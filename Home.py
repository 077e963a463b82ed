"""Home: what is loaded, the one-click demo with live progress, recent runs with headline metrics."""

from __future__ import annotations

import streamlit as st

from workbench import runner
from workbench.ui import home
from workbench.ui import runs as runs_ui
from workbench.ui.common import init_page

db = init_page("Home", icon="🏠")
st.title("Product image–text matching workbench")
st.caption("Which image encoder × text encoder × fusion head matches your catalogue best, by how much, and where "
           "does it fail? Import an eval set, build configurations, run them, compare.")

sets = home.overview(db)
home.demo_button(db, busy=runs_ui.any_active(runner.list_runs(db=db)))


def live_body(runs) -> None:
    home.progress_and_results(db, runs)
    home.recent_runs(db, runs)


runs_ui.live(db, live_body)

st.subheader("Next steps")
cols = st.columns(3)
cols[0].page_link("pages/1_Eval_sets.py", label="Import or browse eval sets", icon="🗂️")
cols[1].page_link("pages/2_Configurations.py", label="Build configurations", icon="🧩")
cols[2].page_link("pages/3_Runs.py", label="Start and watch runs", icon="🏃")
