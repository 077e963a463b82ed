"""The demo in two sizes: ``demo --quick`` (its contract: best variant above 0.7 ROC-AUC, clear gaps between the
variants) and the app's launcher, which never queues a variant that is already queued, running or done."""

from __future__ import annotations

import pytest

from workbench import demo, store
from workbench.cli import main
from workbench.evaluation.aggregate import load_metrics
from workbench.run import runner


def test_sizes_name_a_catalogue_and_a_suite_and_quick_variants_share_their_encoders():
    assert demo.demo_size("full") == (2000, "default") and demo.demo_size("quick") == (demo.QUICK_PRODUCTS, "quick")
    with pytest.raises(ValueError, match="Unknown demo size 'huge'"):
        demo.demo_size("huge")
    quick = demo.demo_configs("quick")
    assert len({c.name for c in quick}) == len({c.fingerprint() for c in quick}) == 3
    assert len({(str(c.image_encoder), str(c.text_encoder)) for c in quick}) == 1  # encoded once, then cached
    assert all(c.offline for c in quick)


@pytest.fixture
def queue_only(monkeypatch):
    """The launcher's background batch replaced by queueing alone (what the launcher decides is under test)."""
    calls: list[list[str]] = []

    def queue(configs, eval_sets, *, db=None, device="auto"):
        calls.append([c.name for c in configs])
        return [runner.create_run(c, e, db=db, device=device) for e in eval_sets for c in configs]

    monkeypatch.setattr(runner, "start_background_batch", queue)
    return calls


def test_pressing_run_the_demo_twice_queues_each_variant_once(db, queue_only):
    first = demo.start_demo("quick", db=db)
    assert demo.start_demo("quick", db=db) == first and len(set(first)) == 3
    assert queue_only == [[c.name for c in demo.demo_configs("quick")]]
    runs = runner.list_runs(db=db)
    assert len(runs) == 3 and set(runs["eval_set"]) == {f"demo-{demo.QUICK_PRODUCTS}-s0"}
    with store.connect(db) as con:  # one variant failed, one finished: only the failed one is queued again
        con.execute("UPDATE runs SET status = 'failed' WHERE run_id = ?", [first[1]])
        con.execute("UPDATE runs SET status = 'done' WHERE run_id = ?", [first[2]])
    again = demo.start_demo("quick", db=db)
    assert again[0] == first[0] and again[2] == first[2] and again[1] not in first
    assert queue_only[-1] == [demo.demo_configs("quick")[1].name]
    full = demo.start_demo("full", db=db)  # another size: its own eval set and suite
    assert not set(full) & set(again) and set(runner.list_runs(db=db, eval_set="demo")["run_id"]) == set(full)


@pytest.mark.slow
def test_demo_quick_reaches_its_contract(tmp_path, capsys):
    """The real quick demo (500 products, about 30 s of CPU on 2 cores): best ROC-AUC above 0.7, variants apart."""
    db = tmp_path / "wb.duckdb"
    assert main(["--db", str(db), "demo", "--quick", "--device", "cpu"]) == 0
    assert "quick-tfidf-hist-cca" in capsys.readouterr().out
    runs = runner.list_runs(db=db)
    assert list(runs["status"]) == ["done"] * 3 and set(runs["eval_set"]) == {"demo-500-s0"}
    auc = {row.config: float(load_metrics(row.run_id, db=db).set_index("name").at["pair/roc_auc", "value"])
           for row in runs.itertuples()}
    assert max(auc.values()) > 0.7, auc
    assert max(auc.values()) - min(auc.values()) > 0.1, auc


def test_quick_takes_no_suite(tmp_path):
    with pytest.raises(SystemExit, match="drop --suite"):
        main(["--db", str(tmp_path / "wb.duckdb"), "demo", "--quick", "--suite", "reference"])
