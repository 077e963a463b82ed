"""Home: what is loaded (database, eval sets, device), the one-click demo with live progress, recent results."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from workbench import runner
from workbench.data.evalsets import demo_eval_set_name, list_eval_sets
from workbench.demo import demo_configs, results_table
from workbench.ui import runs as runs_ui
from workbench.ui.common import friendly_errors

RECENT_RUNS = 10


@st.cache_resource(show_spinner=False)
def device_summary() -> str:
    """'CPU' or 'NVIDIA H100 · 79.6 GB' for the device ``auto`` resolves to."""
    from workbench.device import describe_device, resolve_device

    info = describe_device(resolve_device("auto"))
    if info.get("memory_gb"):
        return f"{info['name']} · {info['memory_gb']} GB ({info['type']})"
    return str(info["name"])


@st.cache_data(ttl=2, show_spinner=False)
def cached_eval_sets(db: str) -> pd.DataFrame:
    return list_eval_sets(db)


@st.cache_data(ttl=2, show_spinner=False)
def recent_results(db: str, run_ids: tuple[str, ...]) -> pd.DataFrame:
    """Headline metrics (with 95% CIs) of the given runs, with their eval set and start time."""
    if not run_ids:
        return pd.DataFrame()
    table = results_table(list(run_ids), db=db)
    info = runner.list_runs(db=db).set_index("run_id")
    table.insert(2, "eval_set", table["run_id"].map(info["eval_set"]))
    table["created"] = table["run_id"].map(info["created_at"])
    return table


def demo_run_ids(runs: pd.DataFrame, eval_set: str) -> list[str]:
    """This session's demo runs, else the newest run of each demo config on the demo eval set (after a reload)."""
    started = [r for r in st.session_state.get("home_demo_runs", []) if r in set(runs["run_id"])]
    if started:
        return started
    names = {c.name for c in demo_configs()}
    demo = runs[(runs["eval_set"] == eval_set) & runs["config"].isin(names)]
    return list(demo.sort_values("created_at", ascending=False).drop_duplicates("config")["run_id"])[::-1]


def overview(db: Path) -> pd.DataFrame:
    """Database, device and eval sets; returns the eval sets."""
    c1, c2 = st.columns([3, 1])
    c1.caption("Database")
    c1.code(str(db), language=None)
    c2.caption("Device")
    c2.markdown(f"**{device_summary()}**")
    sets = cached_eval_sets(str(db))
    st.subheader("Eval sets")
    if sets.empty:
        st.info("No eval sets yet. Press **Run the demo** below (it generates the bundled bilingual catalogue), "
                "or import your own on the **Eval sets** page.")
    else:
        st.dataframe(sets[["name", "n_products", "n_images", "n_texts", "n_pairs", "source", "created_at"]],
                     hide_index=True, width="stretch")
    return sets


def demo_button(db: Path, busy: bool) -> None:
    n_products = runs_ui.demo_products()
    eval_set = demo_eval_set_name(n_products, 0)
    st.subheader("Demo")
    st.caption(f"Three offline configurations on the bundled catalogue ({n_products} products, `{eval_set}`): "
               "generated on first use, then encoded, trained and scored in the background — you can leave this "
               "page or reload it.")
    if st.button("Run the demo", type="primary", disabled=busy,
                 help="Runs are in progress; wait for them to finish." if busy else None):
        with friendly_errors("Starting the demo"):
            st.session_state["home_demo_runs"] = runner.start_background_batch(
                demo_configs("default"), [eval_set], db=db)
            st.rerun()


def progress_and_results(db: Path, runs: pd.DataFrame) -> None:
    """Live progress of active runs (any, including CLI ones), then the demo's results table when done."""
    eval_set = demo_eval_set_name(runs_ui.demo_products(), 0)
    active = [r for r in runs.sort_values("created_at", kind="stable").itertuples(index=False)
              if runs_ui.is_active(r.status)]
    for r in active:
        progress = runs_ui.parse_progress(r.progress)
        eta = runs_ui.format_seconds(progress.get("eta_s"))
        text = f"{r.config} on {r.eval_set}: {r.status}"
        if r.status == "running":
            text += f" · stage {runs_ui.stage_label(progress, r.stage)}" + (f" · ETA {eta}" if eta else "")
        st.progress(runs_ui.overall_fraction(r.status, progress), text=text)
    ids = demo_run_ids(runs, eval_set)
    if not ids:
        return
    finished = [i for i in ids if i not in {r.run_id for r in active}]
    if finished:
        st.markdown("**Demo results** (test split, 95% bootstrap CIs)")
        with friendly_errors("Loading the demo results"):
            st.dataframe(recent_results(str(db), tuple(finished)), hide_index=True, width="stretch")


def recent_runs(db: Path, runs: pd.DataFrame) -> None:
    st.subheader("Recent runs")
    if runs.empty:
        st.info("No runs yet. Run the demo above, or choose eval sets and configurations on the **Runs** page.")
        return
    ids = tuple(runs["run_id"].head(RECENT_RUNS))
    with friendly_errors("Loading recent runs"):
        st.dataframe(recent_results(str(db), ids), hide_index=True, width="stretch")
    st.caption("Headline metrics on the test split with 95% bootstrap confidence intervals. "
               "Compare runs in depth on the **Compare** page.")
