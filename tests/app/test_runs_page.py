"""Runs page: start a keyword run and watch it finish, a failed run's readable error, cancel."""

from __future__ import annotations

import time


def _poll_until(at, done, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not done(at):
        assert time.monotonic() < deadline, "runs did not finish in time"
        time.sleep(0.5)
        at.run()


def test_start_a_keyword_run_and_see_it_finish(app_db, open_page, by_label, page_text):
    from workbench import runner

    before = set(runner.list_runs(db=app_db.path)["run_id"])
    at = open_page("pages/3_Runs.py")
    at.run()
    assert not at.exception
    by_label(at.multiselect, "Eval sets").set_value(["tiny"])
    by_label(at.multiselect, "Configurations").set_value(["saved: kw"])
    by_label(at.selectbox, "Device").set_value("cpu")
    by_label(at.button, "Start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Started 1 run" in page_text(at)
    new = set(runner.list_runs(db=app_db.path)["run_id"]) - before
    assert len(new) == 1
    run_id = new.pop()

    def finished(at) -> bool:
        table = at.dataframe[0].value.set_index("run_id")
        return table.at[run_id, "status"] in ("done", "failed")

    _poll_until(at, finished)
    table = at.dataframe[0].value.set_index("run_id")
    assert table.at[run_id, "status"] == "done"
    assert table.at[run_id, "progress"] == 1.0
    assert at.selectbox(key="runs_detail").value == run_id  # details open on the run just started
    assert "trained cosine" in page_text(at)  # its log


def test_failed_run_shows_a_readable_error(app_db, open_page):
    at = open_page("pages/3_Runs.py")
    at.run()
    at.selectbox(key="runs_detail").set_value(app_db.failed_run).run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "This run failed" in errors and "no-such-set" in errors and "not found" in errors
    assert "Traceback" not in errors


def test_cancel_a_queued_run(tmp_path, monkeypatch, open_page, by_label, keyword_config):
    from workbench import runner
    from workbench.config import config_from_dict

    db = tmp_path / "cancel.duckdb"
    monkeypatch.setenv("WORKBENCH_DB", str(db))
    run_id = runner.create_run(config_from_dict(keyword_config), "tiny", db=db)  # queued, no worker
    at = open_page("pages/3_Runs.py")
    at.run()
    assert at.dataframe[0].value.set_index("run_id").at[run_id, "status"] == "queued"
    by_label(at.button, "Cancel this run").click().run()
    assert not at.exception
    assert any("Cancel requested" in i.value for i in at.info)
    assert runner.get_run(run_id, db=db)["cancel_requested"]
    at.run()
    assert not [b for b in at.button if b.label == "Cancel this run"]  # asked once
