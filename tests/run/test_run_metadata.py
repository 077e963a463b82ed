"""Run management: names, tags and notes (store migration, library, CLI), filters, the queued progress record,
labels that carry the eval set, and the training curves of trained towers stored with each run."""

from __future__ import annotations

import json

import duckdb
import pytest

from workbench import store
from workbench.cli import main
from workbench.config import config_from_dict
from workbench.evaluation.compare import run_label
from workbench.run import runner
from workbench.run.progress import Progress
from workbench.viz import training_curves_figure

KEYWORD = {"name": "kw", "image_encoder": {"type": "keyword_image"}, "text_encoder": {"type": "keyword_text"},
           "fusion": {"type": "cosine"}}
TOWER = {"name": "tower", "image_encoder": {"type": "keyword_image"},
         "text_encoder": {"type": "gru_text", "dim": 8, "hidden": 8, "embed_dim": 8, "epochs": 3},
         "fusion": {"type": "contrastive", "dim": 8, "epochs": 4}}


@pytest.fixture
def run_db(catalog_db, tmp_path):
    """A private copy of the 40-product catalogue database (runs write to it)."""
    path, name = catalog_db
    copy = tmp_path / "runs.duckdb"
    copy.write_bytes(path.read_bytes())
    return copy, name


def test_a_database_from_before_run_metadata_migrates_and_its_runs_have_none(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for version, sql in enumerate(store.MIGRATIONS[:6], start=1):
        con.execute(sql)
        con.execute("INSERT INTO schema_version VALUES (?)", [version])
    con.execute("INSERT INTO runs (run_id, config_name, eval_set, status, created_at) "
                "VALUES ('old-run', 'kw', 'tiny', 'done', now())")
    con.close()
    runs = runner.list_runs(db=path)
    assert list(runs["run_id"]) == ["old-run"]
    assert runs["tags"].iloc[0] == [] and runs["name"].isna().all() and runs["notes"].isna().all()
    assert runner.set_run_metadata("old-run", tags=["legacy"], db=path)["tags"] == ["legacy"]


def test_metadata_is_set_changed_cleared_and_validated(db):
    run_id = runner.create_run(config_from_dict(KEYWORD), "tiny", db=db, name="  first try ", tags=["a", "b", "a"])
    record = runner.get_run(run_id, db=db)
    assert (record["name"], record["tags"], record["notes"]) == ("first try", ["a", "b"], None)
    assert runner.set_run_metadata(run_id, notes="lr too high", db=db) == {
        "name": "first try", "tags": ["a", "b"], "notes": "lr too high"}  # what is not passed stays
    assert runner.set_run_metadata(run_id, name="", tags=[], db=db) == {"name": None, "tags": [],
                                                                         "notes": "lr too high"}
    for bad in ({"tags": "solo"}, {"tags": ["with,comma"]}, {"tags": [""]}, {"name": "two\nlines"},
                {"name": "x" * 201}):
        with pytest.raises(ValueError):
            runner.set_run_metadata(run_id, db=db, **bad)
    with pytest.raises(KeyError, match="not found"):
        runner.set_run_metadata("no-such-run", name="x", db=db)


def test_a_queued_run_has_a_readable_progress_record(db):
    run_id = runner.create_run(config_from_dict(KEYWORD), "tiny", db=db)
    record = runner.get_run(run_id, db=db)
    progress = Progress.from_json(record["progress"])
    assert record["stage"] == "load" and progress is not None and progress.queued
    assert progress.label() == "queued" and progress.fraction("queued") == 0.0
    listed = runner.list_runs(db=db)
    assert listed["stage"].notna().all() and listed["progress"].notna().all()


def test_list_runs_filters_by_eval_set_config_tag_and_status(db):
    kw, tower = config_from_dict(KEYWORD), config_from_dict(TOWER)
    a = runner.create_run(kw, "tiny", db=db, tags=["baseline"])
    b = runner.create_run(tower, "tiny", db=db, tags=["towers", "baseline"])
    c = runner.create_run(kw, "other", db=db)
    with store.connect(db) as con:
        con.execute("UPDATE runs SET status = 'done' WHERE run_id = ?", [c])

    def ids(**filters) -> set[str]:
        return set(runner.list_runs(db=db, **filters)["run_id"])

    assert ids() == {a, b, c}
    assert ids(eval_set="tiny") == {a, b} and ids(config="kw") == {a, c}
    assert ids(tag="baseline") == {a, b} and ids(tag="towers") == {b} and ids(tag="nope") == set()
    assert ids(status="done") == {c} and ids(eval_set="tiny", tag="towers", config="tower") == {b}


def test_run_label_carries_the_eval_set_and_the_name_when_set():
    row = {"run_id": "r1", "config": "kw", "eval_set": "shoes"}
    assert run_label(row) == "kw · shoes · r1"
    assert run_label({**row, "name": "bigger batch"}) == "bigger batch · kw · shoes · r1"
    assert run_label({"run_id": "r2", "config_name": "kw", "eval_set": "shoes", "name": None}) == "kw · shoes · r2"


def test_cli_names_tags_edits_and_filters_runs(run_db, tmp_path, capsys):
    db, name = run_db
    config = tmp_path / "kw.toml"
    config.write_text('name = "kw"\n[image_encoder]\ntype = "keyword_image"\n[text_encoder]\ntype = "keyword_text"\n'
                      '[fusion]\ntype = "cosine"\n', encoding="utf-8")
    assert main(["--db", str(db), "run", "--eval-set", name, "--config", str(config), "--device", "cpu",
                 "--name", "keyword baseline", "--tag", "baseline", "--tag", "cpu"]) == 0
    run_id = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["--db", str(db), "runs", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["run_id"], row["name"], row["tags"], row["notes"]) == (run_id, "keyword baseline",
                                                                      ["baseline", "cpu"], None)
    assert main(["--db", str(db), "runs", "edit", run_id, "--tag", "keep", "--notes", "reference for Q3"]) == 0
    assert json.loads(capsys.readouterr().out) == {"run_id": run_id, "name": "keyword baseline", "tags": ["keep"],
                                                   "notes": "reference for Q3"}
    assert main(["--db", str(db), "runs", "--tag", "keep", "--json"]) == 0
    assert [r["notes"] for r in json.loads(capsys.readouterr().out)] == ["reference for Q3"]
    assert main(["--db", str(db), "runs", "--tag", "baseline", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["--db", str(db), "runs", "edit", run_id, "--tag", "a,b"]) == 2
    assert "without commas" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="nothing to change"):
        main(["--db", str(db), "runs", "edit", run_id])


def test_trained_towers_curves_are_stored_and_a_cached_tower_points_to_the_run_that_trained_it(run_db):
    db, name = run_db
    config = config_from_dict(TOWER)
    first = runner.run(config, name, db=db, device="cpu")
    curves = runner.get_run(first, db=db)["curves"]
    assert runner.get_run(first, db=db)["status"] == "done"
    assert len(curves["train_loss"]) == len(curves["val_loss"]) >= 1  # the fusion head's, as before
    text = curves["encoders"]["text"]
    assert text["encoder"] == "gru_text" and len(text["train_loss"]) == 3 and "from_run" not in text
    assert set(curves["encoders"]) == {"text"}  # keyword_image trains nothing
    second = runner.run(config, name, db=db, device="cpu")  # the tower's vectors now come from the cache
    again = runner.get_run(second, db=db)["curves"]
    assert again["encoders"]["text"] == {**text, "from_run": first}
    traces = [t.name for t in training_curves_figure(again).data]
    assert traces == ["train", "val", f"text tower (gru_text), from run {first}"]
