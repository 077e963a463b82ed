"""One entry point for every format: :func:`write_report` (CLI) and :func:`render_report` (in memory, the app)."""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from workbench.reports.data import ReportData, assign_commands, build_report_data, write_config_sidecars

FORMATS: dict[str, tuple[str, str]] = {  # format -> (file extension, MIME type)
    "html": (".html", "text/html"),
    "pdf": (".pdf", "application/pdf"),
    "md": (".md", "text/markdown"),
    "json": (".json", "application/json"),
    "csv": (".csv", "text/csv"),
    "parquet": (".parquet", "application/vnd.apache.parquet"),
}
EXPLAINED_FORMATS: tuple[str, ...] = ("html", "md", "json")  # formats whose top mismatches carry explanations


@dataclass
class RenderedReport:
    """A report rendered in memory: the main file plus files that go next to it (figures, config sidecars)."""

    fmt: str
    file_name: str
    content: bytes
    mime: str
    extra_files: dict[str, bytes] = field(default_factory=dict)  # relative path -> bytes

    def as_zip(self) -> bytes:
        """The main file and its extra files in one zip (how the app offers a Markdown report)."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(self.file_name, self.content)
            for name, blob in self.extra_files.items():
                archive.writestr(name, blob)
        return buffer.getvalue()


def _check_format(fmt: str) -> str:
    fmt = str(fmt).lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"format={fmt!r} is not supported; allowed: {list(FORMATS)}")
    return fmt


def _render_to(data: ReportData, fmt: str, path: Path) -> dict[str, bytes]:
    """Write the main file at ``path``; return the extra files (relative to ``path.parent``) to write beside it."""
    if fmt == "html":
        from workbench.reports.html_report import render_html

        path.write_text(render_html(data), encoding="utf-8")
    elif fmt == "pdf":
        from workbench.reports.pdf_report import render_pdf

        render_pdf(data, path)
    elif fmt == "md":
        from workbench.reports.markdown_report import render_markdown

        files_dir = f"{path.stem}_files"
        text, images = render_markdown(data, files_dir)
        path.write_text(text, encoding="utf-8")
        return {f"{files_dir}/{name}": blob for name, blob in images.items()}
    elif fmt == "json":
        from workbench.reports.json_report import render_json

        path.write_text(render_json(data), encoding="utf-8")
    elif fmt == "csv":
        from workbench.reports.tables import write_csv

        write_csv(data, path)
    else:
        from workbench.reports.tables import write_parquet

        write_parquet(data, path)
    return {}


def resolve_out(out: str | os.PathLike[str], fmt: str, run_ids: list[str]) -> Path:
    """``out`` as a file path; a directory (existing, or ending in a separator) gets ``report-<run>.<ext>``."""
    ext = FORMATS[fmt][0]
    text = os.fspath(out)
    path = Path(text).expanduser()
    if path.is_dir() or text.endswith(("/", os.sep)):
        name = f"report-{run_ids[0]}" + (f"-vs-{len(run_ids) - 1}" if len(run_ids) > 1 else "")
        path = path / f"{name}{ext}"
    elif not path.suffix:
        path = path.with_suffix(ext)
    return path


def write_report(run_ids: list[str] | str, *, fmt: str, out: str | os.PathLike[str], db=None,
                 title: str | None = None, projection: str | None = "pca", data: ReportData | None = None,
                 explain: bool = True) -> Path:
    """Export a report of ``run_ids`` (the first is the baseline) in ``fmt`` to ``out``; returns the file written.

    Next to it: each run's config as ``<name>.<run_id>.config.toml`` (the reproducibility card's command uses it)
    and, for Markdown, the figures in ``<name>_files/``. ``explain``: for HTML, Markdown and JSON, explain the top
    mismatches (rebuilds each run's models; see :func:`build_report_data`). Ignored when ``data`` is given.
    """
    fmt = _check_format(fmt)
    run_ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
    path = resolve_out(out, fmt, run_ids)
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        visual = fmt in ("html", "pdf", "md")
        data = build_report_data(run_ids, db=db, title=title, projection=projection if visual else None,
                                 thumb_side=96 if visual else 0, compare=fmt not in ("csv", "parquet"),
                                 explain=explain and fmt in EXPLAINED_FORMATS)
    write_config_sidecars(data, path)
    for name, blob in _render_to(data, fmt, path).items():
        target = path.parent / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob)
    return path


def render_report(data: ReportData, fmt: str, *, stem: str = "report") -> RenderedReport:
    """Render ``data`` in memory (nothing is left on disk): the app's previews and download buttons."""
    import tempfile

    fmt = _check_format(fmt)
    ext, mime = FORMATS[fmt]
    # Shallow copies: the caller's (possibly cached) ReportData is never mutated.
    data = replace(data, runs=[replace(run) for run in data.runs])
    assign_commands(data, stem)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{stem}{ext}"
        extras = _render_to(data, fmt, path)
        content = path.read_bytes()
    extras.update({run.config_file: run.config_toml.encode("utf-8") for run in data.runs})
    return RenderedReport(fmt=fmt, file_name=path.name, content=content, mime=mime, extra_files=extras)
