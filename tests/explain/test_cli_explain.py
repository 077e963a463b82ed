"""The explain CLI contract (`--json` keys and shapes, `--out` overlay) and what the app is given to show."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from workbench import cli, store
from workbench.explain import display_explanation
from workbench.run.restore import restore_run_models


def _a_positive_test_pair(db, run_id: str) -> tuple[str, float]:
    with store.connect(db) as con:
        return con.execute("SELECT s.pair_id, s.score FROM scores s JOIN pairs p USING (pair_id) WHERE s.run_id = ? "
                           "AND s.split = 'test' AND p.label = 1 ORDER BY s.pair_id LIMIT 1", [run_id]).fetchone()


def test_explain_json_contract(two_runs_db, capsys, tmp_path) -> None:
    pair_id, stored = _a_positive_test_pair(two_runs_db.path, two_runs_db.kwc_run)
    out = tmp_path / "overlay.png"
    code = cli.main(["--db", str(two_runs_db.path), "explain", two_runs_db.kwc_run, pair_id, "--json",
                     "--out", str(out)])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert {"score", "image_relevance", "text_tokens", "method"} <= set(payload)
    assert payload["score"] == pytest.approx(stored, abs=1e-5)
    grid = payload["image_relevance"]
    assert isinstance(grid, list) and len(grid) > 1 and all(isinstance(row, list) and len(row) == len(grid[0])
                                                             for row in grid)
    assert all(isinstance(v, float) for row in grid for v in row)
    assert payload["text_tokens"] and all(isinstance(w, str) and isinstance(a, float)
                                          for w, a in payload["text_tokens"])
    assert payload["method"] == "keyword_color_map + keyword_terms"
    with Image.open(out) as overlay:
        assert overlay.format == "PNG" and overlay.size[0] > 300


def test_explain_errors_are_readable(two_runs_db, capsys) -> None:
    assert cli.main(["--db", str(two_runs_db.path), "explain", two_runs_db.kwc_run, "no-such-pair", "--json"]) == 2
    assert "not in this run's eval set" in capsys.readouterr().err
    assert cli.main(["--db", str(two_runs_db.path), "explain", "no-such-run", "x"]) == 2
    assert "not found" in capsys.readouterr().err


def test_the_app_gets_an_overlay_png_and_the_words(two_runs_db) -> None:
    models = restore_run_models(two_runs_db.kwc_run, db=two_runs_db.path)
    pair_id, stored = _a_positive_test_pair(two_runs_db.path, two_runs_db.kwc_run)
    shown = display_explanation(models, pair_id)
    assert shown.png.startswith(b"\x89PNG") and shown.score == pytest.approx(stored, abs=1e-5)
    text = models.text(models.pair(pair_id)["text_id"])
    assert [w for w, _ in shown.tokens] and all(w in text for w, _ in shown.tokens)
    assert shown.method == "keyword_color_map + keyword_terms" and shown.reasons == {}
    assert np.isfinite([a for _, a in shown.tokens]).all()
