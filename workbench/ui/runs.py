"""Runs: start a grid, a live table polled only while something runs, per-run details and cancel.

Run state lives in DuckDB (the runner writes progress there), so what the pages show survives reloads, new tabs
and runs started from the CLI. Nothing here holds a connection across reruns.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from workbench import runner
from workbench.config import RunConfig
from workbench.data.evalsets import demo_eval_set_name, list_eval_sets
from workbench.runner import STAGES
from workbench.ui.common import friendly_errors

ACTIVE = ("queued", "running")
POLL_S = 2.0
# A queued run with no worker thread in this server and older than this was orphaned (e.g. the server restarted);
# it is shown, but not polled for ever.


# ------------------------------------------------------------------------------------------- pure helpers
def parse_progress(raw: Any) -> dict:
    """The runner's progress JSON (string or dict) as a dict; {} when absent or unreadable."""
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str) or not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def overall_fraction(status: str, progress: dict) -> float:
    """Share of the whole run done: finished stages plus the fraction of the current one."""
    if status == "done":
        return 1.0
    n_stages = int(progress.get("n_stages") or len(STAGES))
    index = int(progress.get("stage_index") or 0)
    done, total = progress.get("done") or 0, progress.get("total") or 0
    within = done / total if total else 0.0
    return min(1.0, max(0.0, (index + within) / n_stages))


def format_seconds(seconds: float | None) -> str:
    if seconds is None or pd.isna(seconds):
        return ""
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def stage_label(progress: dict, stage: str | None = None) -> str:
    stage = progress.get("stage") or stage
    if not stage:
        return ""
    index = int(progress.get("stage_index", STAGES.index(stage) if stage in STAGES else 0))
    n_stages = int(progress.get("n_stages") or len(STAGES))
    text = f"{index + 1}/{n_stages} {stage}"
    if progress.get("total"):
        text += f" ({progress.get('done', 0)}/{progress['total']})"
    return text


def is_active(status: str) -> bool:
    """Queued or running (runs whose process died are listed as 'interrupted' by the runner)."""
    return status in ("queued", "running")


def any_active(runs: pd.DataFrame) -> bool:
    return any(is_active(r.status) for r in runs.itertuples(index=False))


def runs_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs as shown in the live table: status, stage k/n, overall progress, ETA, duration."""
    rows = []
    for r in runs.itertuples(index=False):
        progress = parse_progress(r.progress)
        status = r.status
        eta = progress.get("eta_s") if r.status == "running" else None
        elapsed = r.duration_s
        if r.status == "running" and r.started_at is not None and not pd.isna(r.started_at):
            elapsed = (datetime.now() - pd.Timestamp(r.started_at).to_pydatetime()).total_seconds()
        rows.append({
            "run_id": r.run_id, "config": r.config, "eval_set": r.eval_set, "status": status,
            "stage": stage_label(progress, r.stage) if r.status in ACTIVE else "",
            "progress": overall_fraction(r.status, progress) if r.status != "failed" else None,
            "stage ETA": format_seconds(eta), "duration": format_seconds(elapsed), "device": r.device,
            "created": r.created_at, "error": r.error,
        })
    return pd.DataFrame(rows, columns=["run_id", "config", "eval_set", "status", "stage", "progress",
                                       "stage ETA", "duration", "device", "created", "error"])


def run_label(row: Any) -> str:
    return f"{row.config} · {row.eval_set} · {row.status} · {row.run_id}"


# ------------------------------------------------------------------------------------------------ cached
@st.cache_data(ttl=2, show_spinner=False)
def cached_eval_set_names(db: str) -> list[str]:
    return list(list_eval_sets(db)["name"])


@st.cache_resource(show_spinner=False)
def available_devices() -> list[str]:
    import torch

    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    return devices


def demo_products() -> int:
    import os

    return int(os.environ.get("WORKBENCH_DEMO_PRODUCTS", 2000))


# ------------------------------------------------------------------------------------------------ widgets
def live(db: Path | str, body: Callable[[pd.DataFrame], None]) -> None:
    """Render ``body(runs)`` in a fragment that re-runs every POLL_S seconds while a run is active.

    When the last active run finishes, the whole page re-runs once (so it can show results) and polling stops.
    """
    first = runner.list_runs(db=db)
    polling = any_active(first)
    state = {"runs": first}

    def tick() -> None:
        runs = state.pop("runs", None)
        if runs is None:
            runs = runner.list_runs(db=db)
        if polling and not any_active(runs):
            st.rerun()  # the last run just ended: redraw the whole page once, without polling
        body(runs)

    st.fragment(tick, run_every=POLL_S if polling else None)()


def start_form(db: Path | str, catalog: dict[str, RunConfig], default_configs: list[str]) -> list[str] | None:
    """Eval sets × configs × device; returns the started run ids when 'Start' was pressed."""
    names = cached_eval_set_names(str(db))
    demo = demo_eval_set_name(demo_products(), 0)
    options = names + ([demo] if demo not in names else [])
    chosen_set = st.session_state.get("selected_eval_set")
    with st.form("runs_start"):
        eval_sets = st.multiselect(
            "Eval sets", options, default=[chosen_set] if chosen_set in options else [],
            format_func=lambda n: n if n in names else f"{n} (bundled demo, generated on first use)",
        )
        configs = st.multiselect("Configurations", list(catalog), default=[c for c in default_configs if c in catalog],
                                 help="Build or pick more on the Configurations page.")
        device = st.selectbox("Device", available_devices(), help="auto: a CUDA GPU if there is one, else CPU.")
        submitted = st.form_submit_button("Start", type="primary")
    if not submitted:
        return None
    if not eval_sets or not configs:
        st.warning("Choose at least one eval set and one configuration.")
        return None
    with friendly_errors("Starting the runs"):
        run_ids = runner.start_background_batch([catalog[c] for c in configs], eval_sets, db=db, device=device)
        st.session_state["selected_eval_set"] = eval_sets[0]
        st.session_state["runs_started"] = run_ids
        st.session_state["runs_detail"] = run_ids[0]
        return run_ids
    return None


def show_table(runs: pd.DataFrame) -> None:
    if runs.empty:
        st.info("No runs yet. Choose eval sets and configurations above and press **Start**, or run "
                "`python -m workbench run --eval-set NAME --config NAME` — CLI runs appear here too.")
        return
    st.dataframe(
        runs_table(runs), hide_index=True, width="stretch",
        column_config={
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
            "created": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm:ss"),
        },
    )


def show_details(db: Path | str, runs: pd.DataFrame) -> None:
    """One run in full: status, progress, readable error, GPU memory, timings, log; Cancel while active."""
    if runs.empty:
        return
    labels = {r.run_id: run_label(r) for r in runs.itertuples(index=False)}
    ids = list(labels)
    started = [r for r in st.session_state.get("runs_started", []) if r in labels]
    st.session_state.setdefault("runs_detail", started[0] if started else ids[0])
    if st.session_state["runs_detail"] not in labels:
        st.session_state["runs_detail"] = ids[0]
    run_id = st.selectbox("Run", ids, format_func=labels.get, key="runs_detail")
    with friendly_errors("Loading the run"):
        record = runner.get_run(run_id, db=db)
        status = runs.set_index("run_id").at[run_id, "status"]  # list_runs marks dead runs 'interrupted'
        progress = record.get("progress") or {}
        cols = st.columns(4)
        cols[0].metric("Status", status)
        cols[1].metric("Stage", stage_label(progress, record.get("stage")) or "—")
        duration = record["finished_at"] - record["started_at"] if record.get("finished_at") is not None and \
            record.get("started_at") is not None else None
        cols[2].metric("Duration", format_seconds(duration.total_seconds()) if duration is not None else "—")
        cols[3].metric("Device", record.get("device") or "—")
        if status in ACTIVE:
            st.progress(overall_fraction(status, progress),
                        text=f"{stage_label(progress, record.get('stage'))} · ETA "
                             f"{format_seconds(progress.get('eta_s')) or '…'}")
            if record.get("cancel_requested"):
                st.info("Cancel requested: the run stops at its next progress report.")
            elif st.button("Cancel this run", key=f"runs_cancel_{run_id}"):
                runner.request_cancel(run_id, db=db)
                st.info("Cancel requested: the run stops at its next progress report.")
        if status == "failed":
            st.error(f"This run failed: {record.get('error')}")
        elif status == "interrupted":
            st.warning("This run stopped reporting (its process ended or hung); start it again.")
        elif status == "cancelled":
            st.warning(record.get("error") or "Cancelled.")
        gpu = progress.get("gpu")
        if gpu:
            st.caption("GPU memory (GB): " + ", ".join(f"{k.removesuffix('_gb')} {v}" for k, v in gpu.items()))
        if record.get("timings"):
            st.caption("Timings")
            st.json(record["timings"], expanded=False)
        st.caption("Log")
        st.code(record.get("log") or "(no log yet)", language=None)
        st.caption("Configuration")
        st.json(record.get("config") or {}, expanded=False)

