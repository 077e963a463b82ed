"""Compare's robustness tab: the selected runs' stored suites side by side (metric vs severity with 95% CIs, and
the drops against the clean run), and a form that runs a suite for one of them.

A suite re-scores every test pair per (perturbation, severity) and first rebuilds the run's models, so it runs in a
daemon thread of the server (like a run started on the Runs page) and survives page switches; its progress lives
in a small process-wide job table (:class:`SuiteJob`) that every session reads, polled by a fragment only while a
suite runs, and Cancel stops it between two steps (what was stored stays). Results are read from DuckDB through
:func:`workbench.ui.cache.robustness`, so suites run from the CLI appear as well.
"""

from __future__ import annotations

import threading
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
import streamlit as st

from workbench import security
from workbench.config import config_from_dict
from workbench.evaluation.aggregate import N_RESAMPLES
from workbench.robustness import (
    METRICS,
    SEVERITIES,
    SUITES,
    list_perturbations,
    resolve_suite,
    run_robustness,
)
from workbench.robustness.suite import DEFAULT_SEVERITIES
from workbench.run import runner
from workbench.run.encoding import Cancelled
from workbench.ui import cache
from workbench.ui.common import escape_markdown, friendly_errors
from workbench.viz.robustness import robustness_figure

POLL_S = 1.0
MAX_JOBS = 32  # finished jobs kept for display; the oldest go first
TABLE_COLUMNS = ["run", "perturbation", "severity", "value", "95% CI", "clean", "drop", "drop 95% CI", "hurts",
                 "items changed"]


# ------------------------------------------------------------------------------------------- background jobs
@dataclass
class SuiteJob:
    """One robustness suite running (or run) in a daemon thread of this server; sessions only read it."""

    job_id: str
    run_id: str
    db: str
    suite: tuple[str, ...]
    severities: tuple[int, ...]
    seed: int
    n_resamples: int
    cancel: threading.Event = field(default_factory=threading.Event)
    status: str = "running"  # running, done, cancelled, failed
    done: int = 0
    total: int = 0
    step: str = "starting"
    message: str = ""
    fresh: bool = False  # a page has dropped the run's cached results since the job ended
    thread: threading.Thread | None = None

    def _progress(self, done: int, total: int, label: str) -> None:
        self.done, self.total, self.step = done, total, label

    def _work(self) -> None:
        """Restore on the device the run ran on, run the suite, and record how it ended (never raises: an error
        in a thread would otherwise vanish unseen)."""
        try:
            device = runner.get_run(self.run_id, db=self.db).get("device") or "cpu"
            rows = run_robustness(self.run_id, suite=self.suite, severities=self.severities, seed=self.seed,
                                  db=self.db, device=device, n_resamples=self.n_resamples,
                                  progress=self._progress, cancel=self.cancel)
            self.status, self.message = "done", f"{len(rows)} results stored."
        except Cancelled as exc:
            self.status, self.message = "cancelled", f"{exc} The steps already finished are stored."
        except Exception as exc:  # shown on the page instead of a traceback lost in the server log
            self.status, self.message = "failed", f"{type(exc).__name__}: {exc}"

    @property
    def active(self) -> bool:
        return self.status == "running"


_JOBS: dict[str, SuiteJob] = {}  # process-wide like the threads it describes; guarded by _LOCK
_LOCK = threading.Lock()


def start_suite(run_id: str, db: str, *, suite: Sequence[str], severities: Sequence[int], seed: int,
                n_resamples: int) -> SuiteJob:
    """Check the request (perturbation names, a config that runs outside code, a suite already running for the
    run) and start it in a daemon thread."""
    names = resolve_suite(list(suite))
    security.check_app_run_config(config_from_dict(runner.get_run(run_id, db=db)["config"]))
    if not severities:
        raise ValueError(f"Choose at least one severity from {list(SEVERITIES)}.")
    with _LOCK:
        if any(j.active and j.run_id == run_id and j.db == db for j in _JOBS.values()):
            raise ValueError(f"A robustness suite is already running for run {run_id}; wait for it or cancel it.")
        job = SuiteJob(uuid.uuid4().hex[:12], run_id, db, tuple(names), tuple(sorted(severities)), int(seed),
                       int(n_resamples), total=len(names) * len(severities))
        finished = [k for k, j in _JOBS.items() if not j.active]
        for k in finished[: max(0, len(_JOBS) + 1 - MAX_JOBS)]:
            del _JOBS[k]
        _JOBS[job.job_id] = job
    job.thread = threading.Thread(target=job._work, name=f"robustness-{run_id}", daemon=True)
    job.thread.start()
    return job


def jobs_for(run_ids: Sequence[str], db: str) -> list[SuiteJob]:
    """The latest suite job of each of these runs (in this server), in run order."""
    with _LOCK:
        latest = {j.run_id: j for j in _JOBS.values() if j.db == db and j.run_id in run_ids}
    return [latest[r] for r in run_ids if r in latest]


# ------------------------------------------------------------------------------------------------ results
def _interval(low: float, high: float) -> str:
    return "–" if pd.isna(low) or pd.isna(high) else f"[{low:.3f}, {high:.3f}]"


def results_table(frames: dict[str, pd.DataFrame], metric: str, seed: int) -> pd.DataFrame:
    """One row per (run, perturbation, severity): the metric with its CI, the clean value and the drop (clean −
    perturbed, positive when the perturbation hurts) with its paired CI; ``hurts`` when that CI lies above 0."""
    rows = []
    for label, frame in frames.items():
        part = frame[(frame["metric"] == metric) & (frame["seed"] == seed)]
        for r in part.itertuples(index=False):
            rows.append({"run": label, "perturbation": r.perturbation, "severity": int(r.severity),
                         "value": r.value, "95% CI": _interval(r.ci_low, r.ci_high), "clean": r.clean_value,
                         "drop": r.drop, "drop 95% CI": _interval(r.drop_ci_low, r.drop_ci_high),
                         "hurts": bool(r.drop_ci_low > 0) if not pd.isna(r.drop_ci_low) else False,
                         "items changed": f"{int(r.n_changed)}/{int(r.n_items)}"})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _stored_results(frames: dict[str, pd.DataFrame]) -> None:
    """Metric, perturbations and seed to show, then the curves and the table."""
    c1, c2, c3 = st.columns([1, 3, 1])
    metric = c1.selectbox("Metric", list(METRICS), key="compare_robust_metric")
    present = sorted({p for f in frames.values() for p in f["perturbation"]})
    # keyed by what is present, so a perturbation that appears (a suite just ran) is shown rather than left out
    chosen = c2.multiselect("Perturbations", present, default=present,
                            key=f"compare_robust_perturbations_{zlib.crc32('|'.join(present).encode())}")
    seeds = sorted({int(s) for f in frames.values() for s in f["seed"]})
    seed = c3.selectbox("Perturbation seed", seeds, key="compare_robust_seed")
    if not chosen:
        st.info("Pick at least one perturbation.")
        return
    with friendly_errors("Drawing the robustness curves"):
        figure = robustness_figure(frames, metric=metric, perturbations=chosen, seed=seed)
        st.plotly_chart(figure, width="stretch", key="compare_robust_figure")
    table = results_table(frames, metric, seed)
    st.dataframe(table[table["perturbation"].isin(chosen)], hide_index=True, width="stretch",
                 column_config={name: st.column_config.NumberColumn(format="%.3f")
                                for name in ("value", "clean", "drop")})


# ------------------------------------------------------------------------------------------------- the tab
def robustness_tab(selected: list[str], labels: dict[str, str], db: str) -> None:
    """The selected runs' stored robustness results side by side, the suites running now, and the form."""
    for job in jobs_for(selected, db):
        if not job.active and not job.fresh:  # read a just-finished suite's results fresh
            cache.forget_robustness(job.run_id, db)
            job.fresh = True
    frames = {}
    with friendly_errors("Loading robustness results"):
        frames = {labels[r]: cache.robustness(r, db) for r in selected}
    stored = {label: frame for label, frame in frames.items() if not frame.empty}
    if stored:
        _stored_results(stored)
    missing = [label for label in frames if label not in stored]
    if missing:
        st.caption("No robustness results yet for: " + ", ".join(escape_markdown(m) for m in missing)
                   + ". Run a suite below or with `python -m workbench robustness RUN_ID`.")
    _suite_form(selected, labels, db)
    _jobs_panel(selected, labels, db)


def _suite_form(selected: list[str], labels: dict[str, str], db: str) -> None:
    groups = {name: f"all {name} perturbations ({len(members)})" for name, members in SUITES.items()}
    names = {p.name: f"{p.name} ({p.modality})" for p in list_perturbations()}
    with st.form("compare_robust_form"):
        c1, c2 = st.columns([1, 2])
        run_id = c1.selectbox("Run", selected, format_func=labels.get, key="compare_robust_run")
        suite = c2.multiselect(
            "Perturbations", [*groups, *names], default=list(groups), key="compare_robust_suite",
            format_func=lambda n: groups.get(n) or names[n],
            help=" ".join(f"{p.name}: {p.description}" for p in list_perturbations()))
        c3, c4, c5 = st.columns(3)
        severities = c3.multiselect("Severities", list(SEVERITIES), default=list(DEFAULT_SEVERITIES),
                                    key="compare_robust_severities")
        seed = c4.number_input("Perturbation seed", min_value=0, value=0, step=1, key="compare_robust_seed_input")
        n_resamples = c5.number_input("Bootstrap resamples", min_value=100, max_value=10000, value=N_RESAMPLES,
                                      step=100, key="compare_robust_resamples",
                                      help="Product bootstrap for the CIs (the run's own metrics use "
                                           f"{N_RESAMPLES}).")
        submitted = st.form_submit_button("Run suite", type="primary")
    if not submitted:
        return
    if not suite:
        st.warning("Choose at least one perturbation.")
        return
    with friendly_errors("Starting the robustness suite"):
        start_suite(run_id, db, suite=suite, severities=severities, seed=int(seed), n_resamples=int(n_resamples))


def _jobs_panel(selected: list[str], labels: dict[str, str], db: str) -> None:
    """The latest suite of each selected run, polled every POLL_S seconds while one runs; when the last one ends,
    the whole page reruns once to show its results."""
    polling = any(j.active for j in jobs_for(selected, db))

    def tick() -> None:
        jobs = jobs_for(selected, db)
        if polling and not any(j.active for j in jobs):
            st.rerun()
        for job in jobs:
            _job_status(job, labels.get(job.run_id, job.run_id))

    st.fragment(tick, run_every=POLL_S if polling else None)()


def _job_status(job: SuiteJob, label: str) -> None:
    what = f"{len(job.suite)} perturbation(s) × severities {', '.join(map(str, job.severities))}"
    title = f"Robustness suite of {escape_markdown(label)}: {what}"
    if job.active:
        with st.status(f"{title} · {job.done}/{job.total}", state="running", expanded=True):
            st.progress(job.done / job.total if job.total else 0.0, text=f"{job.done}/{job.total} · {job.step}")
            if job.cancel.is_set():
                st.caption("Cancel requested: the suite stops after the current step.")
            elif st.button("Cancel", key=f"compare_robust_cancel_{job.job_id}"):
                job.cancel.set()
                st.caption("Cancel requested: the suite stops after the current step.")
        return
    state = "complete" if job.status == "done" else "error"
    with st.status(f"{title} · {job.status}", state=state, expanded=job.status != "done"):
        if job.status == "failed":
            st.error(f"The suite failed: {escape_markdown(job.message)}")
        elif job.status == "cancelled":
            st.warning(escape_markdown(job.message))
        else:
            st.caption(f"{job.message} Perturbations: {escape_markdown(', '.join(job.suite))}.")
