"""AppTest of the Compare page: picking runs and a baseline, the leaderboard, the live threshold slider."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "pages" / "4_Compare.py"


def test_compare_select_runs_and_move_threshold(app_env):
    from workbench.evaluation.aggregate import load_calibrator, load_metrics, operating_point
    from workbench.evaluation.results import load_scored_pairs
    from workbench.ui.cache import finished_runs

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
    full = dict(finished_runs.__wrapped__(str(app_env.path))[["run_id", "label"]].to_numpy())
    labels = {app_env.kwc_run: "R1 · kwc", app_env.kw_run: "R2 · kw"}  # short labels, in the order selected
    legend = at.dataframe[0].value
    assert list(legend["label"]) == list(labels.values())
    assert list(legend["run"]) == [full[r] for r in labels] and all(" · tiny · " in r for r in legend["run"])
    assert len(at.table) == 1  # the leaderboard
    board = at.table[0].value
    assert {"pair/f1", "pair/f1 95% CI", "t2i/mrr"} <= set(board.columns) and len(board) == 2
    assert list(board["run"]) == list(labels.values())
    assert any("Paired tests against the baseline" in m.value for m in at.markdown)
    assert len(at.get("plotly_chart")) >= 5  # ROC, PR, confusion, reliability, heatmap, retrieval

    frames = [d.value for d in at.dataframe]
    calibration = next(f for f in frames if "calibration (fitted on val)" in f.columns)
    assert list(calibration["run"]) == [labels[r] for r in (app_env.kwc_run, app_env.kw_run)]
    assert (calibration["calibration (fitted on val)"] == "platt").all()
    for r, row in zip((app_env.kwc_run, app_env.kw_run), calibration.to_dict("records"), strict=True):
        stored = load_metrics(r, db=app_env.path).set_index("name")
        assert row["pair/ece"] == stored.at["pair/ece", "value"] and row["pair/brier"] == stored.at["pair/brier",
                                                                                                      "value"]
    every = next(f for f in frames if "note" in f.columns)  # every slice; the 30-product catalogue is too small
    assert len(every) and (every["note"] == "too few pairs").all()
    assert any("No slice has at least 30 positives and 30 negatives" in c.value for c in at.caption)

    at.radio(key="compare_focus").set_value(app_env.kwc_run).run()
    pairs = load_scored_pairs(app_env.kwc_run, db=app_env.path)
    probability = load_calibrator(app_env.kwc_run, db=app_env.path).predict(pairs["score"].to_numpy())
    slider = at.slider(key=f"compare_thr_slider_{app_env.kwc_run}")
    assert (slider.min, slider.max, slider.step) == (0.0, 1.0, 0.001)  # the calibrated probability scale
    assert "calibrated match probability" in slider.label
    slider.set_value(0.3).run()
    assert not at.exception
    assert at.number_input(key=f"compare_thr_number_{app_env.kwc_run}").value == 0.3  # the two stay together
    expected = operating_point(pairs["label"].to_numpy(), probability, 0.3)
    shown = {m.label: m.value for m in at.metric}
    assert shown["precision"] == f"{expected['precision']:.3f}" and shown["recall"] == f"{expected['recall']:.3f}"
    at.number_input(key=f"compare_thr_number_{app_env.kwc_run}").set_value(0.7).run()
    assert at.slider(key=f"compare_thr_slider_{app_env.kwc_run}").value == 0.7
    expected = operating_point(pairs["label"].to_numpy(), probability, 0.7)
    assert {m.label: m.value for m in at.metric}["recall"] == f"{expected['recall']:.3f}"
    assert any("Decisions use the platt calibrator fitted on val" in c.value for c in at.caption)
    at.slider(key="compare_cost_fp").set_value(8.0).run()
    assert any(m.value.startswith("Cheapest threshold") for m in at.markdown)


def test_compare_offers_the_runs_of_one_eval_set_and_finds_runs_by_tag(app_env):
    from workbench.run import runner

    runner.set_run_metadata(app_env.kw_run, name="plain cosine", tags=["shortlist"], db=app_env.path)
    at = AppTest.from_file(str(PAGE), default_timeout=90).run()
    assert not at.exception
    assert at.selectbox(key="compare_eval_set_widget").value == "tiny"
    assert set(at.multiselect(key="compare_runs_widget").value) == {app_env.kw_run, app_env.kwc_run}
    at.multiselect(key="compare_tags").set_value(["shortlist"]).run()
    assert not at.exception
    runs = at.multiselect(key="compare_runs_widget")
    assert runs.value == [app_env.kw_run]
    assert runs.options == ["plain cosine · kw · tiny · " + app_env.kw_run]  # the only run offered
    assert list(at.dataframe[0].value["label"]) == ["R1 · plain cosine"]


def test_compare_without_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DB", str(tmp_path / "empty.duckdb"))
    at = AppTest.from_file(str(PAGE), default_timeout=60).run()
    assert not at.exception and "No finished runs" in at.info[0].value


def _slice_frame() -> pd.DataFrame:
    rows = [("A", "lamp", 0.10, 12, 40), ("A", "mug", 0.70, 60, 80), ("A", "hat", 0.80, 45, 50),
            ("B", "lamp", 0.05, 12, 40), ("B", "mug", 0.90, 60, 80), ("B", "hat", 0.60, 45, 50)]
    frame = pd.DataFrame(rows, columns=["run", "slice_value", "value", "n_pos", "n_neg"]).assign(
        name="pair/roc_auc", slice_kind="category", ci_low=0.0, ci_high=1.0)
    return frame.assign(too_few=(frame["n_pos"] < 30) | (frame["n_neg"] < 30))


def test_worst_slices_never_rank_a_slice_with_too_few_pairs():
    from workbench.ui.compare import worst_slices

    worst = worst_slices(_slice_frame(), "pair/roc_auc", n=1)
    assert list(zip(worst["run"], worst["slice"], strict=True)) == [("A", "category: mug"), ("B", "category: hat")]
    assert list(worst.columns) == ["run", "slice", "value", "95% CI", "positives", "negatives"]
    assert worst["95% CI"].tolist() == ["[0.000, 1.000]"] * 2
    brier = worst_slices(_slice_frame().assign(name="pair/brier"), "pair/brier", n=1)  # lower is better
    assert list(brier["slice"]) == ["category: hat", "category: mug"]
