"""Home: what is loaded, the demo in two sizes with live progress, one table of recent results."""

from __future__ import annotations

import streamlit as st

from workbench.ui import home
from workbench.ui import runs as runs_ui
from workbench.ui.common import init_page

db = init_page("Home", icon=":material/home:")
st.title("Product image–text matching workbench")
st.caption("Which image encoder × text encoder × fusion head matches your catalogue best, by how much, and where "
           "does it fail? Import an eval set, build configurations, run them, compare.")

home.overview(db)
home.demo_button(db)


def live_body(runs) -> None:
    home.progress(runs)
    home.results(db, runs)


runs_ui.live(db, live_body)

st.subheader("Next steps")
cols = st.columns(3)
cols[0].page_link("pages/1_Eval_sets.py", label="Import or browse eval sets", icon=":material/folder_open:")
cols[1].page_link("pages/2_Configurations.py", label="Build configurations", icon=":material/tune:")
cols[2].page_link("pages/3_Runs.py", label="Start and watch runs", icon=":material/play_circle:")
