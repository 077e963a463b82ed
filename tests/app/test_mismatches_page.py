"""AppTest of the Mismatches page: the gallery and its filters, marking a label error, recomputing metrics."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "pages" / "6_Mismatches.py"


def _part2():
    if "part2_data" not in sys.modules:
        spec = importlib.util.spec_from_file_location("part2_data", ROOT / "tests" / "viz" / "part2_data.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["part2_data"] = module
        spec.loader.exec_module(module)
    return sys.modules["part2_data"]


@pytest.fixture(scope="session")
def part2_db(tmp_path_factory):
    return _part2().build(tmp_path_factory)


@pytest.fixture
def app_env(part2_db, tmp_path, monkeypatch):
    """A private copy of the part-2 database, with WORKBENCH_DB pointing at it."""
    db = _part2().copy_db(part2_db, tmp_path / "app")
    monkeypatch.setenv("WORKBENCH_DB", str(db.path))
    return db


def test_page_is_thin():
    source = PAGE.read_text()
    tree = ast.parse(source)
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not imported & {"numpy", "duckdb", "torch", "pandas", "sklearn", "umap"}
    assert len(source.splitlines()) < 200


def test_mismatch_gallery_filter_and_mark_label_error(app_env):
    from workbench import analysis

    at = AppTest.from_file(str(PAGE), default_timeout=90).run()
    assert not at.exception
    at.selectbox(key="mismatch_run").set_value(app_env.kwc_run).run()
    at.radio(key="mismatch_kind").set_value("hardest_negative").run()
    at.selectbox(key="mismatch_pair_kind").set_value("attribute").run()
    assert not at.exception
    cards = [c.value for c in at.caption if c.value.startswith("score")]
    assert cards and all("attribute" in c and "swapped" in c for c in cards)
    marks = [b for b in at.button if b.label == "Mark as label error"]
    assert len(marks) == len(cards)
    expected = analysis.mismatches(app_env.kwc_run, db=app_env.path, kind="hardest_negative", pair_kind="attribute",
                                   limit=12)
    first = expected["pair_id"].iloc[0]
    at.button(key=f"mismatch_mark_{first}").click().run()
    assert not at.exception
    assert analysis.list_label_errors(app_env.eval_set, db=app_env.path)["pair_id"].tolist() == [first]
    assert any(first in s.value for s in at.success)
    assert at.button(key=f"mismatch_unmark_{first}")  # shown with a badge and an Unmark button now

    at.checkbox(key="mismatch_hide_marked").check().run()
    assert f"mismatch_mark_{first}" not in {b.key for b in at.button}
    at.toggle(key=f"mismatch_exclude_{app_env.kwc_run}").set_value(True).run()
    assert not at.exception
    assert any("Recorded with the run's metrics: 1 pairs marked as label errors excluded" in c.value
               for c in at.caption)


def test_retrieval_failures_section(app_env):
    at = AppTest.from_file(str(PAGE), default_timeout=90).run()
    at.selectbox(key="mismatch_run").set_value(app_env.kwc_run).run()
    at.radio(key="mismatch_direction").set_value("i2t").run()
    assert not at.exception
    assert any("rank of the true item" in c.value for c in at.caption)
