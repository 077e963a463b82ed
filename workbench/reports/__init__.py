"""Evaluation reports users can share: HTML, PDF, Markdown, JSON, CSV and Parquet exports of stored runs.

``write_report(run_ids, fmt=..., out=..., db=...)`` is what ``python -m workbench report`` calls;
``build_report_data`` reads everything once from the database and ``render_report`` renders it in memory.
"""

from __future__ import annotations

from workbench.reports.data import ReportData, RunReport, build_report_data
from workbench.reports.export import FORMATS, RenderedReport, render_report, write_report

__all__ = ["FORMATS", "RenderedReport", "ReportData", "RunReport", "build_report_data", "render_report",
           "write_report"]
