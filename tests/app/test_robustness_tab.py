"""AppTest of Compare's robustness tab: stored suites side by side, a suite started from the form (run in a
background thread) that shows its results, Cancel, and a failed restore shown as a message."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from workbench.robustness import SUITES, load_robustness, run_robustness
from workbench.run.restore import RestoreError
from workbench.ui import robustness as robust_ui
from workbench.ui.common import escape_markdown

PAGE = Path(__file__).resolve().parents[2] / "pages" / "4_Compare.py"
RESAMPLES = 100


@pytest.fixture
def robust_env(app_env):
    """The two keyword runs, with a stored case/punctuation suite (severities 1 and 3) for the cosine run only."""
    run_robustness(app_env.kw_run, suite="case_punct", severities=[1, 3], db=app_env.path, n_resamples=RESAMPLES)
    return app_env


def _open(env) -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=180).run()
    at.multiselect(key="compare_runs_widget").set_value([env.kw_run, env.kwc_run]).run()
    assert not at.exception
    return at


def _labels(at: AppTest) -> dict[str, str]:
    """The run labels the page uses (those of its run picker for the operating point)."""
    return dict(zip(at.session_state["selected_runs"], at.radio(key="compare_focus").options, strict=True))


def _table(at: AppTest):
    return next(d.value for d in at.dataframe if "drop 95% CI" in d.value.columns)


def _submit(at: AppTest, run_id: str, suite: list[str]) -> None:
    at.selectbox(key="compare_robust_run").set_value(run_id)
    at.multiselect(key="compare_robust_suite").set_value(suite)
    at.multiselect(key="compare_robust_severities").set_value([1])
    at.number_input(key="compare_robust_resamples").set_value(RESAMPLES)
    next(b for b in at.button if b.label == "Run suite").click().run()


def _finish(env, run_id: str) -> robust_ui.SuiteJob:
    (job,) = robust_ui.jobs_for([run_id], str(env.path))
    job.thread.join(timeout=600)
    assert not job.thread.is_alive()
    return job


def test_stored_results_are_shown_side_by_side_with_their_cis(robust_env):
    at = _open(robust_env)
    labels = _labels(at)
    (figure,) = [c for c in at.get("plotly_chart") if "under perturbation" in c.proto.spec]
    assert "case_punct" in figure.proto.spec
    table = _table(at)
    stored = load_robustness(robust_env.kw_run, db=robust_env.path)
    auc = stored[stored["metric"] == "pair/roc_auc"].sort_values("severity")
    assert list(table["run"]) == [labels[robust_env.kw_run]] * 2
    assert list(table["perturbation"]) == ["case_punct", "case_punct"] and list(table["severity"]) == [1, 3]
    assert list(table["value"]) == list(auc["value"]) and list(table["drop"]) == list(auc["drop"])
    assert list(table["hurts"]) == list(auc["drop_ci_low"] > 0)
    assert table["95% CI"].iloc[0] == f"[{auc['ci_low'].iloc[0]:.3f}, {auc['ci_high'].iloc[0]:.3f}]"
    assert any(c.value.startswith("No robustness results yet for: ") for c in at.caption)

    at.selectbox(key="compare_robust_metric").set_value("pair/f1").run()
    f1 = stored[stored["metric"] == "pair/f1"].sort_values("severity")
    assert list(_table(at)["value"]) == list(f1["value"])


def test_the_form_runs_a_suite_in_the_background_and_shows_its_results(robust_env):
    at = _open(robust_env)
    _submit(at, robust_env.kwc_run, ["identity"])
    assert not at.exception and not at.error
    job = _finish(robust_env, robust_env.kwc_run)
    assert job.status == "done", job.message
    at.run()
    assert not at.exception
    stored = load_robustness(robust_env.kwc_run, db=robust_env.path)
    assert sorted(stored["metric"]) == ["pair/accuracy", "pair/f1", "pair/roc_auc"]
    assert (stored["perturbation"] == "identity").all() and (stored["severity"] == 1).all()
    table = _table(at)
    mine = table[table["run"] == _labels(at)[robust_env.kwc_run]]
    assert list(mine["perturbation"]) == ["identity"]
    assert mine["value"].iloc[0] == stored.set_index("metric").at["pair/roc_auc", "value"]
    assert not any(c.value.startswith("No robustness results yet") for c in at.caption)
    assert any("3 results stored" in c.value for c in at.caption)

    _submit(at, robust_env.kwc_run, [])
    assert any("Choose at least one perturbation" in w.value for w in at.warning)


def test_cancel_stops_the_suite_before_its_next_step(robust_env, monkeypatch):
    from workbench.robustness import suite

    release = threading.Event()
    restore = suite.restore_run_models

    def slow_restore(*args, **kwargs):
        release.wait(timeout=600)
        return restore(*args, **kwargs)

    monkeypatch.setattr(suite, "restore_run_models", slow_restore)
    at = _open(robust_env)
    _submit(at, robust_env.kwc_run, ["text"])
    (job,) = robust_ui.jobs_for([robust_env.kwc_run], str(robust_env.path))
    assert job.active
    at.button(key=f"compare_robust_cancel_{job.job_id}").click().run()
    assert job.cancel.is_set()
    assert any("Cancel requested" in c.value for c in at.caption)
    release.set()
    assert _finish(robust_env, robust_env.kwc_run).status == "cancelled"
    at.run()
    assert not at.exception
    first = SUITES["text"][0]
    assert any(escape_markdown(f"cancelled before {first} at severity 1.") in w.value for w in at.warning)
    assert load_robustness(robust_env.kwc_run, db=robust_env.path).empty


def test_a_failed_restore_is_shown_as_a_message(robust_env, monkeypatch):
    from workbench.robustness import suite

    def fail(run_id, **kwargs):
        raise RestoreError(f"Run {run_id} was trained on cuda; it cannot be rebuilt exactly here.")

    monkeypatch.setattr(suite, "restore_run_models", fail)
    at = _open(robust_env)
    _submit(at, robust_env.kwc_run, ["jpeg"])
    assert _finish(robust_env, robust_env.kwc_run).status == "failed"
    at.run()
    assert not at.exception
    message = f"RestoreError: Run {robust_env.kwc_run} was trained on cuda; it cannot be rebuilt exactly here."
    assert [e.value for e in at.error] == [f"The suite failed: {escape_markdown(message)}"]
