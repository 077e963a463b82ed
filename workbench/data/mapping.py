"""What an import screen needs before it imports: a preview of the source and the mapping a person chose.

The importer guesses fields from column names (:func:`workbench.data.importers.guess_mapping`); a person then
confirms or changes each field and picks attribute columns. :func:`mapping_from_choices` turns those choices into
the importer's mapping, where every field is explicit so that unmapping a guess sticks.
:func:`preview_image_paths` shows how the first rows' image paths resolve (with thumbnails) before validating.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pandas as pd

from workbench import store
from workbench.data.archive import ArchiveError, extract_members, image_root_in, is_archive, plan_archive
from workbench.data.images import ImageError, is_url, load_image, probe_image
from workbench.data.importers import ATTR_PREFIX, guess_mapping, resolve_image_path
from workbench.data.readers import get_importer, guess_format
from workbench.data.uploads import upload_dir
from workbench.data.validation import ValidationReport

IMAGE_PREVIEW_COLUMNS = ("row", "raw_path", "resolved_path", "exists", "width", "height", "problem", "thumbnail")


@dataclass(frozen=True)
class SourcePreview:
    """A source as read by its importer: its columns, its first rows as strings and how many rows it has."""

    columns: list[str]
    rows: pd.DataFrame
    n_rows: int


def preview_source(path: str | os.PathLike[str], fmt: str | None = None, *, n_rows: int = 8,
                   db: str | os.PathLike[str] | None = None) -> SourcePreview:
    """The first ``n_rows`` rows of a source through the importer's own reader (so the preview matches the
    import: same encoding fallback, same folder captions); ``fmt`` None guesses it.

    For a ZIP archive ``fmt`` names the table's format inside it (None: the one table found) and only the table is
    unpacked (every member for the folder importer), into a private temporary folder under the database's folder
    that is removed before returning.
    """
    path = Path(path)
    if not is_archive(path):
        table = get_importer(fmt or guess_format(path)).reader(path)
    else:
        if not zipfile.is_zipfile(path):
            raise ArchiveError(f"{path.name} is not a ZIP archive (or it is damaged); re-create it")
        with zipfile.ZipFile(path) as archive, tempfile.TemporaryDirectory(
                prefix="preview-", dir=upload_dir(store.resolve_db_path(db))) as tmp:
            plan = plan_archive(archive, fmt=fmt)
            folder = Path(tmp).resolve()
            extract_members(archive, [(info, relative) for info, relative in plan.members
                                      if plan.table is None or relative == plan.table], folder)
            table = get_importer(plan.fmt).reader(folder.joinpath(*plan.table.parts) if plan.table else folder)
    rows = [values for _, values in table.rows[:n_rows]]
    return SourcePreview(list(table.columns), pd.DataFrame(rows, columns=table.columns, dtype=str), table.n_rows)


def attribute_field(column: str) -> str | None:
    """The ``attr.NAME`` field of an attribute column (``Colour (main)`` → ``attr.colour_main``), or None when the
    name has no letters or digits."""
    name = re.sub(r"[^0-9a-z]+", "_", column.lower()).strip("_")
    return ATTR_PREFIX + name if name else None


def mapping_from_choices(fields: Mapping[str, str | None], attributes: Iterable[str],
                         guessed: Mapping[str, str]) -> dict[str, str | None]:
    """The importer mapping for a person's choices.

    ``fields`` maps each field to its column or None (None unmaps a guess); ``attributes`` are the columns chosen
    as attributes. A chosen attribute column keeps the field the importer guessed for it, else gets one from its
    name; a guessed attribute column that was not chosen is unmapped.
    """
    mapping: dict[str, str | None] = dict(fields)
    chosen = list(attributes)
    guessed_attributes = {column: field for field, column in guessed.items() if field.startswith(ATTR_PREFIX)}
    for column in chosen:
        key = attribute_field(column)
        if column not in guessed_attributes and key is not None and key not in mapping:
            mapping[key] = column
    mapping.update({field: (column if column in chosen else None) for column, field in guessed_attributes.items()})
    return mapping



def _image_column(columns: list[str], mapping: Mapping[str, str | None] | None) -> str:
    """The column holding image paths: the mapping's, else the guess; an error names the form field to set."""
    mapping = dict(mapping or {})
    column = mapping["image"] if "image" in mapping else guess_mapping(columns).get("image")
    if column is None:
        raise ValueError(f"Set the Image column: no column among {columns} was recognised as image paths.")
    if column not in columns:
        raise ValueError(f"Set the Image column: {column!r} is not among the columns {columns}.")
    return column


Locate = Callable[[Path], tuple[Path | None, str]]


def _preview_row(number: int, raw: str, root: Path, locate: Locate, thumb_side: int) -> dict:
    """One preview row: where ``raw`` resolves, whether a readable image is there, its size and a thumbnail.

    ``locate`` turns a resolved path into the file to read (None when absent) and the path to show."""
    row = dict.fromkeys(IMAGE_PREVIEW_COLUMNS)
    row.update(row=number, raw_path=raw, exists=False)
    if raw and is_url(raw):
        return {**row, "resolved_path": raw, "exists": None, "problem": "a URL: fetched when validating"}
    report = ValidationReport()
    resolved = resolve_image_path(raw, root, number, report)
    if resolved is None:
        return {**row, "problem": f"{report.issues[0].code}: {report.issues[0].message}"}
    file, row["resolved_path"] = locate(Path(resolved))
    if file is None:
        return {**row, "problem": f"missing_file: nothing at {row['resolved_path']}"}
    try:
        info = probe_image(file)
        thumbnail = load_image(file, max_side=thumb_side) if thumb_side > 0 else None
    except ImageError as exc:
        return {**row, "exists": True, "problem": f"{exc.code}: {exc}"}
    if thumbnail is not None:
        buffer = io.BytesIO()
        thumbnail.save(buffer, format="PNG")
        row["thumbnail"] = buffer.getvalue()
    return {**row, "exists": True, "width": info.width, "height": info.height}


def _on_disk(path: Path) -> tuple[Path | None, str]:
    return (path if path.is_file() else None), str(path)


def preview_image_paths(
    path: str | os.PathLike[str], *, fmt: str | None = None, mapping: Mapping[str, str | None] | None = None,
    image_root: str | os.PathLike[str] | None = None, n_rows: int = 8, thumb_side: int = 96,
    db: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """How the first ``n_rows`` rows' image paths resolve, before validating: one row each with
    :data:`IMAGE_PREVIEW_COLUMNS` (source row, raw path, resolved path, whether a readable image is there, its
    width and height, the problem if any, a PNG thumbnail of at most ``thumb_side`` pixels); object columns, so
    what is unknown is None.

    Paths resolve exactly as the import resolves them (same mapping guess, same image root, same checks). For a
    ZIP archive the resolved path is the path inside the archive; only the table and those rows' images are
    unpacked, into a private temporary folder under the database's folder that is removed before returning.
    """
    if n_rows < 1:
        raise ValueError(f"n_rows must be at least 1, got {n_rows}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"source not found: {path}")
    if not is_archive(path):
        fmt = fmt or guess_format(path)
        table = get_importer(fmt).reader(path)
        column = _image_column(table.columns, mapping)
        root = Path(image_root if image_root is not None else path if path.is_dir() else path.parent).resolve()
        rows = [_preview_row(number, values.get(column, "").strip(), root, _on_disk, thumb_side)
                for number, values in table.rows[:n_rows]]
        return pd.DataFrame(rows, columns=list(IMAGE_PREVIEW_COLUMNS), dtype=object)
    with zipfile.ZipFile(path) as archive, tempfile.TemporaryDirectory(
            prefix="preview-", dir=upload_dir(store.resolve_db_path(db))) as tmp:
        plan = plan_archive(archive, fmt=fmt)
        folder = Path(tmp).resolve()
        members = {relative: (info, relative) for info, relative in plan.members if not info.is_dir()}
        if plan.table is not None:
            extract_members(archive, [members[plan.table]], folder)
        table_path = folder.joinpath(*plan.table.parts) if plan.table else folder
        if plan.table is None:  # the folder importer lists files: unpack the images (previews stay small)
            extract_members(archive, list(members.values()), folder)
        raw_table = get_importer(plan.fmt).reader(table_path)
        column = _image_column(raw_table.columns, mapping)
        root = image_root_in(folder, table_path, image_root)

        def locate(resolved: Path) -> tuple[Path | None, str]:
            relative = PurePosixPath(resolved.relative_to(folder).as_posix())
            if relative in members and not resolved.exists():
                extract_members(archive, [members[relative]], folder)
            return (resolved if resolved.is_file() else None), f"{path.name}: {relative}"

        rows = [_preview_row(number, values.get(column, "").strip(), root, locate, thumb_side)
                for number, values in raw_table.rows[:n_rows]]
    return pd.DataFrame(rows, columns=list(IMAGE_PREVIEW_COLUMNS), dtype=object)
