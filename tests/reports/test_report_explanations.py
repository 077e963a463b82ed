"""Top mismatches carry their explanation in HTML, Markdown and JSON; a run whose models cannot be restored (or a
pair that cannot be explained) gets a one-line reason and the report is still written."""

from __future__ import annotations

import json

import jsonschema
import pytest

from workbench.models.encoders import COLOR_CENTROIDS
from workbench.reports import build_report_data, render_report, write_report
from workbench.reports.json_report import load_schema, to_json_dict
from workbench.reports.markdown_report import esc
from workbench.run.restore import RestoreError

TOP = 5  # the fixture's run has 8 false positives and 5 false negatives: some left out, all explained
DEFAULT_TOP = 3


@pytest.fixture(scope="module")
def explained(report_db):
    """The keyword-contrastive run with its top mismatches explained (built once: restoring takes seconds)."""
    return build_report_data([report_db.contrastive], db=report_db.path, projection=None, thumb_side=0, explain_top=TOP)


def _expected_ids(run, top: int = TOP) -> list[str]:
    kinds = run.mismatches["kind"]
    return [*run.mismatches.loc[kinds == "false positive", "pair_id"][:top],
            *run.mismatches.loc[kinds == "false negative", "pair_id"][:top]]


def test_top_mismatches_of_each_kind_are_explained(explained):
    (run,) = explained.runs
    expected = _expected_ids(run)
    counts = run.mismatches["kind"].value_counts()
    assert counts["false positive"] > TOP and counts["false negative"] == TOP
    assert list(run.explanations) == expected and len(expected) == 2 * TOP
    assert run.explanation_note == ""
    texts = run.mismatches.set_index("pair_id")["text"]
    for pair_id, explanation in run.explanations.items():
        assert explanation.error == "" and explanation.png.startswith(b"\x89PNG")
        assert explanation.method == "keyword_color_map + keyword_terms"
        assert all(word in texts[pair_id] for word, _ in explanation.text_tokens)
        assert len(explanation.image_relevance) > 0 and len(explanation.image_relevance[0]) > 0
    # Known answer: only the matcher's colour keywords can move a keyword score; its most confident mistakes are
    # titles without one (nothing moved), except two matches it scored low although "black" raised their score.
    moved = {(p, w) for p, e in run.explanations.items() for w, v in e.text_tokens if v != 0}
    assert {w for _, w in moved} == {"black"} and {w.lower() for _, w in moved} <= set(COLOR_CENTROIDS)
    assert all(run.explanations[p].top_words(1)[0][0] == "black" and run.explanations[p].top_words(1)[0][1] > 0
               for p, _ in moved)
    assert {kind for kind, p in zip(run.mismatches["kind"], run.mismatches["pair_id"], strict=True)
            if (p, "black") in moved} == {"false negative"}


def test_explanations_equal_the_explain_command(explained, report_db, capsys):
    from workbench.cli import main

    (run,) = explained.runs
    pair_id = next(iter(run.explanations))
    capsys.readouterr()
    assert main(["--db", str(report_db.path), "explain", run.run_id, pair_id, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    (entry,) = [m for m in to_json_dict(explained)["runs"][0]["mismatches"] if m["pair_id"] == pair_id]
    assert entry["explanation"] == {k: printed[k] for k in ("method", "text_tokens", "image_relevance")}


def test_every_format_shows_the_explanations(explained):
    (run,) = explained.runs
    report = to_json_dict(explained)
    jsonschema.validate(report, load_schema(), cls=jsonschema.Draft202012Validator)
    entries = {m["pair_id"]: m for m in report["runs"][0]["mismatches"]}
    assert {p for p, m in entries.items() if "explanation" in m} == set(run.explanations)
    assert not any("explanation_error" in m for m in entries.values())

    html_text = render_report(explained, "html").content.decode("utf-8")
    assert html_text.count('class="overlay"') == len(run.explanations)
    assert html_text.count("method: keyword_color_map + keyword_terms") == len(run.explanations)

    rendered = render_report(explained, "md", stem="r")
    md_text = rendered.content.decode("utf-8")
    overlays = sorted(n for n in rendered.extra_files if "/explanation_" in n)
    assert len(overlays) == len(run.explanations)
    for name in overlays:
        assert rendered.extra_files[name].startswith(b"\x89PNG") and f"]({name})" in md_text
    moved = [e.top_words(1)[0] for e in run.explanations.values() if e.top_words(1)]
    assert moved, "no explained mismatch has a word that moved its score"
    for word, value in moved:
        assert value != 0 and esc(f"{word} {value:+.4f}") in md_text
    assert md_text.count("no word moved the score") == sum(not e.top_words(1) for e in run.explanations.values())


def test_a_failed_restore_is_one_line_and_the_report_is_still_written(report_db, tmp_path, monkeypatch):
    from workbench.run import restore

    def evicted(run_id, **kwargs):
        raise RestoreError(f"Run {run_id}'s image embeddings are no longer in the cache.\nsecond line")

    monkeypatch.setattr(restore, "restore_run_models", evicted)
    paths = {fmt: write_report([report_db.contrastive], fmt=fmt, out=tmp_path / f"r.{fmt}", db=report_db.path,
                               projection=None) for fmt in ("html", "md", "json")}
    line = (f"Explanations unavailable: the run's models could not be restored: RestoreError: Run "
            f"{report_db.contrastive}'s image embeddings are no longer in the cache.")
    report = json.loads(paths["json"].read_text(encoding="utf-8"))
    jsonschema.validate(report, load_schema(), cls=jsonschema.Draft202012Validator)
    (run,) = report["runs"]
    assert run["explanation_note"] == line
    errors = [m["explanation_error"] for m in run["mismatches"] if "explanation_error" in m]
    assert errors == [line] * (2 * DEFAULT_TOP)  # write_report's default: the top 3 of each kind
    assert not any("explanation" in m for m in run["mismatches"])
    html_text = paths["html"].read_text(encoding="utf-8")
    assert html_text.count(line.replace("'", "&#x27;")) == 1 and "second line" not in html_text
    assert 'class="overlay"' not in html_text
    assert paths["md"].read_text(encoding="utf-8").count(esc(line)) == 1


def test_one_pair_that_cannot_be_explained_keeps_the_others(report_db, monkeypatch):
    import workbench.explain as explain

    real = explain.explain_pair
    data = build_report_data([report_db.contrastive], db=report_db.path, projection=None, thumb_side=0, explain=False)
    broken = _expected_ids(data.runs[0], DEFAULT_TOP)[1]

    def flaky(models, pair_id, **kwargs):
        if pair_id == broken:
            raise ValueError("image file unreadable")
        return real(models, pair_id, **kwargs)

    monkeypatch.setattr(explain, "explain_pair", flaky)
    data = build_report_data([report_db.contrastive], db=report_db.path, projection=None, thumb_side=0)
    explanations = data.runs[0].explanations
    assert explanations[broken].error == "Not explained: ValueError: image file unreadable"
    assert [p for p, e in explanations.items() if not e.error] == [p for p in explanations if p != broken]
    entries = {m["pair_id"]: m for m in to_json_dict(data)["runs"][0]["mismatches"]}
    assert entries[broken]["explanation_error"] == "Not explained: ValueError: image file unreadable"
    assert "Not explained: ValueError: image file unreadable" in render_report(data, "html").content.decode()


def test_cli_no_explain_leaves_explanations_out(report_db, tmp_path, monkeypatch, capsys):
    from workbench.cli import main
    from workbench.run import restore

    def never(run_id, **kwargs):
        raise AssertionError("--no-explain must not restore the run's models")

    monkeypatch.setattr(restore, "restore_run_models", never)
    out = tmp_path / "r.json"
    assert main(["--db", str(report_db.path), "report", report_db.contrastive, "--format", "json", "--out", str(out),
                 "--no-explain"]) == 0
    (run,) = json.loads(out.read_text(encoding="utf-8"))["runs"]
    assert run["explanation_note"].startswith("Explanations not computed")
    assert not any({"explanation", "explanation_error"} & set(m) for m in run["mismatches"])
