"""Runs: start a grid, a live table polled only while something runs (filtered and grouped by eval set, config,
tag or status), per-run details with an editable name, tags and notes, training-loss curves, and cancel.

Run state lives in DuckDB (the run writes its :class:`~workbench.run.progress.Progress` there), so what the pages
show survives reloads, new tabs and runs started from the CLI. Nothing here holds a connection across reruns, and
the run list is read fresh on every poll (it is what changes).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pandas as pd
import streamlit as st

from workbench.config import RunConfig
from workbench.data.evalsets import demo_eval_set_name
from workbench.demo import DEMO_SIZES
from workbench.evaluation.compare import run_label
from workbench.run import runner
from workbench.run.progress import STAGES, Progress
from workbench.ui import cache
from workbench.ui.common import escape_markdown, friendly_errors
from workbench.viz import training_curves_figure

ACTIVE = ("queued", "running")
POLL_S = 2.0
TABLE_COLUMNS = ["run", "name", "tags", "config", "eval_set", "status", "stage", "progress", "stage ETA",
                 "duration", "device", "created", "error", "run_id"]
GROUPS = {"none": None, "eval set": "eval_set", "config": "config", "tag": "tags", "status": "status"}
UNINTERRUPTIBLE = ("artifacts", "metrics")  # stages that report no progress, so a cancel waits for their end
NO_TAG = "(no tag)"


def progress_of(raw: Any, stage: str | None = None) -> Progress | None:
    """A run's progress record; a run with a known stage but no readable record is at the start of that stage."""
    record = Progress.from_json(raw)
    if record is None and stage in STAGES:
        record = Progress(stage=stage)
    return record


def overall_fraction(status: str, progress: Progress | None) -> float:
    """Share of the whole run done (1 once done, 0 before anything is reported or while queued)."""
    if progress is None or status == "queued":
        return 1.0 if status == "done" else 0.0
    return progress.fraction(status)


def stage_text(status: str, progress: Progress | None) -> str:
    """'queued' before a run starts (never a stage number), the stage label while it runs, '' afterwards."""
    if status == "queued":
        return "queued"
    return progress.label() if progress and status == "running" else ""


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


def elapsed_seconds(status: str, started_at: Any, finished_at: Any, now: datetime | None = None) -> float | None:
    """A run's duration: finished minus started, or the time since it started while it runs (None before)."""
    if started_at is None or pd.isna(started_at):
        return None
    start = pd.Timestamp(started_at).to_pydatetime()
    if finished_at is not None and not pd.isna(finished_at):
        return (pd.Timestamp(finished_at).to_pydatetime() - start).total_seconds()
    return ((now or datetime.now()) - start).total_seconds() if status == "running" else None


def is_active(status: str) -> bool:
    """Queued or running (runs whose process died are listed as 'interrupted' by the runner)."""
    return status in ACTIVE


def any_active(runs: pd.DataFrame) -> bool:
    return any(is_active(r.status) for r in runs.itertuples(index=False))


def demo_eval_sets() -> list[str]:
    """The demo's eval set of every size (quick first): offered before they exist, generated on first use."""
    return [demo_eval_set_name(n_products, 0) for n_products, _ in DEMO_SIZES.values()]


def runs_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs as shown in the live table: label, name, tags, status, stage k/n, progress, ETA, duration."""
    rows = []
    for r in runs.to_dict("records"):
        progress = progress_of(r["progress"], r["stage"])
        rows.append({
            "run": run_label(r), "name": r.get("name") or "", "tags": ", ".join(r.get("tags") or []),
            "config": r["config"], "eval_set": r["eval_set"], "status": r["status"],
            "stage": stage_text(r["status"], progress),
            "progress": overall_fraction(r["status"], progress) if r["status"] != "failed" else None,
            "stage ETA": format_seconds(progress.eta_s if progress and r["status"] == "running" else None),
            "duration": format_seconds(elapsed_seconds(r["status"], r["started_at"], r["finished_at"])),
            "device": r["device"], "created": r["created_at"], "error": r["error"], "run_id": r["run_id"],
        })
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def filter_runs(runs: pd.DataFrame, *, eval_sets: list[str] = (), configs: list[str] = (), tags: list[str] = (),
                statuses: list[str] = ()) -> pd.DataFrame:
    """Runs matching every non-empty filter (a run matches a tag filter when it carries any of the tags)."""
    keep = pd.Series(True, index=runs.index)
    for column, wanted in (("eval_set", eval_sets), ("config", configs), ("status", statuses)):
        if wanted:
            keep &= runs[column].isin(list(wanted))
    if tags:
        keep &= runs["tags"].map(lambda have: bool(set(have or []) & set(tags)))
    return runs[keep]


def run_groups(runs: pd.DataFrame, group_by: str | None) -> list[tuple[str, pd.DataFrame]]:
    """(group value, its runs) in order of first appearance; by tag a run appears under each of its tags (and
    runs without one under '(no tag)')."""
    if group_by is None:
        return [("", runs)]
    if group_by == "tags":
        values = runs["tags"].map(lambda have: list(have) if len(have or []) else [NO_TAG])
        exploded = runs.assign(_group=values).explode("_group")
        return [(str(v), runs.loc[exploded.index[exploded["_group"] == v].unique()])
                for v in dict.fromkeys(exploded["_group"])]
    return [(str(v), runs[runs[group_by] == v]) for v in dict.fromkeys(runs[group_by])]


def default_detail(runs: pd.DataFrame) -> str:
    """The run the details open on: the one running now, else the oldest queued, else the newest."""
    for status, newest_first in (("running", True), ("queued", False)):
        matching = runs[runs["status"] == status]
        if len(matching):
            return str(matching["run_id"].iloc[0 if newest_first else -1])
    return str(runs["run_id"].iloc[0])


# ------------------------------------------------------------------------------------------------ widgets
def live(db: str, body: Callable[[pd.DataFrame], None]) -> None:
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


def start_form(db: str, catalog: dict[str, RunConfig], default_configs: list[str]) -> list[str] | None:
    """Eval sets × configs × device; returns the started run ids when 'Start' was pressed."""
    names = list(cache.eval_sets(db)["name"])
    options = names + [d for d in demo_eval_sets() if d not in names]
    chosen_set = st.session_state.get("selected_eval_set")
    with st.form("runs_start"):
        eval_sets = st.multiselect(
            "Eval sets", options, default=[chosen_set] if chosen_set in options else [],
            format_func=lambda n: n if n in names else f"{n} (bundled demo, generated on first use)",
        )
        configs = st.multiselect("Configurations", list(catalog), default=[c for c in default_configs if c in catalog],
                                 help="Build or pick more on the Configurations page.")
        device = st.selectbox("Device", cache.available_devices(), help="auto: a CUDA GPU if there is one, else CPU.")
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


def filters(runs: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """Filter widgets (eval set, config, tag, status) and the grouping; returns the matching runs and the column
    to group by."""
    all_tags = sorted({t for tags in runs["tags"] for t in (tags or [])})
    c1, c2, c3, c4, c5 = st.columns([2, 2, 2, 2, 1])
    chosen = {
        "eval_sets": c1.multiselect("Eval set", sorted(runs["eval_set"].dropna().unique()), key="runs_f_eval_set"),
        "configs": c2.multiselect("Config", sorted(runs["config"].dropna().unique()), key="runs_f_config"),
        "tags": c3.multiselect("Tag", all_tags, key="runs_f_tag"),
        "statuses": c4.multiselect("Status", sorted(runs["status"].unique()), key="runs_f_status"),
    }
    group = c5.selectbox("Group by", list(GROUPS), key="runs_group")
    return filter_runs(runs, **chosen), GROUPS[group]


def show_table(runs: pd.DataFrame, group_by: str | None = None) -> None:
    if runs.empty:
        st.info("No runs yet. Choose eval sets and configurations above and press **Start**, or run "
                "`python -m workbench run --eval-set NAME --config NAME` — CLI runs appear here too.")
        return
    config = {
        "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
        "created": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm:ss"),
        "run": st.column_config.TextColumn("run", width="large"),
    }
    for value, group in run_groups(runs, group_by):
        if group_by is not None:
            st.markdown(f"**{escape_markdown(value)}** · {len(group)} run(s)")
        st.dataframe(runs_table(group), hide_index=True, width="stretch", column_config=config)


def show_details(db: str, runs: pd.DataFrame) -> None:
    """One run in full: status, progress, readable error, GPU memory, timings, name/tags/notes, training loss,
    log; Cancel while active."""
    if runs.empty:
        return
    labels = {r["run_id"]: run_label(r) for r in runs.to_dict("records")}
    ids = list(labels)
    if st.session_state.get("runs_detail") not in labels:
        started = [r for r in st.session_state.get("runs_started", []) if r in labels]
        st.session_state["runs_detail"] = started[0] if started else default_detail(runs)
    run_id = st.selectbox("Run", ids, format_func=labels.get, key="runs_detail")
    with friendly_errors("Loading the run"):
        record = runner.get_run(run_id, db=db)
        status = runs.set_index("run_id").at[run_id, "status"]  # list_runs marks dead runs 'interrupted'
        progress = progress_of(record.get("progress"), record.get("stage"))
        cols = st.columns(4)
        cols[0].metric("Status", status)
        cols[1].metric("Stage", stage_text(status, progress) or "—")
        duration = elapsed_seconds(status, record.get("started_at"), record.get("finished_at"))
        cols[2].metric("Duration" if status != "running" else "Running for", format_seconds(duration) or "—")
        cols[3].metric("Device", record.get("device") or "—")
        if status in ACTIVE:
            _active_controls(db, run_id, status, progress, bool(record.get("cancel_requested")))
        if status == "failed":
            st.error(f"This run failed: {record.get('error')}")
        elif status == "interrupted":
            st.warning("This run stopped reporting (its process ended or hung); start it again.")
        elif status == "cancelled":
            st.warning(record.get("error") or "Cancelled.")
        if progress and progress.gpu:
            st.caption("GPU memory (GB): " + ", ".join(f"{k.removesuffix('_gb')} {v}"
                                                        for k, v in progress.gpu.items()))
        metadata_form(db, run_id, record)
        if status == "done":
            st.markdown("**Training loss**")
            st.plotly_chart(training_curves_figure(record.get("curves")), width="stretch",
                            key=f"runs_loss_{run_id}")
        if record.get("timings"):
            st.caption("Timings")
            st.json(record["timings"], expanded=False)
        st.caption("Log")
        st.code(record.get("log") or "(no log yet)", language=None)
        st.caption("Configuration")
        st.json(record.get("config") or {}, expanded=False)


def cancel_message(status: str, progress: Progress | None) -> str:
    """What happens after Cancel: the next progress report stops the run, except in stages that report none."""
    if status == "running" and progress is not None and progress.stage in UNINTERRUPTIBLE:
        return (f"Cancel requested during '{progress.stage}': this stage runs in one step and cannot stop midway. "
                "The run stops if another stage follows; if this is the last stage it finishes as done within "
                "moments and its results are kept.")
    return "Cancel requested: the run stops at its next progress report."


def _active_controls(db: str, run_id: str, status: str, progress: Progress | None, requested: bool) -> None:
    eta = format_seconds(progress.eta_s if progress and status == "running" else None) or "…"
    text = "queued: waiting for the runs before it" if status == "queued" else (
        f"{stage_text(status, progress)} · ETA {eta}")
    st.progress(overall_fraction(status, progress), text=text)
    if requested:
        st.info(cancel_message(status, progress))
    elif st.button("Cancel this run", key=f"runs_cancel_{run_id}"):
        runner.request_cancel(run_id, db=db)
        st.info(cancel_message(status, progress))


def metadata_form(db: str, run_id: str, record: dict) -> None:
    """Name, tags and notes of a run (any status: metadata never touches results)."""
    known = sorted({t for tags in runner.list_runs(db=db)["tags"] for t in (tags or [])})
    with st.form(f"runs_meta_{run_id}"):
        c1, c2 = st.columns([1, 2])
        name = c1.text_input("Name", value=record.get("name") or "", key=f"runs_meta_name_{run_id}",
                             help="A short name shown before the config in every run label.")
        tags = c2.multiselect("Tags", sorted(set(known) | set(record.get("tags") or [])),
                              default=list(record.get("tags") or []), accept_new_options=True,
                              key=f"runs_meta_tags_{run_id}", help="Pick tags or type a new one and press Enter.")
        notes = st.text_area("Notes", value=record.get("notes") or "", key=f"runs_meta_notes_{run_id}", height=80)
        saved = st.form_submit_button("Save name, tags and notes")
    if saved:
        with friendly_errors("Saving the run's name, tags and notes"):
            runner.set_run_metadata(run_id, name=name, tags=list(tags), notes=notes, db=db)
            cache.finished_runs.clear(db)
            st.session_state["runs_meta_saved"] = run_id
            st.rerun()  # every label of this run (table, pickers) changes
    if st.session_state.get("runs_meta_saved") == run_id:
        st.success("Saved the name, tags and notes.")
        st.session_state["runs_meta_saved"] = None
