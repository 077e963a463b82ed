"""Row-level validation issues of an imported eval set and the report that collects them."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

SEVERITIES = ("error", "warning")
ISSUE_COLUMNS = ("row", "field", "severity", "code", "message")
ISSUE_CODES = frozenset(
    {
        # source file
        "missing_column", "bad_encoding", "fallback_encoding", "unreadable_source", "bad_json",
        "malformed_row", "field_too_long", "import_failed",
        # images
        "empty_path", "missing_file", "zero_bytes", "not_image", "corrupt_image", "too_large",
        "path_escapes_root", "url_failed",
        # values
        "empty_text", "non_numeric_label", "invalid_label", "unknown_split",
        # consistency between rows
        "duplicate_id", "duplicate_row", "conflicting_label", "conflicting_product", "conflicting_category",
        "ignored_column", "split_leakage",
    }
)  # fmt: skip


@dataclass(frozen=True)
class RowIssue:
    """One problem found while importing; ``row`` is the 1-based data row of the source, 0 for the file."""

    row: int
    field: str
    severity: str
    code: str
    message: str

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")
        if self.code not in ISSUE_CODES:
            raise ValueError(f"unknown issue code {self.code!r}; known codes: {sorted(ISSUE_CODES)}")


@dataclass
class ValidationReport:
    """All issues of one import. A row with at least one error is a bad row; ``ok`` means no errors at all."""

    issues: list[RowIssue] = field(default_factory=list)
    n_rows: int = 0

    def add(self, row: int, field: str, code: str, message: str, *, severity: str = "error") -> None:
        self.issues.append(RowIssue(row=row, field=field, severity=severity, code=code, message=message))

    @property
    def errors(self) -> list[RowIssue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[RowIssue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def bad_rows(self) -> set[int]:
        """Data rows (≥ 1) with at least one error."""
        return {i.row for i in self.issues if i.severity == "error" and i.row > 0}

    @property
    def n_bad_rows(self) -> int:
        return len(self.bad_rows)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_frame(self) -> pd.DataFrame:
        """Issues sorted by row, one per line, columns ``ISSUE_COLUMNS``."""
        frame = pd.DataFrame([vars(i) for i in self.issues], columns=list(ISSUE_COLUMNS))
        frame["row"] = frame["row"].astype("int64")
        return frame.sort_values("row", kind="stable").reset_index(drop=True)

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        self.to_frame().to_csv(path, index=False, encoding="utf-8")

    def summary(self) -> str:
        """One line: rows, bad rows, and error/warning counts by code."""

        def counts(issues: list[RowIssue]) -> str:
            by_code = Counter(i.code for i in issues)
            return ", ".join(f"{code} ×{n}" for code, n in sorted(by_code.items()))

        errors, warnings = self.errors, self.warnings
        text = f"{self.n_rows} rows, {self.n_bad_rows} bad; {len(errors)} errors"
        if errors:
            text += f" ({counts(errors)})"
        text += f", {len(warnings)} warnings"
        if warnings:
            text += f" ({counts(warnings)})"
        return text


def issue_counts(report: pd.DataFrame) -> pd.DataFrame:
    """Issues of a report frame (:meth:`ValidationReport.to_frame`) per severity and code, with how many rows each
    touches: errors first, then the most frequent codes."""
    if report.empty:
        return pd.DataFrame(columns=["severity", "code", "rows", "issues"])
    return (report.groupby(["severity", "code"]).agg(rows=("row", "nunique"), issues=("row", "size"))
            .reset_index().sort_values(["severity", "issues"], ascending=[True, False]).reset_index(drop=True))
