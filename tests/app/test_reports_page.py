"""AppTest of the Reports page: pick a run, generate HTML and JSON, preview and download buttons."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = "pages/7_Reports.py"


def _generate(at, run_id: str, fmt: str):
    at.multiselect(key="reports_runs").set_value([run_id])
    at.radio(key="reports_format").set_value(fmt)
    at.button(key="reports_generate").click()
    return at.run()


def test_generate_html_and_json(app_db, open_page):
    at = open_page(PAGE).run()
    assert not at.exception
    assert at.multiselect(key="reports_runs").options  # the finished keyword run is offered
    assert not [b for b in at.get("download_button")]  # nothing before Generate

    at = _generate(at, app_db.done_run, "html")
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    buttons = at.get("download_button")
    assert len(buttons) == 6  # one per format
    (iframe,) = at.get("iframe")  # the HTML preview
    assert "Plotly.newPlot" in str(iframe.proto)

    at = _generate(at, app_db.done_run, "json")
    assert not at.exception, at.exception
    assert len(at.get("download_button")) == 6
    (preview,) = at.json
    report = json.loads(preview.value)
    assert report["schema_version"] == 1 and report["runs"][0]["run_id"] == app_db.done_run
