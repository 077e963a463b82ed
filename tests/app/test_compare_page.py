"""AppTest of the Compare page: picking runs and a baseline, the leaderboard, the live threshold slider."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "pages" / "4_Compare.py"


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


def test_compare_select_runs_and_move_threshold(app_env):
    from workbench import analysis

    at = AppTest.from_file(str(PAGE), default_timeout=90).run()
    assert not at.exception
    runs = at.multiselect(key="compare_runs_widget")
    assert set(runs.value) == {app_env.kw_run, app_env.kwc_run}  # two newest preselected
    runs.set_value([app_env.kwc_run]).run()
    assert not at.exception and at.session_state["selected_runs"] == [app_env.kwc_run]
    assert any("Select a second run" in c.value for c in at.caption)
    runs.set_value([app_env.kwc_run, app_env.kw_run]).run()
    at.selectbox(key="compare_baseline").set_value(app_env.kw_run).run()
    assert not at.exception
    assert len(at.table) == 1  # the leaderboard
    board = at.table[0].value
    assert {"pair/f1", "pair/f1 95% CI", "t2i/mrr"} <= set(board.columns) and len(board) == 2
    assert any("Paired tests against the baseline" in m.value for m in at.markdown)
    assert len(at.get("plotly_chart")) >= 5  # ROC, PR, confusion, reliability, heatmap, retrieval

    at.radio(key="compare_focus").set_value(app_env.kwc_run).run()
    slider = at.slider(key=f"compare_threshold_{app_env.kwc_run}")
    pairs = analysis.load_scored_pairs(app_env.kwc_run, db=app_env.path)
    new = float(pairs["score"].quantile(0.3))
    slider.set_value(new).run()
    assert not at.exception
    expected = analysis.operating_point(pairs["label"].to_numpy(), pairs["score"].to_numpy(), new)
    shown = {m.label: m.value for m in at.metric}
    assert shown["precision"] == f"{expected['precision']:.3f}" and shown["recall"] == f"{expected['recall']:.3f}"
    at.slider(key="compare_cost_fp").set_value(8.0).run()
    assert any(m.value.startswith("Cheapest threshold") for m in at.markdown)


def test_compare_without_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DB", str(tmp_path / "empty.duckdb"))
    at = AppTest.from_file(str(PAGE), default_timeout=60).run()
    assert not at.exception and "No finished runs" in at.info[0].value
