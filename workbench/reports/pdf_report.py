"""PDF report: matplotlib pages (figures, tables and the reproducibility card) through ``PdfPages``."""

from __future__ import annotations

import textwrap
import unicodedata
from datetime import datetime
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from workbench.reports import common, static
from workbench.reports.data import ReportData

ROWS_PER_PAGE = 50


def _page(title: str) -> Figure:
    fig = static.new_figure(static.PAGE)
    fig.set_layout_engine("none")
    fig.text(0.04, 0.955, static.safe(title, max_len=110), fontsize=14, weight="bold", va="top")
    return fig


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(width - _width(text), 0)


def text_table(frame: pd.DataFrame, *, max_cell: int = 48) -> str:
    """A fixed-width text table (CJK counted double width); one Text artist per table keeps PDFs fast."""
    if frame.empty:
        return "(none)"
    header = [str(c) for c in frame.columns]
    rows = [[str(v).replace("\n", " ") for v in record]
            for record in frame.astype(object).where(frame.notna(), "").itertuples(index=False)]
    rows = [[v if len(v) <= max_cell else v[: max_cell - 1] + "…" for v in row] for row in rows]
    widths = [max(_width(x) for x in column) for column in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(_pad(c, w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(header), "  ".join("─" * w for w in widths), *(line(r) for r in rows)])


def _table(fig: Figure, frame: pd.DataFrame, xy: tuple[float, float], *, fontsize: float = 7,
           max_cell: int = 48) -> None:
    fig.text(xy[0], xy[1], static.safe(text_table(frame, max_cell=max_cell)), fontsize=fontsize, va="top",
             ha="left", family=static.MONO_FONTS)


def _chunks(frame: pd.DataFrame, size: int = ROWS_PER_PAGE):
    for start in range(0, max(len(frame), 1), size):
        yield start, frame.iloc[start:start + size]


def _figure_page(pdf: PdfPages, title: str, fig: Figure) -> None:
    if not fig.get_suptitle():
        fig.suptitle(static.safe(title), fontsize=11, weight="bold")
    pdf.savefig(fig)


def _text_page(pdf: PdfPages, title: str, lines: list[str], *, fontsize: float = 7.5, mono: bool = False) -> None:
    per_page = int(0.86 * static.PAGE[1] * 72 / (fontsize * 1.35))
    for start in range(0, max(len(lines), 1), per_page):
        page = _page(title if start == 0 else f"{title} (continued)")
        page.text(0.04, 0.9, "\n".join(static.safe(line) for line in lines[start:start + per_page]),
                  fontsize=fontsize, va="top", family="monospace" if mono else None)
        pdf.savefig(page)


def render_pdf(data: ReportData, path: Path) -> Path:
    """Write the PDF report to ``path``."""
    static.configure_fonts()
    with PdfPages(path, metadata={"Title": data.title, "Creator": "matching workbench",
                                  "CreationDate": datetime.now().astimezone()}) as pdf:
        page = _page(data.title)
        page.text(0.04, 0.905, static.safe(f"Generated {data.generated_at} · {len(data.runs)} run(s)"), fontsize=9,
                  color="#555555")
        runs = pd.DataFrame([{"run": r.run_id, "config": r.config_name, "eval set": r.eval_set,
                              "eval-set hash": str(r.eval_set_hash or "")[:16], "finished": r.finished_at or ""}
                             for r in data.runs])
        _table(page, runs, (0.04, 0.88))
        if data.comparison is not None:
            board = common.leaderboard_table(data)
            for y, keep in ((0.7, ["run", "config", "pair/accuracy", "pair/f1", "pair/roc_auc", "pair/pr_auc"]),
                            (0.45, ["run", "config", "t2i/success@5", "i2t/success@5", "t2i/mrr", "i2t/mrr"])):
                _table(page, board[[c for c in keep if c in board]], (0.04, y))
        else:
            metrics = common.metrics_table(data.runs[0], names=common.HEADLINE)
            page.text(0.04, 0.72, "Headline metrics (test split, 95% bootstrap CIs)", fontsize=10, weight="bold")
            _table(page, metrics, (0.04, 0.69))
        pdf.savefig(page)

        for run in data.runs:
            for start, chunk in _chunks(common.metrics_table(run)):
                page = _page(f"Metrics — {run.label}" + (" (continued)" if start else ""))
                _table(page, chunk, (0.04, 0.9))
                op = pd.DataFrame(list(common.operating_point(run).items()), columns=["operating point", ""])
                if not start:
                    _table(page, op, (0.6, 0.9))
                    _table(page, common.confusion_table(run), (0.6, 0.6))
                pdf.savefig(page)

        if data.comparison is not None:
            for start, chunk in _chunks(common.tests_table(data)):
                page = _page("Paired tests against the baseline" + (" (continued)" if start else ""))
                _table(page, chunk, (0.04, 0.9))
                if not start:
                    page.text(0.04, 0.3, "Flips (test pairs right here and wrong in the baseline, and the reverse)",
                              fontsize=10, weight="bold")
                    _table(page, common.flips_table(data), (0.04, 0.27))
                pdf.savefig(page)

        figs = static.figures(data)
        titles = {"curves": "ROC, precision–recall and calibration", "confusion": "Confusion matrices",
                  "slices": "Slices", "retrieval": "Retrieval"}
        for name, fig in figs.items():
            if name.startswith("projection_"):
                title = "Joint embedding space"
            elif name.startswith("mismatches_"):
                title = "Top mismatches"
            else:
                title = titles[name]
            _figure_page(pdf, title, fig)

        page = _page("Calibration")
        page.text(0.04, 0.9, static.safe(common.CALIBRATION_NOTE, width=160), fontsize=8, va="top")
        _table(page, common.calibration_table(data), (0.04, 0.82))
        pdf.savefig(page)

        for run in data.runs:
            for start, chunk in _chunks(common.slice_display(run.slice_table), 40):
                page = _page(f"Slices — {run.label}" + (" (continued)" if start else ""))
                if not start:
                    page.text(0.04, 0.9, static.safe(common.SLICES_NOTE, width=160), fontsize=8, va="top")
                    page.text(0.04, 0.84, "Worst slices", fontsize=10, weight="bold")
                    _table(page, common.slice_display(run.worst_slices), (0.04, 0.82))
                    page.text(0.04, 0.66, f"Every slice (note \"{common.TOO_FEW}\": below the minimum)",
                              fontsize=10, weight="bold")
                _table(page, chunk, (0.04, 0.64 if not start else 0.9))
                pdf.savefig(page)

        for run in data.runs:
            lines = [f"{k}: {v}" for k, v in common.environment_rows(run)]
            info = data.eval_sets.get(run.eval_set, {})
            lines += ["", "Eval set:"] + [f"  {k}: {v}" for k, v in common.eval_set_rows(info)]
            lines += ["", f"Config ({run.config_file}):", ""] + run.config_toml.splitlines()
            wrapped = [w for line in lines for w in (textwrap.wrap(line, 150, subsequent_indent="    ") or [""])]
            _text_page(pdf, f"Reproducibility — {run.label}", wrapped, mono=False)
    return path
