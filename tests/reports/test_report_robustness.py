"""The robustness section: stored results of every run in HTML (figure + table), Markdown and JSON (the CLI's
``robustness --json`` shape), one perturbation seed per run, and a one-line note with the command when absent."""

from __future__ import annotations

import json
import shutil

import jsonschema
import pytest

from workbench.reports import build_report_data, render_report
from workbench.reports.common import robustness_command, with_ci
from workbench.reports.json_report import load_schema, to_json_dict
from workbench.reports.markdown_report import esc
from workbench.robustness import load_robustness, results_json, run_robustness

RESAMPLES = 50


@pytest.fixture(scope="module")
def robust(report_db, tmp_path_factory):
    """A copy of the report database where both keyword runs have a small robustness suite stored (and the cosine
    run a second perturbation seed, which the report must not mix in)."""
    path = tmp_path_factory.mktemp("report-robustness") / "wb.duckdb"
    shutil.copy(report_db.path, path)
    run_robustness(report_db.cosine, suite="gaussian_blur,keyboard_typo", severities=(1, 3), seed=0, db=path,
                   n_resamples=RESAMPLES)
    run_robustness(report_db.cosine, suite="gaussian_blur", severities=(1,), seed=7, db=path, n_resamples=RESAMPLES)
    run_robustness(report_db.contrastive, suite="keyboard_typo", severities=(1, 3), seed=0, db=path,
                   n_resamples=RESAMPLES)
    data = build_report_data([report_db.cosine, report_db.contrastive], db=path, projection=None, thumb_side=0,
                             explain=False)
    return path, data


def test_json_holds_the_stored_results_in_the_cli_shape(robust):
    path, data = robust
    report = to_json_dict(data)
    jsonschema.validate(report, load_schema(), cls=jsonschema.Draft202012Validator)
    for run in report["runs"]:
        stored = load_robustness(run["run_id"], db=path, seed=0)
        assert run["robustness_seed"] == 0
        assert run["robustness"] == results_json(stored)
        drops = {(p, e["severity"], e["metric"]): (e["value"], e["ci_low"], e["ci_high"])
                 for p, entries in run["robustness_drop"].items() for e in entries}
        assert drops == {(r.perturbation, r.severity, r.metric): (r.drop, r.drop_ci_low, r.drop_ci_high)
                         for r in stored.itertuples()}
    cosine, contrastive = report["runs"]
    assert sorted(cosine["robustness"]) == ["gaussian_blur", "keyboard_typo"]
    assert [(e["severity"], e["metric"]) for e in cosine["robustness"]["gaussian_blur"]] == [
        (s, m) for m in ("pair/accuracy", "pair/f1", "pair/roc_auc") for s in (1, 3)]  # seed 7 left out
    assert sorted(contrastive["robustness"]) == ["keyboard_typo"]


def test_html_and_markdown_show_values_drops_and_the_figure(robust):
    path, data = robust
    html_text = render_report(data, "html").content.decode("utf-8")
    md_text = render_report(data, "md").content.decode("utf-8")
    section = html_text[html_text.index('<h2 id="robustness">'):html_text.index('<h2 id="projection">')]
    assert 'href="#robustness"' in html_text
    assert "roc_auc under perturbation (severity 0 = clean" in section  # the plotly figure, inlined
    for run in data.runs:
        assert json.dumps(run.label) in section  # each variant is a trace of the figure
        for r in load_robustness(run.run_id, db=path, seed=0).itertuples():
            for text in (with_ci(r.value, r.ci_low, r.ci_high), with_ci(r.drop, r.drop_ci_low, r.drop_ci_high)):
                assert text in section and esc(text) in md_text, (r.perturbation, r.severity, r.metric)
    assert "## Robustness" in md_text and "No robustness results" not in md_text + section


def test_a_run_without_results_gets_its_command(robust):
    _, data = robust
    data.runs[1].robustness = data.runs[1].robustness.head(0)
    html_text = render_report(data, "html").content.decode("utf-8")
    assert f"<code>{robustness_command(data.runs[1].run_id)}</code>" in html_text
    assert to_json_dict(data)["runs"][1]["robustness"] == {}


def test_the_note_when_no_run_has_results(report_db):
    data = build_report_data([report_db.cosine, report_db.contrastive], db=report_db.path, projection=None,
                             thumb_side=0, explain=False)
    commands = "; ".join(f"python -m workbench robustness {r} --suite image,text --severities 1,3,5"
                         for r in (report_db.cosine, report_db.contrastive))
    note = f"No robustness results are stored for these runs; compute them with: {commands}"
    html_text = render_report(data, "html").content.decode("utf-8")
    section = html_text[html_text.index('<h2 id="robustness">'):html_text.index('<h2 id="projection">')]
    assert section == f'<h2 id="robustness">Robustness</h2><p class="muted">{note}</p>'
    md_text = render_report(data, "md").content.decode("utf-8")
    assert f"## Robustness\n\n{esc(note)}\n" in md_text
    report = to_json_dict(data)
    assert [(r["robustness"], r["robustness_drop"], r["robustness_seed"]) for r in report["runs"]] == [({}, {},
                                                                                                        None)] * 2
