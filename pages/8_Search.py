"""Search: a typed query, a photo or an eval-set item, answered by several runs side by side."""

from __future__ import annotations

import streamlit as st

from workbench.ui import cache
from workbench.ui import search as ui
from workbench.ui.common import init_page

db = init_page("Search", icon=":material/search:")
st.title("Search")
st.caption("Type a query (English or Chinese), upload a photo or pick an eval-set item, and see what each run "
           "returns, side by side, with its latency. Heads with a joint space rank the whole gallery by cosine; "
           "heads that score pairs re-rank a stated retriever's top 100. The first query of a run loads its "
           "models (a few seconds); later ones reuse them.")

runs = cache.finished_runs(db)
if runs.empty:
    st.info("No finished runs yet. Start some on the Runs page.")
    st.stop()
eval_set = ui.choose_eval_set(runs)
run_ids = ui.choose_runs(runs, eval_set)
if not run_ids:
    st.info("Choose at least one run.")
    st.stop()
labels = dict(zip(runs["run_id"], runs["label"], strict=True))
request = ui.query_form(db, eval_set, run_ids, labels)
if request is None:
    st.info("Enter a query and press **Search**.")
    st.stop()
ui.results(db, run_ids, labels, request)
