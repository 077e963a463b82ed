"""Home page: what is loaded, recent runs with headline metrics, empty states, the demo button."""

from __future__ import annotations

import time


def test_home_shows_eval_sets_runs_and_metrics(app_db, open_page, page_text):
    at = open_page("Home.py")
    started = time.perf_counter()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    shown = page_text(at)
    assert str(app_db.path) in shown
    assert "CPU" in shown or "GB" in shown  # the device line
    sets = at.dataframe[0].value
    assert "tiny" in set(sets["name"])
    recent = at.dataframe[-1].value
    done = recent.set_index("run_id").loc[app_db.done_run]
    assert done["status"] == "done"
    assert done["pair/roc_auc"].count("[") == 1  # value with its 95% CI
    failed = recent.set_index("run_id").loc[app_db.failed_run]
    assert "no-such-set" in failed["error"]
    assert not at.button[0].disabled
    assert time.perf_counter() - started < 60


def test_home_empty_database_says_what_to_do(tmp_path, monkeypatch, open_page):
    monkeypatch.setenv("WORKBENCH_DB", str(tmp_path / "empty.duckdb"))
    at = open_page("Home.py")
    at.run()
    assert not at.exception
    info = " ".join(i.value for i in at.info)
    assert "No eval sets yet" in info and "Run the demo" in info
    assert "No runs yet" in info


def test_run_the_demo_starts_the_default_suite_on_the_sized_catalogue(tmp_path, monkeypatch, open_page, page_text):
    from workbench import runner

    calls = []
    monkeypatch.setenv("WORKBENCH_DB", str(tmp_path / "demo.duckdb"))
    monkeypatch.setenv("WORKBENCH_DEMO_PRODUCTS", "40")
    monkeypatch.setattr(runner, "start_background_batch",
                        lambda configs, eval_sets, **kw: calls.append((configs, eval_sets, kw)) or [])
    at = open_page("Home.py")
    at.run()
    assert "40 products" in page_text(at)
    next(b for b in at.button if b.label == "Run the demo").click().run()
    assert not at.exception
    (configs, eval_sets, kwargs), = calls
    assert [c.name for c in configs] == ["tfidf-colorhist-cca", "minilm-cnn-contrastive", "cnn-minilm-concat-mlp"]
    assert eval_sets == ["demo-40-s0"]
    assert str(kwargs["db"]).endswith("demo.duckdb")


