"""PDF report for a meeting: a first-page summary, then one page per section, every text wrapped inside its page.

Page 1 holds the leaderboard (each metric with its 95% CI, the change against the baseline with its Holm-adjusted
p-value) and the ROC, precision–recall and reliability curves. Then: paired tests and flips, every headline metric
side by side, operating points with confusion matrices and calibration, slices, retrieval, the joint space, top
mismatches and the reproducibility card. Runs are called A, B, C… on the pages, with a legend giving each one's
full label, so that tables stay narrow.

Pages are A4 landscape matplotlib figures (``PdfPages``) in a proportional font, with Noto Sans CJK as the
fallback for Chinese when installed. Text is measured with the font it is drawn in (through an Agg renderer) and
wrapped to its cell or column; a table that does not fit continues on the next page, its header repeated.
"""

from __future__ import annotations

import io
import re
import string
from dataclasses import replace
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure, SubFigure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import Rectangle

from workbench.evaluation.compare import format_p_value
from workbench.reports import common, static
from workbench.reports.data import ReportData, RunReport

WIDTH, HEIGHT = static.PAGE  # inches
MARGIN = 0.5
BODY_PT = 8.5
SMALL_PT = 7.5
TITLE_PT = 15
HEADING_PT = 11
LINE = 1.3  # line height as a multiple of the font size
CELL_PAD_PT = 4.0
SUMMARY_METRICS = ("pair/roc_auc", "pair/f1", "pair/accuracy", "t2i/success@5", "i2t/success@5", "pair/ece")
SUMMARY_TESTS = ("pair/roc_auc", "pair/f1")
MISMATCHES_PER_RUN = 4
HEADER_GREY = "#e8eaee"
RULE_GREY = "#c8ccd2"


# ------------------------------------------------------------------------------------------------ measuring text
@lru_cache(maxsize=8)
def _font(size: float, bold: bool) -> FontProperties:
    return FontProperties(size=size, weight="bold" if bold else "normal")


@lru_cache(maxsize=1)
def _renderer():
    """An Agg renderer at 72 dpi, so measured pixels are points; it resolves the same font fallback as the PDF."""
    return FigureCanvasAgg(Figure(figsize=(1, 1), dpi=72)).get_renderer()


@lru_cache(maxsize=20_000)
def text_width(text: str, size: float, bold: bool = False) -> float:
    """Width of one line of ``text`` in points, in the report's font."""
    if not text:
        return 0.0
    width, _, _ = _renderer().get_text_width_height_descent(static.safe(text), _font(size, bold), ismath=False)
    return float(width)


def _break_word(word: str, width: float, size: float, bold: bool) -> list[str]:
    """A word wider than ``width`` cut into pieces that fit (hashes, paths, and CJK text, which has no spaces)."""
    pieces, current = [], ""
    for char in word:
        if current and text_width(current + char, size, bold) > width:
            pieces.append(current)
            current = ""
        current += char
    return pieces + ([current] if current else [])


def wrap(text: object, width: float, size: float, *, bold: bool = False, max_lines: int | None = None) -> list[str]:
    """``text`` as lines no wider than ``width`` points (at ``size``); beyond ``max_lines`` the last line ends
    with an ellipsis."""
    lines: list[str] = []
    for paragraph in str("" if text is None else text).split("\n"):
        current = ""
        for word in re.split(r"\s+", paragraph.strip()):
            if not word:
                continue
            candidate = f"{current} {word}" if current else word
            if text_width(candidate, size, bold) <= width:
                current = candidate
                continue
            if current:
                lines.append(current)
            pieces = _break_word(word, width, size, bold) if text_width(word, size, bold) > width else [word]
            lines += pieces[:-1]
            current = pieces[-1]
        lines.append(current)
    if max_lines is not None and len(lines) > max_lines:
        last = lines[max_lines - 1]
        while last and text_width(last + "…", size, bold) > width:
            last = last[:-1]
        lines = lines[: max_lines - 1] + [last + "…"]
    return lines or [""]


# ------------------------------------------------------------------------------------------------------ pages
class Sheet:
    """One A4-landscape page with a title, a footer and a cursor (``y``, inches from the bottom) that paragraphs,
    tables and charts advance."""

    def __init__(self, report_title: str, title: str) -> None:
        self.fig = Figure(figsize=static.PAGE)
        self.left, self.right = MARGIN, WIDTH - MARGIN
        self.bottom = MARGIN + 0.25  # above the footer
        self.y = HEIGHT - MARGIN
        self.paragraph(title, size=TITLE_PT, bold=True, after=0.08)
        self.fig.text(self.left / WIDTH, (MARGIN - 0.05) / HEIGHT, static.safe(report_title, max_len=120),
                      fontsize=SMALL_PT, color="#777777", va="bottom")

    @property
    def width_pt(self) -> float:
        return (self.right - self.left) * 72

    def _text(self, x: float, y: float, text: str, size: float, **kwargs) -> None:
        self.fig.text(x / WIDTH, y / HEIGHT, static.safe(text), fontsize=size, va="top", ha="left", **kwargs)

    def paragraph(self, text: object, *, size: float = BODY_PT, bold: bool = False, color: str = "black",
                  after: float = 0.06, max_lines: int | None = None) -> None:
        """Wrapped text across the page's width."""
        lines = wrap(text, self.width_pt, size, bold=bold, max_lines=max_lines)
        self._text(self.left, self.y, "\n".join(lines), size, weight="bold" if bold else "normal", color=color,
                   linespacing=LINE)
        self.y -= len(lines) * size * LINE / 72 + after

    def heading(self, text: str) -> None:
        self.y -= 0.05
        self.paragraph(text, size=HEADING_PT, bold=True, after=0.04)

    def room(self) -> float:
        """Inches left above the footer."""
        return self.y - self.bottom

    def region(self, height: float) -> SubFigure:
        """A sub-figure of ``height`` inches across the page under the cursor, for a chart."""
        height = min(height, self.room())
        # a sub-figure's place comes from its grid's ratios (not from the grid's margins): a 3 × 3 grid whose
        # middle cell is the region
        grid = self.fig.add_gridspec(3, 3, width_ratios=[self.left, self.right - self.left, WIDTH - self.right],
                                     height_ratios=[HEIGHT - self.y, height, self.y - height], wspace=0, hspace=0)
        self.y -= height
        return self.fig.add_subfigure(grid[1, 1])


def _column_widths(natural: list[float], available: float) -> list[float]:
    """Natural widths when they fit, else narrow columns keep theirs and wide ones share the rest (water-filling)."""
    if sum(natural) <= available:
        return natural
    widths = list(natural)
    open_columns = set(range(len(natural)))
    while open_columns:
        share = (available - sum(w for i, w in enumerate(widths) if i not in open_columns)) / len(open_columns)
        narrow = {i for i in open_columns if natural[i] <= share}
        if not narrow:
            for i in open_columns:
                widths[i] = share
            break
        open_columns -= narrow
    return widths


def draw_table(sheet: Sheet, frame: pd.DataFrame, *, size: float = BODY_PT, max_lines: int = 4,
               first_bold: bool = False) -> pd.DataFrame:
    """Draw ``frame`` (strings) under the cursor with wrapped cells; returns the rows that did not fit."""
    header = [str(c) for c in frame.columns]
    cells = [["" if pd.isna(v) else str(v) for v in row] for row in frame.astype(object).itertuples(index=False)]
    pad = CELL_PAD_PT
    natural = [max([text_width(h, size, True)] + [text_width(row[i], size, first_bold and i == 0)
                                                  for row in cells]) + 2 * pad for i, h in enumerate(header)]
    widths = _column_widths([min(w, 0.45 * sheet.width_pt) for w in natural], sheet.width_pt)
    line_in = size * LINE / 72

    def draw_row(values: list[str], bold_row: bool, shade: str | None) -> bool:
        wrapped = [wrap(v, w - 2 * pad, size, bold=bold_row or (first_bold and i == 0), max_lines=max_lines)
                   for i, (v, w) in enumerate(zip(values, widths, strict=True))]
        height = max(len(lines) for lines in wrapped) * line_in + 2 * pad / 72
        if sheet.y - height < sheet.bottom:
            return False
        x = sheet.left
        if shade:
            sheet.fig.add_artist(Rectangle((sheet.left / WIDTH, (sheet.y - height) / HEIGHT),
                                           (sheet.right - sheet.left) / WIDTH, height / HEIGHT,
                                           transform=sheet.fig.transFigure, color=shade, lw=0, zorder=0))
        for i, (lines, w) in enumerate(zip(wrapped, widths, strict=True)):
            sheet._text(x + pad / 72, sheet.y - pad / 72, "\n".join(lines), size, linespacing=LINE,
                        weight="bold" if bold_row or (first_bold and i == 0) else "normal")
            x += w / 72
        sheet.y -= height
        sheet.fig.add_artist(Rectangle((sheet.left / WIDTH, sheet.y / HEIGHT), (sheet.right - sheet.left) / WIDTH,
                                       0, transform=sheet.fig.transFigure, color=RULE_GREY, lw=0.5))
        return True

    if not draw_row(header, True, HEADER_GREY):
        return frame
    for index, row in enumerate(cells):
        if not draw_row(row, False, None):
            return frame.iloc[index:]
    sheet.y -= 0.12
    return frame.iloc[0:0]


class Document:
    """The report's pages in order; a table that overflows continues on a new page titled "(continued)"."""

    def __init__(self, pdf: PdfPages, title: str) -> None:
        self.pdf, self.title = pdf, title
        self.sheet: Sheet | None = None
        self.section = ""

    def page(self, title: str) -> Sheet:
        self.flush()
        self.section = title
        self.sheet = Sheet(self.title, title)
        return self.sheet

    def table(self, frame: pd.DataFrame, **kwargs) -> None:
        rest = draw_table(self.sheet, frame, **kwargs)
        while not rest.empty:
            before = len(rest)
            self.page(f"{self.section.removesuffix(' (continued)')} (continued)")
            rest = draw_table(self.sheet, rest, **kwargs)
            if len(rest) == before:  # one row taller than a page: cut it rather than loop
                rest = rest.iloc[1:]

    def flush(self) -> None:
        if self.sheet is not None:
            self.pdf.savefig(self.sheet.fig)
            self.sheet = None


# ------------------------------------------------------------------------------------------------------ content
def _aliased(data: ReportData) -> ReportData:
    """A copy whose runs are called "A · name-or-config" (the caller's data is not changed)."""
    letters = string.ascii_uppercase
    runs = [replace(run, alias=f"{letters[i % 26]}{'' if i < 26 else i // 26} · {run.name or run.config_name}")
            for i, run in enumerate(data.runs)]
    return replace(data, runs=runs)


def _short(run: RunReport) -> str:
    return run.alias.split(" · ")[0]


def legend(data: ReportData) -> pd.DataFrame:
    """Each run's letter and its full label: name, config, eval set, run id and when it finished."""
    return pd.DataFrame([{"run": _short(r), "name": r.name or "", "config": r.config_name, "eval set": r.eval_set,
                          "run id": r.run_id, "finished": (r.finished_at or "")[:19].replace("T", " ")}
                         for r in data.runs])


def value_ci(value: object, low: object, high: object, digits: int = 3) -> str:
    """``0.813 [0.803, 0.822]``: three digits keep a meeting's tables narrow (the other formats give four)."""
    has_ci = common.fmt(low) != "" and common.fmt(high) != ""
    return common.fmt(value, digits) + (f" [{common.fmt(low, digits)}, {common.fmt(high, digits)}]" if has_ci else "")


def _ci(entry: dict, name: str) -> str:
    low, high = entry.get(f"{name} CI") or (None, None)
    return value_ci(entry.get(name), low, high)


def summary_table(data: ReportData) -> pd.DataFrame:
    """The leaderboard: summary metrics with 95% CIs and, per compared run, Δ against the baseline with its
    Holm-adjusted p-value (``*`` when below 0.05)."""
    if data.comparison is None:
        run = data.runs[0]
        return pd.DataFrame([{"metric": f"{common.direction(m)} {m}".strip(),
                              "value [95% CI]": value_ci(*row[["value", "ci_low", "ci_high"]].iloc[0])}
                             for m in SUMMARY_METRICS if not (row := run.metrics[run.metrics["name"] == m]).empty])
    tests = {t["run_id"]: t for t in data.comparison["tests"]}
    shown = [m for m in SUMMARY_METRICS if m in data.comparison["metrics"]]
    rows = []
    for run, entry in zip(data.runs, data.comparison["table"], strict=True):
        row = {"run": run.alias}
        row.update({f"{common.direction(m)} {m}".strip(): _ci(entry, m) for m in shown})
        for name in SUMMARY_TESTS:
            test = tests.get(run.run_id, {}).get(name)
            key = f"Δ {name.split('/')[1]} vs A (p Holm)"
            if entry["baseline"]:
                row[key] = "baseline"
            elif test:
                p = test.get("p_holm")
                row[key] = (f"{common.fmt(test['delta'], 3)} (p {format_p_value(p)})"
                            + (" *" if p is not None and p < 0.05 else ""))
            else:
                row[key] = ""
        rows.append(row)
    return pd.DataFrame(rows)


def metrics_side_by_side(data: ReportData) -> pd.DataFrame:
    """Every headline metric (rows) of every run (columns: value [95% CI])."""
    rows = []
    for name in common.HEADLINE:
        row = {"metric": f"{common.direction(name)} {name}".strip()}
        for run in data.runs:
            m = run.metrics[run.metrics["name"] == name]
            row[_short(run)] = "" if m.empty else value_ci(*m[["value", "ci_low", "ci_high"]].iloc[0])
        if any(row[_short(r)] for r in data.runs):
            rows.append(row)
    return pd.DataFrame(rows)


def _relabel(frame: pd.DataFrame, data: ReportData) -> pd.DataFrame:
    """Run ids in a ``run`` / ``run_id`` column replaced by the runs' letters."""
    letters = {r.run_id: _short(r) for r in data.runs} | {r.label: _short(r) for r in data.runs}
    frame = frame.copy()
    for column in ("run", "run_id"):
        if column in frame:
            frame[column] = frame[column].map(lambda v: letters.get(v, v))
    return frame.rename(columns={"run_id": "run"}).drop(columns=["config"], errors="ignore")


def _chart(sheet: Sheet, height: float, draw, *, left: float = 0.75, right: float = 0.2, bottom: float = 0.6,
           top: float = 0.35, wspace: float = 0.3) -> None:
    """A chart in a region of the page: ``draw(subfigure)``, then margins (inches) for ticks, labels and titles."""
    region = sheet.region(height)
    draw(region)
    w, h = (sheet.right - sheet.left), height
    region.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h, wspace=wspace)


def _mismatch_strip(sheet: Sheet, run: RunReport) -> None:
    """One run's top false positives and false negatives: thumbnails with wrapped captions."""
    from PIL import Image

    rows = run.mismatches.groupby("kind", sort=False).head(MISMATCHES_PER_RUN // 2).head(MISMATCHES_PER_RUN)
    sheet.paragraph(run.alias, size=HEADING_PT - 1, bold=True, after=0.03)
    if rows.empty:
        sheet.paragraph("No mismatches on the test split.", size=SMALL_PT)
        return
    cell = (sheet.right - sheet.left) / MISMATCHES_PER_RUN
    thumb = 1.0
    caption_lines = 4
    height = thumb + caption_lines * SMALL_PT * LINE / 72 + 0.1
    if sheet.room() < height:
        return
    for k, row in enumerate(rows.to_dict("records")):
        x = sheet.left + k * cell
        if row.get("thumbnail"):
            ax = sheet.fig.add_axes([x / WIDTH, (sheet.y - thumb) / HEIGHT, thumb / WIDTH, thumb / HEIGHT])
            ax.imshow(Image.open(io.BytesIO(row["thumbnail"])))
            ax.axis("off")
        text_x = x + thumb + 0.08
        caption = f"{row['kind']} · score {common.fmt(row['score'], 3)} · {row.get('pair_kind') or ''}\n{row['text']}"
        lines = wrap(caption, (cell - thumb - 0.15) * 72, SMALL_PT, max_lines=caption_lines + 2)
        sheet._text(text_x, sheet.y, "\n".join(lines), SMALL_PT, linespacing=LINE)
    sheet.y -= max(thumb, (caption_lines + 2) * SMALL_PT * LINE / 72) + 0.12


def _projections(sheet: Sheet, data: ReportData) -> None:
    runs = data.runs[:3]
    region = sheet.region(min(sheet.room(), 4.6))
    for sub, run in zip(np.atleast_1d(region.subfigures(1, len(runs))), runs, strict=True):
        static.projection_figure(run, fig=sub)


REPRODUCIBILITY_FIELDS = ("run id", "config", "config fingerprint", "eval set", "eval-set content hash",
                          "image encoder", "text encoder", "seed", "device", "torch", "git SHA", "config file",
                          "recreate with")


def reproducibility_table(data: ReportData) -> pd.DataFrame:
    """The reproducibility card's key fields (rows) for every run (columns)."""
    cards = {_short(run): dict(common.environment_rows(run)) for run in data.runs}
    rows = [{"field": field, **{letter: card.get(field, "") for letter, card in cards.items()}}
            for field in REPRODUCIBILITY_FIELDS]
    return pd.DataFrame([row for row in rows if any(row[k] for k in cards)])


def render_pdf(data: ReportData, path: Path) -> Path:
    """Write the PDF report to ``path``."""
    static.configure_fonts()
    data = _aliased(data)
    with PdfPages(path, metadata={"Title": data.title, "Creator": "matching workbench",
                                  "CreationDate": datetime.now().astimezone()}) as pdf:
        doc = Document(pdf, data.title)
        sheet = doc.page(data.title)
        eval_sets = ", ".join(dict.fromkeys(r.eval_set for r in data.runs))
        sheet.paragraph(f"Generated {data.generated_at} · {len(data.runs)} run(s) on {eval_sets} · test split, "
                        "95% bootstrap CIs over products" + (" · baseline A; Δ with Holm-adjusted p of the "
                                                             "clustered paired tests, * p < 0.05"
                                                             if data.comparison else ""),
                        size=SMALL_PT, color="#444444")
        for warning in dict.fromkeys(info.get("leakage_warning") for info in data.eval_sets.values()):
            if warning:
                sheet.paragraph(f"Warning: {warning}", size=SMALL_PT, color="#a33", max_lines=3)
        draw_table(sheet, summary_table(data), first_bold=True)
        draw_table(sheet, legend(data), size=SMALL_PT, max_lines=2)
        _chart(sheet, max(sheet.room(), 2.4), lambda fig: static.curves_figure(data, fig=fig), top=0.3)

        if data.comparison is not None:
            doc.page("Paired tests against the baseline (A)")
            doc.table(_relabel(common.tests_table(data), data))
            doc.sheet.heading("Flips: test pairs one run gets right and the other wrong")
            doc.table(_relabel(common.flips_table(data), data))

        doc.page("Every headline metric (test split, 95% CIs)")
        doc.sheet.paragraph("↑ higher is better, ↓ lower is better.", size=SMALL_PT, color="#444444")
        doc.table(metrics_side_by_side(data), size=SMALL_PT + 0.5, first_bold=True)

        sheet = doc.page("Operating points and calibration")
        _chart(sheet, 2.4, lambda fig: static.confusion_figure(data, fig=fig), left=0.9, bottom=0.45, top=0.3,
               wspace=0.6)
        ops = pd.DataFrame([{"run": r.alias, **common.operating_point(r)} for r in data.runs])
        doc.table(ops, size=SMALL_PT)
        doc.sheet.paragraph(common.CALIBRATION_NOTE, size=SMALL_PT, color="#444444")
        doc.table(_relabel(common.calibration_table(data), data), size=SMALL_PT)

        sheet = doc.page("Slices: where each run fails")
        sheet.paragraph(common.SLICES_NOTE, size=SMALL_PT, color="#444444")
        _chart(sheet, sheet.room(), lambda fig: static.slices_figure(data, fig=fig, max_slices=22), left=2.0,
               bottom=0.5, top=0.3)

        sheet = doc.page("Retrieval (test gallery)")
        sheet.paragraph("The values with their CIs are on the page of every headline metric.", size=SMALL_PT,
                        color="#444444")
        _chart(sheet, min(sheet.room(), 5.0), lambda fig: static.retrieval_bar_figure(data, fig=fig), bottom=0.9)

        if any(r.projection is not None or r.projection_note for r in data.runs):
            sheet = doc.page(f"Joint embedding space ({data.projection_method.upper()}, test items)")
            _projections(sheet, data)

        sheet = doc.page("Top mismatches (test split)")
        for run in data.runs:
            _mismatch_strip(doc.sheet, run)
            if doc.sheet.room() < 1.6 and run is not data.runs[-1]:
                doc.page("Top mismatches (continued)")

        doc.page("Reproducibility")
        doc.sheet.paragraph("Each run's config is written beside this report; the command recreates the run.",
                            size=SMALL_PT, color="#444444")
        doc.table(reproducibility_table(data), size=SMALL_PT, first_bold=True, max_lines=3)
        for name, info in data.eval_sets.items():
            doc.table(pd.DataFrame(common.eval_set_rows(info), columns=["eval set", name]), size=SMALL_PT,
                      first_bold=True, max_lines=3)
        doc.flush()
    return path
