"""Figure builders: trace types and counts, WebGL + float32 for point clouds, escaped hover text, worst cells."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from workbench.evaluation.results import get_artifact
from workbench.viz import figures


@pytest.fixture(scope="module")
def curves(two_runs_db):
    return {"kw": get_artifact(two_runs_db.kw_run, "curves", db=two_runs_db.path),
            "kwc": get_artifact(two_runs_db.kwc_run, "curves", db=two_runs_db.path)}


def _cloud(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "item_id": [f"i{i}" for i in range(n)], "modality": ["image", "text"] * (n // 2),
        "x": rng.normal(size=n), "y": rng.normal(size=n), "product_id": [f"p{i // 2}" for i in range(n)],
        "category": ["mug", "lamp"] * (n // 2), "split": "test",
        "label_text": ["<script>alert(1)</script> & <b>bold</b>"] + [f"t{i}" for i in range(1, n)],
        "image_path": None, "correct": [True, False, None, True] * (n // 4),
        "language": [None, "en", None, "zh"] * (n // 4), "pair_kind": ["positive", "positive", "positive",
                                                                    "attribute"] * (n // 4),
    })


def test_roc_and_pr_overlay_one_line_per_run_with_operating_points(curves):
    roc = figures.roc_figure(curves)
    lines = [t for t in roc.data if t.mode == "lines" and t.name != "chance"]
    assert [t.name for t in lines] == ["kw", "kwc"]
    assert sum(t.mode == "markers" for t in roc.data) == 2  # one operating point per run
    assert roc.data[0].name == "chance"
    np.testing.assert_allclose(lines[1].x, curves["kwc"]["roc"]["fpr"])
    pr = figures.pr_figure(curves)
    pr_lines = [t for t in pr.data if t.mode == "lines"]
    assert [t.name for t in pr_lines] == ["kw", "kwc"]
    np.testing.assert_allclose(pr_lines[1].y, curves["kwc"]["pr"]["precision"])


def test_reliability_diagram_for_every_run_and_a_note_for_old_ones(curves):
    # Cosine and contrastive heads score on their own scales; the val-fitted calibrator gives both a diagram.
    fig = figures.reliability_figure({**curves, "old run": {**curves["kw"], "reliability": None}})
    assert [t.name for t in fig.data] == ["perfectly calibrated", "kw", "kwc"]
    for trace, label in zip(fig.data[1:], ("kw", "kwc"), strict=True):
        rel = curves[label]["reliability"]
        kept = np.isfinite(np.asarray(rel["mean_predicted"], dtype=float))
        np.testing.assert_allclose(trace.x, np.asarray(rel["mean_predicted"], dtype=float)[kept])
        assert f"({curves[label]['calibration']['method']} calibration)" in trace.hovertemplate
    assert "before calibration" in fig.layout.annotations[0].text
    assert fig.layout.annotations[0].text.endswith("old run")


def test_confusion_matrix_layout():
    fig = figures.confusion_figure({"tp": 5, "fp": 2, "tn": 10, "fn": 3})
    assert fig.data[0].type == "heatmap"
    assert [list(r) for r in fig.data[0].z] == [[0.625, 0.375], [2 / 12, 10 / 12]]  # rates within each truth
    assert "<b>5</b>" in fig.data[0].text[0][0] and "62.5% of actual matches" in fig.data[0].text[0][0]
    assert "<b>10</b>" in fig.data[0].text[1][1] and "83.3% of actual non-matches" in fig.data[0].text[1][1]
    assert fig.data[0].textfont.size >= 14 and fig.layout.margin.t >= 60 and fig.layout.title.x == 0.0
    with pytest.raises(ValueError, match="missing 'fn'"):
        figures.confusion_figure({"tp": 1, "fp": 1, "tn": 1})


def test_slice_heatmap_flags_the_worst_cells_by_direction():
    rows = [("A", "category", c, v) for c, v in (("mug", 0.9), ("lamp", 0.5), ("hat", 0.7), ("cap", 0.8))]
    rows += [("B", "category", c, v) for c, v in (("mug", 0.6), ("lamp", 0.95), ("hat", 0.7), ("cap", 0.4))]
    frame = pd.DataFrame(rows, columns=["run", "slice_kind", "slice_value", "value"])
    fig = figures.slice_heatmap(frame.assign(name="pair/roc_auc"), metric="pair/roc_auc", n_worst=1)
    heat = fig.data[0]
    assert heat.type == "heatmap" and list(heat.x) == ["A", "B"]
    flagged = {(heat.y[r], heat.x[c]) for r, row in enumerate(heat.text) for c, t in enumerate(row) if "(worst)" in t}
    assert flagged == {("category: lamp", "A"), ("category: cap", "B")}
    assert len(fig.layout.shapes) == 2
    lower = figures.slice_heatmap(frame.assign(name="pair/brier"), metric="pair/brier", n_worst=1)
    flagged = {(lower.data[0].y[r], lower.data[0].x[c]) for r, row in enumerate(lower.data[0].text)
               for c, t in enumerate(row) if "(worst)" in t}
    assert flagged == {("category: mug", "A"), ("category: lamp", "B")}  # lower is better: highest is worst
    empty = figures.slice_heatmap(frame.assign(name="pair/f1"), metric="pair/roc_auc")
    assert not empty.data and "No per-slice values" in empty.layout.annotations[0].text


def test_slice_heatmap_greys_small_slices_and_never_ranks_them():
    counts = {"mug": (80, 90), "lamp": (12, 40), "hat": (50, 60), "cap": (31, 30)}
    values = {"A": {"mug": 0.9, "lamp": 0.2, "hat": 0.7, "cap": 0.8}, "B": {"mug": 0.6, "lamp": 0.1, "hat": 0.75,
                                                                          "cap": 0.5}}
    rows = [(run, c, v, *counts[c]) for run, by_slice in values.items() for c, v in by_slice.items()]
    frame = pd.DataFrame(rows, columns=["run", "slice_value", "value", "n_pos", "n_neg"]).assign(
        slice_kind="category", name="pair/roc_auc", ci_low=0.05, ci_high=0.95)
    frame["too_few"] = (frame["n_pos"] < 30) | (frame["n_neg"] < 30)
    fig = figures.slice_heatmap(frame, metric="pair/roc_auc", n_worst=1)
    main, grey = fig.data
    assert grey.name == "too few pairs" and grey.showscale is False
    lamp = list(main.y).index("category: lamp")
    assert np.isnan(np.asarray(main.z, dtype=float)[lamp]).all()  # not on the colour scale
    assert [t for t in grey.text[lamp]] == ["0.200<br>too few pairs", "0.100<br>too few pairs"]
    flagged = {(main.y[r], main.x[c]) for r, row in enumerate(main.text) for c, t in enumerate(row) if "(worst)" in t}
    assert flagged == {("category: hat", "A"), ("category: cap", "B")}  # lamp is lowest but too small to rank
    assert not any("(worst)" in t for row in grey.text for t in row)
    assert "%{customdata[0]:.0f} positives, %{customdata[1]:.0f} negatives" in main.hovertemplate
    np.testing.assert_array_equal(np.asarray(main.customdata)[lamp, 0, :2], [12, 40])
    assert "grey = too few pairs" in fig.layout.title.text


def test_retrieval_bars_with_confidence_intervals():
    frame = pd.DataFrame({"run": ["A", "A", "B", "B"], "name": ["t2i/success@1", "t2i/mrr"] * 2,
                          "value": [0.5, 0.6, 0.7, 0.8], "ci_low": [0.4, 0.5, 0.6, 0.7],
                          "ci_high": [0.6, 0.7, 0.8, 0.9]})
    fig = figures.retrieval_figure(frame)
    assert [t.type for t in fig.data] == ["bar", "bar"] and fig.layout.barmode == "group"
    np.testing.assert_allclose(fig.data[1].y, [0.7, 0.8])
    np.testing.assert_allclose(fig.data[1].error_y.array, [0.1, 0.1])


def test_embedding_figure_is_webgl_float32_with_escaped_hover_and_item_ids():
    frame = _cloud()
    fig = figures.embedding_figure(frame, color_by="modality")
    assert {t.type for t in fig.data} == {"scattergl"}
    assert [t.name for t in fig.data] == ["image (20)", "text (20)"]
    for trace in fig.data:
        assert trace.x.dtype == np.float32 and trace.y.dtype == np.float32
    image = fig.data[0]
    assert image.customdata[0].tolist() == ["i0", "image"]
    assert "&lt;script&gt;" in image.hovertext[0] and "<script>" not in image.hovertext[0]
    payload = json.loads(fig.to_json())
    assert payload["data"][0]["x"]["dtype"] == "f4"  # typed-array encoding: 4 bytes per coordinate
    assert "<script>" not in fig.to_json()


@pytest.mark.parametrize("color_by, names", [
    ("correct", {"classified right (20)", "classified wrong (10)", "no positive test pair (10)"}),
    ("category", {"lamp (20)", "mug (20)"}),
    ("language", {"image (no language) (20)", "en (10)", "zh (10)"}),
    ("pair_kind", {"positive (30)", "attribute (10)"}),
])
def test_embedding_colour_groups(color_by, names):
    fig = figures.embedding_figure(_cloud(), color_by=color_by)
    assert {t.name for t in fig.data} == names
    assert sum(len(t.x) for t in fig.data) == 40


def test_embedding_colour_by_tag_needs_the_callers_tag_column_and_puts_the_legend_below():
    with pytest.raises(ValueError, match="needs a 'tag' column"):
        figures.embedding_figure(_cloud(), color_by="tag")
    fig = figures.embedding_figure(_cloud().assign(tag=["odd", None] * 20), color_by="tag")
    assert {t.name for t in fig.data} == {"odd (20)", "no tag (20)"}
    assert fig.layout.legend.orientation == "h" and fig.layout.legend.y < 0


def test_embedding_lines_join_matched_images_and_texts():
    fig = figures.embedding_figure(_cloud(), lines=True)
    lines = fig.data[0]
    assert lines.type == "scattergl" and lines.mode == "lines" and lines.name == "matched pairs (20)"
    assert len(lines.x) == 60 and np.isnan(lines.x[2::3]).all()
    with pytest.raises(ValueError, match="color_by='size'"):
        figures.embedding_figure(_cloud(), color_by="size")


def test_empty_embedding_frame_gives_an_empty_figure():
    fig = figures.embedding_figure(_cloud().iloc[:0])
    assert isinstance(fig, go.Figure) and not fig.data
