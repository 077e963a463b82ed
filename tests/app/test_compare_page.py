"""AppTest of the Compare page: picking runs and a baseline, the leaderboard, the live threshold slider."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "pages" / "4_Compare.py"


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
