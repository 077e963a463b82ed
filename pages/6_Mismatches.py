"""Mismatches: false positives / negatives and hardest negatives as a gallery, retrieval failures, label errors."""

from __future__ import annotations

import streamlit as st

from workbench import analysis
from workbench.ui import analysis as ui
from workbench.ui import label_errors as label_error_ui
from workbench.ui.common import friendly_errors, init_page

db = str(init_page("Mismatches", icon="🔍"))
ui.init_state()
st.title("Mismatches")
st.caption("Where a run goes wrong on the test split, at its own val-chosen threshold. Mark pairs whose label is "
           "wrong; metrics can then be recomputed without them.")

runs = ui.done_runs(db)
if runs.empty:
    st.info("No finished runs yet. Start some on the Runs page.")
    st.stop()
run_id = ui.pick_run(runs, "Run", "mismatch_run")
eval_set = runs.set_index("run_id").at[run_id, "eval_set"]
if message := st.session_state["mismatch_message"]:
    st.success(message)
    st.session_state["mismatch_message"] = None

excluded, policy = ui.label_error_policy(run_id, db)
toggle_key = f"mismatch_exclude_{run_id}"
st.toggle("Recompute metrics excluding label errors", value=excluded, key=toggle_key,
          on_change=ui.recompute_metrics, args=(run_id, db, toggle_key),
          help="Recomputes every metric of this run from its stored scores; the choice is recorded with the run.")
st.caption(f"Recorded with the run's metrics: {ui.escape_markdown(policy or 'unknown')}.")

counts = analysis.count_mismatches(run_id, db=db)
kind = st.radio("Show", list(ui.KIND_LABELS), horizontal=True, key="mismatch_kind",
                format_func=lambda k: f"{ui.KIND_LABELS[k]} · {counts[k]:,}")
pairs = ui.scored_pairs(run_id, "test", db, ui.metrics_version((run_id,), db))
f1, f2, f3, f4 = st.columns(4)
category = f1.selectbox("Category", [None, *sorted(pairs["category"].dropna().unique())], key="mismatch_category",
                        format_func=lambda c: "all" if c is None else c)
pair_kind = f2.selectbox("Pair kind", [None, *sorted(pairs["pair_kind"].unique())], key="mismatch_pair_kind",
                         format_func=lambda c: "all" if c is None else c)
sort = f3.selectbox("Sort by", list(analysis.MISMATCH_SORTS), key="mismatch_sort",
                    format_func=lambda s: {"score": "most confident first", "margin": "furthest from threshold"}.get(
                        s, s))
hide_marked = f4.checkbox("Hide pairs marked as label errors", key="mismatch_hide_marked")
per_page = 12
page = st.number_input("Page", min_value=1, value=1, step=1, key="mismatch_page_no")

rows = None
with friendly_errors("Loading mismatches"):
    rows = analysis.mismatches(run_id, db=db, kind=kind, category=category, pair_kind=pair_kind, sort=sort,
                               limit=per_page, offset=(page - 1) * per_page, include_label_errors=not hide_marked)
if rows is not None:
    if rows.empty:
        st.info("No pairs match these filters.")
    cols = st.columns(4)
    for i, row in enumerate(rows.to_dict("records")):
        with cols[i % 4], st.container(border=True):
            ui.mismatch_card(row, eval_set, db)

st.subheader("Retrieval failures")
r1, r2, r3 = st.columns(3)
direction = r1.radio("Direction", ["t2i", "i2t"], horizontal=True, key="mismatch_direction",
                     format_func={"t2i": "text → image", "i2t": "image → text"}.get)
k = r2.slider("Top k", 1, 10, 5, key="mismatch_k")
limit = r3.slider("Queries", 1, 50, 10, key="mismatch_limit")
failures = None
with friendly_errors("Loading retrieval failures"):
    failures = analysis.retrieval_failures(run_id, direction=direction, db=db, k=k, limit=limit)
if failures:
    st.caption(f"Queries whose true item is not ranked first, worst first. Ranking: "
               f"{ui.escape_markdown(failures[0]['method'])}; the top {k} are the run's own.")
    for entry in failures:
        with st.container(border=True):
            ui.retrieval_failure_card(entry)
elif failures is not None:
    st.info("Every query ranks its true item first.")

label_error_ui.likely_label_errors(run_id, runs, eval_set, db)

st.subheader("Pairs marked as label errors")
st.dataframe(analysis.list_label_errors(eval_set, db=db), hide_index=True, width="stretch")
