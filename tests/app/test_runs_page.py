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
    from workbench.run import runner

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
    from workbench.config import config_from_dict
    from workbench.run import runner

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


def _three_runs(db, keyword_config):
    """A done, a running (this process, fresh heartbeat) and a queued run on two eval sets; no worker runs them."""
    import os
    from datetime import datetime, timedelta

    from workbench import store
    from workbench.config import config_from_dict
    from workbench.run import runner

    done = runner.create_run(config_from_dict(keyword_config), "shop", db=db)
    running = runner.create_run(config_from_dict({**keyword_config, "name": "kw2"}), "tiny", db=db)
    queued = runner.create_run(config_from_dict(keyword_config), "tiny", db=db)
    now = datetime.now()
    with store.connect(db) as con:
        con.execute("UPDATE runs SET status = 'done', started_at = ?, finished_at = ? WHERE run_id = ?",
                    [now - timedelta(seconds=75), now - timedelta(seconds=5), done])
        con.execute("UPDATE runs SET status = 'running', stage = 'metrics', started_at = ?, heartbeat_at = ?, "
                    "pid = ?, progress = ? WHERE run_id = ?",
                    [now - timedelta(seconds=30), now, os.getpid(), '{"stage": "metrics"}', running])
    runner.set_run_metadata(running, tags=["keep", "gpu"], db=db)
    return done, running, queued


def test_details_default_to_the_running_run_and_queued_runs_show_no_stage_number(tmp_path, monkeypatch, open_page,
                                                                                  keyword_config):
    db = tmp_path / "three.duckdb"
    monkeypatch.setenv("WORKBENCH_DB", str(db))
    done, running, queued = _three_runs(db, keyword_config)
    at = open_page("pages/3_Runs.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="runs_detail").value == running
    table = at.dataframe[0].value.set_index("run_id")
    assert table.at[queued, "stage"] == "queued" and table.at[queued, "progress"] == 0.0
    assert table.at[running, "stage"] == "8/8 metrics" and table.at[running, "duration"].endswith(" s")
    assert table.at[done, "duration"] == "1 min 10 s"
    assert "· tiny ·" in table.at[running, "run"]  # labels carry the eval set
    shown = {m.label: m.value for m in at.metric}
    assert shown["Running for"].endswith(" s") and shown["Stage"] == "8/8 metrics"

    next(b for b in at.button if b.label == "Cancel this run").click().run()
    assert any("cannot stop midway" in i.value for i in at.info)  # the metrics stage reports no progress


def test_rename_tag_and_note_a_run_then_filter_and_group_by_tag(tmp_path, monkeypatch, open_page, keyword_config):
    from workbench.run import runner

    db = tmp_path / "three.duckdb"
    monkeypatch.setenv("WORKBENCH_DB", str(db))
    done, running, queued = _three_runs(db, keyword_config)
    at = open_page("pages/3_Runs.py")
    at.run()
    at.selectbox(key="runs_detail").set_value(done).run()
    at.text_input(key=f"runs_meta_name_{done}").input("baseline v1")
    at.multiselect(key=f"runs_meta_tags_{done}").set_value(["keep"])
    at.text_area(key=f"runs_meta_notes_{done}").input("first try")
    next(b for b in at.button if b.label == "Save name, tags and notes").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert runner.get_run(done, db=db)["name"] == "baseline v1"
    assert runner.get_run(done, db=db)["tags"] == ["keep"] and runner.get_run(done, db=db)["notes"] == "first try"
    assert any("Saved the name, tags and notes" in s.value for s in at.success)
    assert at.selectbox(key="runs_detail").value == done  # still on the edited run

    at.multiselect(key="runs_f_tag").set_value(["keep"]).run()
    table = at.dataframe[0].value
    assert set(table["run_id"]) == {done, running}
    assert table.set_index("run_id").at[done, "run"].startswith("baseline v1 · kw · shop · ")
    at.multiselect(key="runs_f_tag").set_value([]).run()
    at.selectbox(key="runs_group").set_value("tag").run()
    groups = [m.value for m in at.markdown if " run(s)" in m.value]
    assert sorted(groups) == sorted(["**keep** · 2 run(s)", "**gpu** · 1 run(s)", "**\\(no tag\\)** · 1 run(s)"])
    assert len(at.dataframe) == 3  # a table per group


def test_groups_filters_and_cancel_messages():
    import pandas as pd

    from workbench.run.progress import Progress
    from workbench.ui.runs import cancel_message, filter_runs, run_groups

    runs = pd.DataFrame({"run_id": ["a", "b", "c"], "eval_set": ["x", "y", "x"], "config": ["k", "k", "m"],
                         "status": ["done", "failed", "done"], "tags": [["p", "q"], [], ["q"]]})
    assert [(v, list(g["run_id"])) for v, g in run_groups(runs, "tags")] == [("p", ["a"]), ("q", ["a", "c"]),
                                                                              ("(no tag)", ["b"])]
    assert [(v, list(g["run_id"])) for v, g in run_groups(runs, "eval_set")] == [("x", ["a", "c"]), ("y", ["b"])]
    assert list(filter_runs(runs, tags=["q"], statuses=["done"], configs=["m"])["run_id"]) == ["c"]
    assert list(filter_runs(runs)["run_id"]) == ["a", "b", "c"]
    assert "next progress report" in cancel_message("running", Progress(stage="train"))
    assert "cannot stop midway" in cancel_message("running", Progress(stage="metrics"))
    assert "next progress report" in cancel_message("queued", None)
