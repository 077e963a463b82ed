"""Report exports: every format for one run and for a comparison, numbers equal to the database, the JSON schema,
no external resources in the HTML, escaping of untrusted text, and the reproducibility card's command."""

from __future__ import annotations

import json
import math
import re
import shlex

import jsonschema
import numpy as np
import pandas as pd
import pytest

from workbench import store
from workbench.evaluation.aggregate import load_metrics
from workbench.reports import FORMATS as REPORT_FORMATS
from workbench.reports import build_report_data, render_report, write_report
from workbench.reports.common import fmt
from workbench.reports.json_report import load_schema

INJECTED = "<script>alert(1)</script>"  # what tests/reports/conftest.py injects into one product title
FORMATS = ("html", "pdf", "md", "json", "csv", "parquet")

EXTERNAL = [
    re.compile(r"""(?:src|href|action|poster|data)\s*=\s*["']?\s*(?:https?:)?//""", re.I),
    re.compile(r"""url\(\s*["']?\s*(?:https?:)?//""", re.I),
    re.compile(r"@import", re.I),
    re.compile(r"<link\b", re.I),
    re.compile(r"<script\b[^>]*\bsrc\s*=", re.I),
    re.compile(r"<iframe\b", re.I),
]
SCRIPT_BODY = re.compile(r"(<script\b[^>]*>).*?(</script>)", re.S | re.I)


def _cli_metrics(run_id: str, db, capsys) -> dict:
    from workbench.cli import main

    capsys.readouterr()
    assert main(["--db", str(db), "metrics", run_id, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)  # Python's parser accepts the CLI's NaN
    return {name: {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in entry.items()}
            for name, entry in printed.items()}


def _db_pairs(db, run_id: str) -> pd.DataFrame:
    with store.connect(db) as con:
        return store.query_frame(con, """
            SELECT s.pair_id, s.split, s.score, p.label, p.image_id, p.text_id, p.pair_kind, r.threshold
            FROM scores s JOIN runs r USING (run_id) JOIN pairs p ON p.eval_set = r.eval_set AND p.pair_id = s.pair_id
            WHERE s.run_id = ? ORDER BY s.pair_id""", [run_id])


# ------------------------------------------------------------------------------------------------ every format
@pytest.mark.parametrize("case", ["single", "comparison"])
def test_every_format_is_written(case, request):
    written = request.getfixturevalue(case)
    assert set(written.files) == set(FORMATS) == set(REPORT_FORMATS)
    for fmt_name, path in written.files.items():
        assert path.exists() and path.stat().st_size > 0, fmt_name
        assert path.suffix == REPORT_FORMATS[fmt_name][0]
    for run_id in written.run_ids:  # the config sidecar of every run sits next to the report
        assert (written.folder / f"report.{run_id}.config.toml").exists()
    pdf = written.files["pdf"].read_bytes()
    assert pdf.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf)) >= 2
    figures = sorted(p.name for p in (written.folder / "report_files").glob("*.png"))
    assert {"curves.png", "confusion.png", "slices.png", "retrieval.png", "projection_1.png"} <= set(figures)
    for png in (written.folder / "report_files").glob("*.png"):
        assert png.read_bytes().startswith(b"\x89PNG")
    md = written.files["md"].read_text(encoding="utf-8")
    for name in figures:  # every figure is linked, relative to the Markdown file
        assert f"](report_files/{name})" in md


def test_unknown_format_and_missing_run_fail_clearly(report_db, tmp_path):
    with pytest.raises(ValueError, match="allowed"):
        write_report([report_db.cosine], fmt="docx", out=tmp_path / "r.docx", db=report_db.path)
    with pytest.raises(KeyError, match="not found"):
        write_report(["no-such-run"], fmt="json", out=tmp_path / "r.json", db=report_db.path)


def test_out_directory_gets_a_file_name(report_db, tmp_path):
    path = write_report([report_db.cosine], fmt="csv", out=str(tmp_path) + "/", db=report_db.path)
    assert path.parent == tmp_path and path.name == f"report-{report_db.cosine}.csv"


# ------------------------------------------------------------------------------------------------------- JSON
@pytest.mark.parametrize("case", ["single", "comparison"])
def test_json_validates_and_matches_the_cli(case, request, report_db, capsys):
    written = request.getfixturevalue(case)
    report = json.loads(written.files["json"].read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(load_schema())
    jsonschema.validate(report, load_schema(), cls=jsonschema.Draft202012Validator)
    assert report["schema_version"] == 1
    assert [r["run_id"] for r in report["runs"]] == written.run_ids
    for run in report["runs"]:
        assert run["metrics"] == _cli_metrics(run["run_id"], report_db.path, capsys)
        assert run["eval_set"] == "tiny" and run["config"]["image_encoder"] == {"type": "keyword_image"}
        card = run["reproducibility"]
        assert card["eval_set_hash"] and card["split_seed"] == 1 and card["config_fingerprint"]
        assert card["command"].startswith("python -m workbench run --eval-set tiny --config ")
        assert card["versions"]["duckdb"] and "numpy" in card["versions"]
        pairs = _db_pairs(report_db.path, run["run_id"])
        test = pairs[pairs["split"] == "test"]
        predicted = test["score"] >= test["threshold"]
        assert run["confusion"] == {"tp": int((predicted & (test["label"] == 1)).sum()),
                                    "fp": int((predicted & (test["label"] == 0)).sum()),
                                    "tn": int((~predicted & (test["label"] == 0)).sum()),
                                    "fn": int((~predicted & (test["label"] == 1)).sum())}
    if case == "single":
        assert report["comparisons"] == [] and report["leaderboard"] == []
    else:
        (entry,) = report["comparisons"]
        assert entry["baseline"] == report_db.cosine and entry["run_id"] == report_db.contrastive
        assert {"pair/accuracy", "pair/f1", "pair/roc_auc", "pair/pr_auc"} <= set(entry["tests"])
        assert entry["tests"]["pair/roc_auc"]["test"] == "DeLong"
        base = report["runs"][0]["metrics"]["pair/f1"]["value"]
        other = report["runs"][1]["metrics"]["pair/f1"]["value"]
        assert entry["metric_deltas"]["pair/f1"] == pytest.approx(other - base)


# ------------------------------------------------------------------------------------------------ CSV / Parquet
@pytest.mark.parametrize("case", ["single", "comparison"])
@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_per_pair_tables_equal_the_database(case, kind, request, report_db):
    written = request.getfixturevalue(case)
    path = written.files[kind]
    table = pd.read_csv(path) if kind == "csv" else pd.read_parquet(path)
    required = {"pair_id", "split", "image_id", "text_id", "label", "score", "threshold", "prediction", "category",
                "pair_kind"}
    assert required <= set(table.columns)
    assert ({"run_id", "config"} <= set(table.columns)) == (case == "comparison")
    for run_id in written.run_ids:
        rows = table[table["run_id"] == run_id] if case == "comparison" else table
        db = _db_pairs(report_db.path, run_id)
        assert len(rows) == len(db)
        merged = db.merge(rows, on="pair_id", suffixes=("_db", ""))
        assert len(merged) == len(db)
        np.testing.assert_array_equal(merged["score"].to_numpy(), merged["score_db"].to_numpy())  # exact
        np.testing.assert_array_equal(merged["threshold"].to_numpy(), merged["threshold_db"].to_numpy())
        assert (merged["label"] == merged["label_db"]).all() and (merged["split"] == merged["split_db"]).all()
        assert (merged["prediction"].astype(int) == (merged["score_db"] >= merged["threshold_db"]).astype(int)).all()
        # the stored accuracy is the accuracy of these predictions on the test split
        test = merged[merged["split"] == "test"]
        accuracy = (test["prediction"].astype(int) == test["label"]).mean()
        stored = load_metrics(run_id, db=report_db.path).set_index("name").at["pair/accuracy", "value"]
        assert accuracy == pytest.approx(stored, abs=1e-12)


# ------------------------------------------------------------------------------------------------ HTML / MD text
@pytest.mark.parametrize("case", ["single", "comparison"])
def test_metric_values_appear_in_html_and_markdown(case, request, report_db):
    written = request.getfixturevalue(case)
    html_text = written.files["html"].read_text(encoding="utf-8")
    md_text = written.files["md"].read_text(encoding="utf-8")
    for run_id in written.run_ids:
        metrics = load_metrics(run_id, db=report_db.path).set_index("name")
        for name in ("pair/accuracy", "pair/f1", "pair/roc_auc", "t2i/mrr", "i2t/success@5"):
            value = fmt(metrics.at[name, "value"])
            low, high = fmt(metrics.at[name, "ci_low"]), fmt(metrics.at[name, "ci_high"])
            for text in (html_text, md_text):
                assert value in text, (name, value)
                assert low in text and high in text
        assert run_id in html_text and run_id in md_text
        with store.connect(report_db.path) as con:
            content_hash = con.execute("SELECT content_hash FROM eval_sets WHERE name = 'tiny'").fetchone()[0]
        assert content_hash in html_text and content_hash in md_text
    assert html_text.count("Reproducibility") >= 1 and "python -m workbench run --eval-set tiny" in md_text


@pytest.mark.parametrize("case", ["single", "comparison"])
def test_html_is_self_contained(case, request):
    html_text = request.getfixturevalue(case).files["html"].read_text(encoding="utf-8")
    assert html_text.count("<script") >= 2 and "Plotly.newPlot" in html_text
    outside_scripts = SCRIPT_BODY.sub(r"\1\2", html_text)
    for pattern in EXTERNAL:
        assert not pattern.search(outside_scripts), pattern.pattern
    assert not EXTERNAL[1].search(html_text)  # no url(http…) even inside scripts
    assert re.search(r'src="data:image/png;base64,[A-Za-z0-9+/=]{100,}"', html_text)  # embedded thumbnails


# -------------------------------------------------------------------------------------------------- escaping
def test_untrusted_text_is_escaped(report_db):
    data = build_report_data([report_db.cosine, report_db.contrastive], db=report_db.path, top_k=500,
                             title=f"Report {INJECTED} & <b>friends</b>", projection=None, thumb_side=0)
    data.runs[1].config_name = f"cfg {INJECTED}"
    assert any(INJECTED in t for r in data.runs for t in r.mismatches["text"]), "fixture text not in mismatches"
    html_text = render_report(data, "html").content.decode("utf-8")
    md_text = render_report(data, "md").content.decode("utf-8")
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    for text in (html_text, md_text):
        assert INJECTED not in text
        assert "<b>friends</b>" not in text
        assert text.count(escaped) >= 3  # title, config name, the product text
    assert f"<title>Report {escaped} &amp; &lt;b&gt;friends&lt;/b&gt;</title>" in html_text
    assert html_text.count("<script") == html_text.count("</script>")


# ------------------------------------------------------------------------------------------- reproducibility
def test_reproducibility_command_recreates_the_metrics(single, report_db, monkeypatch, capsys):
    from workbench.cli import main
    from workbench.config import load_config
    from workbench.run.runner import get_run

    report = json.loads(single.files["json"].read_text(encoding="utf-8"))
    card = report["runs"][0]["reproducibility"]
    config_path = single.folder / card["config_file"]
    assert config_path.read_text(encoding="utf-8") == card["config_toml"]
    assert load_config(config_path).fingerprint() == card["config_fingerprint"]
    argv = shlex.split(card["command"])
    assert argv[:4] == ["python", "-m", "workbench", "run"]
    monkeypatch.chdir(single.folder)  # the command names the sidecar relative to the report
    capsys.readouterr()
    assert main(["--db", str(report_db.path), *argv[3:]]) == 0
    new_run = capsys.readouterr().out.strip().splitlines()[-1]
    assert get_run(new_run, db=report_db.path)["fingerprint"] == card["config_fingerprint"]
    before = load_metrics(report_db.contrastive, db=report_db.path)
    after = load_metrics(new_run, db=report_db.path)
    assert list(before["name"]) == list(after["name"])
    for column in ("value", "ci_low", "ci_high"):
        np.testing.assert_allclose(after[column].to_numpy(float), before[column].to_numpy(float), rtol=0, atol=1e-9,
                                   equal_nan=True)


def test_cli_report_command(report_db, tmp_path, capsys):
    from workbench.cli import main

    capsys.readouterr()
    code = main(["--db", str(report_db.path), "report", report_db.cosine, "--format", "parquet", "--out",
                 str(tmp_path / "pairs.parquet")])
    assert code == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "pairs.parquet")
    assert len(pd.read_parquet(tmp_path / "pairs.parquet")) == len(_db_pairs(report_db.path, report_db.cosine))
    assert (tmp_path / f"pairs.{report_db.cosine}.config.toml").exists()


# ------------------------------------------------------------------------------------------- calibration, slices
@pytest.mark.parametrize("case", ["single", "comparison"])
def test_calibration_is_reported_for_every_run(case, request, report_db):
    from workbench.evaluation.aggregate import load_calibrator
    from workbench.reports.markdown_report import esc

    written = request.getfixturevalue(case)
    report = json.loads(written.files["json"].read_text(encoding="utf-8"))
    html_text = written.files["html"].read_text(encoding="utf-8")
    md_text = written.files["md"].read_text(encoding="utf-8")
    table = pd.read_csv(written.files["csv"])
    for run in report["runs"]:
        assert run["calibration"]["method"] == "platt" and run["calibration"]["fitted_on"] == "val"
        assert sum(run["curves"]["reliability"]["count"]) == run["metric_n"]["pair/ece"]
        for name in ("pair/ece", "pair/brier"):
            entry = run["metrics"][name]
            assert entry["ci_low"] <= entry["ci_high"]  # ECE's bootstrap is biased upward: no containment
            shown = f"{fmt(entry['value'])} [{fmt(entry['ci_low'])}, {fmt(entry['ci_high'])}]"
            assert esc(shown) in md_text and shown in html_text  # the calibration table, value with its CI
        # The exported probability is the run's stored calibrator applied to the stored score.
        rows = table[table["run_id"] == run["run_id"]] if case == "comparison" else table
        expected = load_calibrator(run["run_id"], db=report_db.path).predict(rows["score"].to_numpy())
        np.testing.assert_allclose(rows["probability"].to_numpy(), expected, rtol=1e-12)
    assert "fitted on the val split only" in md_text and "fitted on the val split only" in html_text


@pytest.mark.parametrize("case", ["single", "comparison"])
def test_small_slices_are_greyed_and_never_ranked(case, request, report_db):
    from workbench.evaluation.aggregate import MIN_SLICE_NEGATIVES, MIN_SLICE_POSITIVES

    written = request.getfixturevalue(case)
    report = json.loads(written.files["json"].read_text(encoding="utf-8"))
    html_text = written.files["html"].read_text(encoding="utf-8")
    md_text = written.files["md"].read_text(encoding="utf-8")
    for run in report["runs"]:
        pair = [s for s in run["slices"] if s["name"].startswith("pair/")]
        assert pair and all(s["n_pos"] is not None and s["n_neg"] is not None for s in pair)
        for s in pair:
            assert s["too_few"] == (s["n_pos"] < MIN_SLICE_POSITIVES or s["n_neg"] < MIN_SLICE_NEGATIVES)
        # The 30-product catalogue has 30 test positives at most: every slice is too small to rank.
        assert all(s["too_few"] for s in pair) and run["worst_slices"] == []
    assert html_text.count('<tr class="too-few">') >= len(report["runs"])
    assert "too few pairs" in md_text and "No slice" not in md_text
    assert f"at least {MIN_SLICE_POSITIVES} positives and {MIN_SLICE_NEGATIVES} negatives" in md_text


def test_worst_slices_skip_small_slices_and_show_counts_with_intervals():
    from workbench.reports.common import slice_display
    from workbench.reports.data import SLICE_COLUMNS, worst_slices

    table = pd.DataFrame([
        {"slice_kind": "category", "slice_value": "lamp", "n": 52, "n_pos": 12, "n_neg": 40, "too_few": True,
         "pair/accuracy": 0.10, "pair/accuracy ci_low": 0.0, "pair/accuracy ci_high": 0.3},
        {"slice_kind": "category", "slice_value": "mug", "n": 140, "n_pos": 60, "n_neg": 80, "too_few": False,
         "pair/accuracy": 0.70, "pair/accuracy ci_low": 0.6, "pair/accuracy ci_high": 0.8},
        {"slice_kind": "language", "slice_value": "zh", "n": 100, "n_pos": 40, "n_neg": 60, "too_few": False,
         "pair/accuracy": 0.65, "pair/accuracy ci_low": 0.5, "pair/accuracy ci_high": 0.75},
    ]).reindex(columns=list(SLICE_COLUMNS))
    worst = worst_slices(table, k=5)
    assert list(worst["slice_value"]) == ["zh", "mug"]  # lamp has the lowest accuracy but only 12 positives
    shown = slice_display(table)
    assert list(shown["note"]) == ["too few pairs", "", ""]
    assert shown.loc[1, "pair/accuracy"] == "0.7000 [0.6000, 0.8000]"
    assert list(shown.loc[0, ["slice", "pairs", "positives", "negatives"]]) == ["category: lamp", "52", "12", "40"]
