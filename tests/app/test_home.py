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


def test_run_the_demo_in_the_chosen_size_never_queues_a_run_twice(tmp_path, monkeypatch, open_page, page_text):
    from workbench import demo
    from workbench.run import runner

    calls = []

    def queue(configs, eval_sets, *, db=None, device="auto"):  # queued only: what the launcher decides is tested
        calls.append(([c.name for c in configs], list(eval_sets)))
        return [runner.create_run(c, e, db=db, device=device) for e in eval_sets for c in configs]

    db = tmp_path / "demo.duckdb"
    monkeypatch.setenv("WORKBENCH_DB", str(db))
    monkeypatch.setattr(runner, "start_background_batch", queue)
    at = open_page("Home.py")
    at.run()
    size = at.radio(key="home_demo_size")
    assert size.value == "quick" and size.options[0].startswith("Quick: 500 products")
    assert f"`demo-{demo.QUICK_PRODUCTS}-s0`" in page_text(at)
    at.button(key="home_demo_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert calls == [([c.name for c in demo.demo_configs("quick")], [f"demo-{demo.QUICK_PRODUCTS}-s0"])]
    assert "Queued 3 demo run(s)." in " ".join(s.value for s in at.success)
    table = at.dataframe[-1].value
    assert list(table["config"]) == [c.name for c in demo.demo_configs("quick")]  # one table, the demo first
    assert len(at.dataframe) == 1  # no eval sets yet: the results table is the only one

    at.button(key="home_demo_start").click().run()  # pressed again: nothing new
    assert len(calls) == 1 and len(runner.list_runs(db=db)) == 3
    assert "nothing was queued" in " ".join(s.value for s in at.success)

    at.radio(key="home_demo_size").set_value("full").run()
    assert "`demo`" in page_text(at) and "2,000 products" in at.radio(key="home_demo_size").options[1]


def test_no_glyph_needs_a_colour_emoji_font():
    """Pages and widgets use Material icons and plain text: emoji (and dingbats such as check marks) render as
    boxes on servers and browsers without a colour-emoji font."""
    import re
    from pathlib import Path

    ROOT = Path(__file__).resolve().parents[2]

    # Emoji_Presentation=Yes (Unicode 15): the supplementary emoji planes and the BMP symbols drawn as emoji by
    # default, plus the variation selector that turns a text symbol such as the warning sign into one.
    emoji = re.compile("[\U0001F000-\U0001FAFF\uFE0F\u231A\u231B\u23E9-\u23EC\u23F0\u23F3\u25FD\u25FE"
                       "\u2614\u2615\u2648-\u2653\u267F\u2693\u26A1\u26AA\u26AB\u26BD\u26BE\u26C4\u26C5"
                       "\u26CE\u26D4\u26EA\u26F2\u26F3\u26F5\u26FA\u26FD\u2705\u270A\u270B\u2728\u274C"
                       "\u274E\u2753-\u2755\u2757\u2795-\u2797\u27B0\u27BF\u2B1B\u2B1C\u2B50\u2B55]")
    folders = [ROOT / "pages", ROOT / "workbench" / "ui", ROOT / "workbench" / "viz"]
    files = [ROOT / "Home.py", *(f for folder in folders for f in sorted(folder.glob("*.py")))]
    found = [f"{f.relative_to(ROOT)}:{n}: {line.strip()[:60]}" for f in files
             for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), start=1) if emoji.search(line)]
    assert not found, found
