"""Eval sets: import (validate first), browse pairs as a gallery, summary charts, delete."""

from __future__ import annotations

import streamlit as st

from workbench.ui import cache, detail, evalsets
from workbench.ui.common import init_page

db = init_page("Eval sets", icon=":material/folder_open:")
detail.detail_dialog(db)
st.title("Eval sets")
evalsets.flash()
sets = cache.eval_sets(db)
views = ["Browse", "Charts", "Import"]
view = st.radio("View", views, horizontal=True, index=2 if sets.empty else 0, key="evalsets_view",
                label_visibility="collapsed")

if view == "Import":
    st.subheader("Import an eval set")
    evalsets.import_section(db)
elif sets.empty:
    st.info("No eval sets yet. Choose **Import** above, or press **Run the demo** on the Home page to generate "
            "the bundled bilingual catalogue.")
else:
    name = evalsets.choose_eval_set(sets)
    info = evalsets.overview(db, sets, name)
    if info is not None and view == "Browse":
        evalsets.gallery(db, name, info)
        evalsets.delete_section(db, name)
    elif info is not None:
        evalsets.charts(db, name, info)
