"""The CLI contract: ``python -m workbench robustness RUN_ID --suite image,text [--severities 1,3,5] --json``."""

from __future__ import annotations

import json

from workbench.cli import main
from workbench.robustness import METRICS, SUITES


def test_json_maps_each_perturbation_to_its_severity_rows(robust_copy, capsys) -> None:
    code = main(["--db", str(robust_copy.path), "robustness", robust_copy.run_id, "--suite", "image,text",
                 "--severities", "1,5", "--n-resamples", "50", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    payload = json.loads(captured.out)
    assert list(payload) == [*SUITES["image"], *SUITES["text"]]
    for rows in payload.values():
        assert all(list(row) == ["severity", "metric", "value", "ci_low", "ci_high"] for row in rows)
        assert sorted((row["severity"], row["metric"]) for row in rows) == sorted(
            (s, m) for s in (1, 5) for m in METRICS)
        for row in rows:
            assert 0.0 <= row["ci_low"] <= row["ci_high"] <= 1.0 and 0.0 <= row["value"] <= 1.0
    assert "%|" not in captured.err  # no progress bar when stderr is not a terminal


def test_table_output_and_bad_input_exit_codes(robust_copy, capsys) -> None:
    db = str(robust_copy.path)
    assert main(["--db", db, "robustness", robust_copy.run_id, "--suite", "identity", "--severities", "2",
                 "--n-resamples", "20"]) == 0
    out = capsys.readouterr().out
    assert "identity" in out and "pair/roc_auc" in out and "drop" in out
    assert main(["--db", db, "robustness", robust_copy.run_id, "--suite", "fog"]) == 2
    assert "neither a suite nor a perturbation" in capsys.readouterr().err
    assert main(["--db", db, "robustness", robust_copy.run_id, "--severities", "0,9"]) == 2
    assert "must be integers from [1, 2, 3, 4, 5]" in capsys.readouterr().err
    assert main(["--db", db, "robustness", "missing-run"]) == 2
    assert "not found" in capsys.readouterr().err
