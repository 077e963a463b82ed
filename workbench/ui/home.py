"""Home: what is loaded (database, eval sets, device), the demo in two sizes with live progress, and one table of
recent results."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from workbench.data.evalsets import demo_eval_set_name
from workbench.demo import DEMO_SIZES, demo_configs, start_demo
from workbench.run import runner
from workbench.ui import cache
from workbench.ui import runs as runs_ui
from workbench.ui.common import friendly_errors

RECENT_RUNS = 10
SIZE_LABELS = {
    "quick": "Quick: {n:,} products, three fusion heads on cheap encoders (about a minute on 2 CPU cores)",
    "full": "Full: {n:,} products, the default suite of three designs (several minutes on 2 CPU cores)",
}


def overview(db: str) -> None:
    """Database, device and eval sets."""
    c1, c2 = st.columns([3, 1])
    c1.caption("Database")
    c1.code(db, language=None)
    c2.caption("Device")
    c2.markdown(f"**{cache.device_summary()}**")
    sets = cache.eval_sets(db)
    st.subheader("Eval sets")
    if sets.empty:
        st.info("No eval sets yet. Press **Run the demo** below (it generates the bundled bilingual catalogue), "
                "or import your own on the **Eval sets** page.")
    else:
        st.dataframe(sets[["name", "n_products", "n_images", "n_texts", "n_pairs", "source", "created_at"]],
                     hide_index=True, width="stretch")


def demo_button(db: str) -> None:
    """The demo size, then 'Run the demo': queues only the variants of that size not already queued, running or
    done (so pressing twice, or in two tabs, never duplicates a run)."""
    st.subheader("Demo")
    size = st.radio("Demo size", list(DEMO_SIZES), key="home_demo_size",
                    format_func=lambda s: SIZE_LABELS[s].format(n=DEMO_SIZES[s][0]))
    n_products, suite = DEMO_SIZES[size]
    st.caption(f"Runs {len(demo_configs(suite))} offline configurations on the bundled bilingual catalogue "
               f"(`{demo_eval_set_name(n_products, 0)}`): generated on first use, then encoded, trained and scored "
               "in the background; you can leave this page or reload it.")
    if st.button("Run the demo", type="primary", key="home_demo_start"):
        with friendly_errors("Starting the demo"):
            before = set(runner.list_runs(db=db)["run_id"])
            run_ids = start_demo(size, db=db)
            new = [r for r in run_ids if r not in before]
            st.session_state["home_demo_runs"] = run_ids
            st.session_state["home_demo_message"] = (
                f"Queued {len(new)} demo run(s)" + (f"; {len(run_ids) - len(new)} already existed and were kept."
                                                    if len(new) < len(run_ids) else ".")
                if new else "Every run of this demo already exists (queued, running or done); nothing was queued.")
            st.rerun()
    if message := st.session_state["home_demo_message"]:
        st.success(message)
        st.session_state["home_demo_message"] = None


def progress(runs: pd.DataFrame) -> None:
    """Live progress of every active run (the demo's and any other, CLI runs included)."""
    for r in runs.sort_values("created_at", kind="stable").itertuples(index=False):
        if not runs_ui.is_active(r.status):
            continue
        record = runs_ui.progress_of(r.progress, r.stage)
        eta = runs_ui.format_seconds(record.eta_s if record and r.status == "running" else None)
        text = f"{r.config} on {r.eval_set}: {r.status}"
        if r.status == "running" and record:
            text += f" · stage {record.label()}" + (f" · ETA {eta}" if eta else "")
        st.progress(runs_ui.overall_fraction(r.status, record), text=text)


def results(db: str, runs: pd.DataFrame) -> None:
    """One table: the newest runs (this session's demo runs first) with headline metrics and 95% CIs."""
    st.subheader("Recent runs")
    if runs.empty:
        st.info("No runs yet. Run the demo above, or choose eval sets and configurations on the **Runs** page.")
        return
    known = set(runs["run_id"])
    demo = [r for r in st.session_state["home_demo_runs"] if r in known]
    run_ids = list(dict.fromkeys([*demo, *runs["run_id"]]))[:max(RECENT_RUNS, len(demo))]
    info = runs.set_index("run_id")
    key = tuple((r, str(info.at[r, "status"]), str(info.at[r, "finished_at"])) for r in run_ids)
    with friendly_errors("Loading recent runs"):
        st.dataframe(cache.recent_results(db, key), hide_index=True, width="stretch")
    st.caption("Headline metrics on the test split with 95% bootstrap confidence intervals"
               + (" (this session's demo runs first)" if demo else "")
               + ". Compare runs in depth on the **Compare** page.")
