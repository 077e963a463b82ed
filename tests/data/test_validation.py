from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from workbench.data.validation import ISSUE_COLUMNS, RowIssue, ValidationReport


def _report() -> ValidationReport:
    report = ValidationReport(n_rows=5)
    report.add(3, "image", "missing_file", "file not found: a.jpg")
    report.add(0, "source", "fallback_encoding", "decoded as GB18030", severity="warning")
    report.add(1, "text", "empty_text", "text is empty")
    report.add(3, "label", "non_numeric_label", "label 'maybe' is not 0/1")
    return report


def test_row_issue_is_frozen_and_checked() -> None:
    issue = RowIssue(2, "text", "error", "empty_text", "fill it in")
    with pytest.raises(dataclasses.FrozenInstanceError):
        issue.row = 3  # type: ignore[misc]
    with pytest.raises(ValueError, match="severity"):
        RowIssue(2, "text", "fatal", "empty_text", "x")
    with pytest.raises(ValueError, match="unknown issue code 'oops'"):
        RowIssue(2, "text", "error", "oops", "x")


def test_counts_and_ok() -> None:
    report = _report()
    assert report.bad_rows == {1, 3}
    assert report.n_bad_rows == 2
    assert len(report.errors) == 3 and len(report.warnings) == 1
    assert not report.ok
    warnings_only = ValidationReport(n_rows=2)
    warnings_only.add(0, "source", "fallback_encoding", "decoded as GB18030", severity="warning")
    assert warnings_only.ok and warnings_only.n_bad_rows == 0


def test_file_level_error_is_not_a_bad_row_but_not_ok() -> None:
    report = ValidationReport(n_rows=1)
    report.add(0, "image", "missing_column", "no column for 'image'")
    assert report.n_bad_rows == 0 and not report.ok


def test_to_frame_sorted_by_row() -> None:
    frame = _report().to_frame()
    assert tuple(frame.columns) == ISSUE_COLUMNS
    assert frame["row"].tolist() == [0, 1, 3, 3]
    assert frame["code"].tolist() == ["fallback_encoding", "empty_text", "missing_file", "non_numeric_label"]
    assert ValidationReport().to_frame().empty


def test_to_csv_roundtrip(tmp_path: Path) -> None:
    report = ValidationReport(n_rows=1)
    report.add(1, "text", "empty_text", "标题为空; fill it in")
    report.to_csv(tmp_path / "issues.csv")
    back = pd.read_csv(tmp_path / "issues.csv", encoding="utf-8")
    assert back.to_dict("records") == [
        {
            "row": 1,
            "field": "text",
            "severity": "error",
            "code": "empty_text",
            "message": "标题为空; fill it in",
        }
    ]


def test_summary() -> None:
    assert _report().summary() == (
        "5 rows, 2 bad; 3 errors (empty_text ×1, missing_file ×1, non_numeric_label ×1), "
        "1 warnings (fallback_encoding ×1)"
    )
    assert ValidationReport(n_rows=4).summary() == "4 rows, 0 bad; 0 errors, 0 warnings"
