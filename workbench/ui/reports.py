"""Streamlit helpers of the Reports page: run choice, cached report rendering, previews and download buttons."""

from __future__ import annotations

import io
import json

import pandas as pd
import streamlit as st

from workbench.reports import FORMATS, RenderedReport
from workbench.ui import cache

FORMAT_LABELS = {"html": "HTML (interactive, self-contained)", "pdf": "PDF", "md": "Markdown (+ PNG figures, zip)",
                 "json": "JSON (versioned schema)", "csv": "CSV (per pair)", "parquet": "Parquet (per pair)"}
PROJECTIONS = {"pca": "PCA (fast)", "umap": "UMAP (slower, first use compiles)", "none": "leave out"}
PREVIEW_ROWS = 200
STATE_KEY = "reports_request"


def rendered(db: str, req: dict, fmt: str | None = None) -> RenderedReport:
    """The requested report in ``fmt`` (default: the requested format), cached per runs, metrics version and
    projection."""
    run_ids = req["run_ids"]
    return cache.rendered_report(db, run_ids, req["projection"], fmt or req["fmt"], cache.metrics_version(run_ids, db),
                                 stem(run_ids))


def stem(run_ids: tuple[str, ...]) -> str:
    return f"report-{run_ids[0]}" + (f"-vs-{len(run_ids) - 1}" if len(run_ids) > 1 else "")


def choose_runs(runs: pd.DataFrame) -> list[str]:
    labels = dict(zip(runs["run_id"], runs["label"], strict=True))
    default = [r for r in st.session_state.get("selected_runs", []) if r in labels] or list(runs["run_id"][:1])
    return st.multiselect("Runs (the first one is the baseline of the comparison)", list(labels),
                          default=default, format_func=labels.get, key="reports_runs")


def request(run_ids: list[str], fmt: str, projection: str) -> dict:
    """What the Generate button stores in session state (ids and small values only)."""
    return {"run_ids": tuple(run_ids), "fmt": fmt, "projection": projection}


def download_bytes(report: RenderedReport) -> tuple[bytes, str, str]:
    """Markdown downloads as a zip (text + figures + config); other formats as their single file."""
    if report.fmt == "md":
        return report.as_zip(), report.file_name.rsplit(".", 1)[0] + ".zip", "application/zip"
    return report.content, report.file_name, report.mime


def preview(report: RenderedReport) -> None:
    """Show the generated report: HTML in an iframe, Markdown as (escaped) Markdown, JSON, or the table's head."""
    if report.fmt == "html":
        # The report is our own markup (untrusted text escaped, a CSP forbidding any network access), so it may
        # run its inlined plotly.js. st.iframe replaces the deprecated st.components.v1.html where available.
        html_text = report.content.decode("utf-8")
        if hasattr(st, "iframe"):
            st.iframe(html_text, height=800)
        else:
            import streamlit.components.v1 as components

            components.html(html_text, height=800, scrolling=True)
    elif report.fmt == "md":
        with st.container(border=True, height=800):
            st.markdown(report.content.decode("utf-8"))
            figures = {k: v for k, v in report.extra_files.items() if k.endswith(".png")}
            if figures:
                st.caption("Figures (saved next to the Markdown file):")
                for name, blob in figures.items():
                    st.image(blob, caption=name)
    elif report.fmt == "json":
        st.json(json.loads(report.content), expanded=1)
    elif report.fmt in ("csv", "parquet"):
        frame = (pd.read_csv(io.BytesIO(report.content), nrows=PREVIEW_ROWS) if report.fmt == "csv"
                 else pd.read_parquet(io.BytesIO(report.content)).head(PREVIEW_ROWS))
        st.caption(f"First {len(frame)} rows.")
        st.dataframe(frame, hide_index=True)
    else:
        st.info(f"PDF generated ({len(report.content) / 1024:.0f} KiB): use the download button.")


def download_buttons(db: str, req: dict) -> None:
    """One download button per format; formats other than the previewed one render on click (deferred)."""
    columns = st.columns(len(FORMATS))
    for column, fmt in zip(columns, FORMATS, strict=True):
        def data(fmt: str = fmt) -> bytes:
            return download_bytes(rendered(db, req, fmt))[0]

        ext = "zip" if fmt == "md" else FORMATS[fmt][0].lstrip(".")
        payload = data() if fmt == req["fmt"] else data
        column.download_button(fmt.upper(), data=payload, file_name=f"{stem(req['run_ids'])}.{ext}",
                               mime="application/zip" if fmt == "md" else FORMATS[fmt][1], key=f"reports_dl_{fmt}",
                               on_click="ignore", type="primary" if fmt == req["fmt"] else "secondary",
                               icon=":material/download:")
