"""Readers of eval-set sources (CSV, TSV, JSONL, Parquet, an image folder) and their registry.

A reader turns a source into a :class:`RawTable` of strings, one error per unreadable row and never more: a stray
quote, a bad byte or a broken JSON line costs only its own row. :mod:`workbench.data.importers` maps, validates and
assembles what the readers return.
"""

from __future__ import annotations

import codecs
import json
import math
import os
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.data.validation import RowIssue

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
_CJK_OR_PUNCT = re.compile(
    r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef\u2000-\u206f]"
)
_QUOTED = re.compile(r'"[^"]*+(?:""[^"]*+)*+"')  # possessive: an unclosed quote fails in linear time
_LINE_END = re.compile(r"\r\n|\r|\n")  # the line breaks of io.StringIO(newline=""), which csv reads
UNDECODABLE = re.compile("[\ud800-\udfff]")  # undecodable bytes (surrogateescape) or a broken JSON escape
# Most non-ASCII bytes valid UTF-8: a UTF-8 file with some bad rows. GB18030 text fails as UTF-8 on ~70% of them.
_STRAY_BYTES_SHARE = 0.5


@dataclass
class RawTable:
    """A source read as strings. ``rows`` holds (1-based data row, {column: value}); unreadable rows are
    absent from ``rows`` but have an error in ``issues`` and count in ``n_rows``."""

    columns: list[str] = field(default_factory=list)
    rows: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    issues: list[RowIssue] = field(default_factory=list)
    n_rows: int = 0

    def add(self, row: int, field: str, code: str, message: str) -> None:
        """Record an error on ``row``."""
        self.issues.append(RowIssue(row=row, field=field, severity="error", code=code, message=message))


@dataclass(frozen=True)
class ImporterSpec:
    """Everything about one importer: registry name, what it reads, and its reader."""

    name: str
    description: str
    extensions: tuple[str, ...]
    reader: Callable[[Path], RawTable]
    reads_directory: bool = False


_IMPORTERS: dict[str, ImporterSpec] = {}


def register_importer(spec: ImporterSpec) -> ImporterSpec:
    """Add (or replace) an importer under ``spec.name``."""
    _IMPORTERS[spec.name] = spec
    return spec


def list_importers() -> list[str]:
    return sorted(_IMPORTERS)


def get_importer(name: str) -> ImporterSpec:
    try:
        return _IMPORTERS[name]
    except KeyError:
        raise KeyError(f"importer {name!r} not found. Available: {list_importers()}") from None


def guess_format(path: str | os.PathLike[str]) -> str:
    """Importer name for a path: a directory is ``folder``, a file goes by its extension."""
    path = Path(path)
    for spec in _IMPORTERS.values():
        if path.is_dir() if spec.reads_directory else path.suffix.lower() in spec.extensions:
            return spec.name
    known = sorted(ext for spec in _IMPORTERS.values() for ext in spec.extensions)
    raise ValueError(f"cannot guess the format of {path}: expected a directory or one of {known}")


def _source_issue(code: str, message: str, *, severity: str = "error") -> RowIssue:
    return RowIssue(row=0, field="source", severity=severity, code=code, message=message)


def _plausible_gb18030(text: str) -> bool:
    """Decoded GB18030 looks like real text: no control/private-use characters, non-ASCII mostly CJK."""
    non_ascii = [ch for ch in text if ord(ch) > 127]
    if any(unicodedata.category(ch) in ("Cc", "Co", "Cn", "Cs") and ch not in "\t\r\n" for ch in text):
        return False
    return len(_CJK_OR_PUNCT.findall("".join(non_ascii))) >= 0.9 * len(non_ascii)


def _decode_source(data: bytes) -> tuple[str, RowIssue | None]:
    """Decode a whole text source so that a bad byte costs only the row that holds it.

    UTF-8 (with or without BOM) is taken as is. Otherwise each undecodable byte is kept as a lone surrogate
    (``surrogateescape``) and the importer reports the rows holding one in a used column as ``bad_encoding``; a
    file that is not mostly UTF-8 but plausible GB18030 text is decoded as GB18030 instead, both with a warning.
    """
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError:
        pass
    text = data.removeprefix(codecs.BOM_UTF8).decode("utf-8", "surrogateescape")
    n_bad = len(UNDECODABLE.findall(text))
    if n_bad > _STRAY_BYTES_SHARE * sum(byte > 127 for byte in data):
        try:
            fallback: str | None = data.decode("gb18030")
        except UnicodeDecodeError:
            fallback = None
        if fallback is not None and _plausible_gb18030(fallback):
            return fallback, _source_issue(
                "fallback_encoding",
                "decoded as GB18030, not UTF-8; check the text and re-save as UTF-8",
                severity="warning",
            )
    return text, _source_issue(
        "bad_encoding",
        f"{n_bad:,} byte(s) are not UTF-8; rows with one in a used column are reported, the others are read; "
        "re-save the file as UTF-8",
        severity="warning",
    )


def _read_record(text: str, pos: int, delimiter: str, rest: re.Pattern[str]) -> tuple[list[str] | None, int]:
    """The values of the record that starts at ``pos`` and where its content ends (before the line break);
    None when a value opens a quote that no later quote closes."""
    values: list[str] = []
    while True:
        value = ""
        if text.startswith('"', pos):
            quoted = _QUOTED.match(text, pos)
            if quoted is None:
                return None, pos
            value, pos = quoted.group()[1:-1].replace('""', '"'), quoted.end()
        tail = rest.match(text, pos)
        values.append(value + tail.group())
        pos = tail.end()
        if pos < len(text) and text[pos] == delimiter:
            pos += 1
        else:
            return values, pos


def _split_records(text: str, delimiter: str) -> Iterator[tuple[int, list[str] | None]]:
    """Yield ``(first line, values)`` per record, read as the csv module reads it (``"…"`` quotes a value that
    may hold the delimiter, line breaks and ``""``), but one record at a time and without a size limit.

    A stray quote costs only its row: a record whose quote is never closed, or that runs over several lines and
    has more values than the header (the quote was closed by a later row's), yields ``(line, None)``, and
    reading goes on at its second line. (The csv module reads the rest of the file into that one value.)
    """
    rest = re.compile(f"[^{re.escape(delimiter)}\r\n]*")
    pos, line, n, width = 0, 1, len(text), None
    while pos < n:
        newline = _LINE_END.search(text, pos)
        first_stop = newline.start() if newline else n
        if '"' not in text[pos:first_stop]:  # no quotes: the csv module splits such a line at the delimiter
            values: list[str] | None = text[pos:first_stop].split(delimiter)
            stop = first_stop
        else:
            values, stop = _read_record(text, pos, delimiter, rest)
            if values is None or (width is not None and stop > first_stop and len(values) > width):
                values, stop = None, first_stop
        end = _LINE_END.match(text, stop)
        after = end.end() if end else stop
        yield line, values
        if width is None and values is not None and any(value.strip() for value in values):
            width = len(values)
        line += len(_LINE_END.findall(text, pos, after))
        pos = after


def _read_delimited(path: Path, delimiter: str) -> RawTable:
    """Header from the first non-blank record; a malformed record costs only its own row."""
    table = RawTable()
    text, issue = _decode_source(path.read_bytes())
    if issue is not None:
        table.issues.append(issue)
    row = 0
    for line, values in _split_records(text, delimiter):
        if values is not None and not any(value.strip() for value in values):
            continue
        if not table.columns:
            if values is None or UNDECODABLE.search("".join(values)):
                code, problem = (
                    ("unreadable_source", "has a quote that is never closed")
                    if values is None
                    else ("bad_encoding", "is not UTF-8 text")
                )
                table.issues.append(_source_issue(code, f"the header (line {line}) {problem}; fix it"))
                return table
            table.columns = [c.strip() for c in values]
            continue
        row += 1
        if values is None:
            message = (
                f"line {line}: a value opens a quote that is never closed, or only by a later row; close it "
                '(inside a quoted value, write a quote as "")'
            )
            table.add(row, "source", "malformed_row", message)
        elif len(values) > len(table.columns):
            message = (
                f"line {line}: {len(values)} values for {len(table.columns)} columns; "
                f"quote values that contain {delimiter!r}"
            )
            table.add(row, "source", "malformed_row", message)
        else:
            values += [""] * (len(table.columns) - len(values))
            table.rows.append((row, dict(zip(table.columns, values, strict=True))))
    table.n_rows = row
    return table


def _to_str(value: Any) -> str:
    """A cell as text: missing → "", 1.0 → "1", booleans → true/false, nested values → JSON."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, bytes):
        return value.decode("utf-8")  # binary string columns of older Parquet writers
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _read_jsonl(path: Path) -> RawTable:
    table = RawTable()
    columns: dict[str, None] = {}
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        line = line.removeprefix(b"\xef\xbb\xbf") if number == 1 else line
        if not line.strip():
            continue
        table.n_rows += 1
        try:
            obj = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            table.add(number, "source", "bad_encoding", f"line {number} is not UTF-8; re-save as UTF-8")
            continue
        except json.JSONDecodeError as exc:
            message = f"line {number} is not valid JSON ({exc.msg}, column {exc.colno}); fix or remove it"
            table.add(number, "source", "bad_json", message)
            continue
        except (ValueError, RecursionError) as exc:  # a 5,000-digit number, nesting thousands deep
            message = f"line {number} cannot be read as JSON ({type(exc).__name__}: {exc}); fix or remove it"
            table.add(number, "source", "bad_json", message[:500])
            continue
        if not isinstance(obj, dict):
            message = f"line {number} is a JSON {type(obj).__name__}, expected an object {{...}}"
            table.add(number, "source", "bad_json", message)
            continue
        values = {str(k): _to_str(v) for k, v in obj.items()}
        columns.update(dict.fromkeys(values))
        table.rows.append((number, values))
    table.columns = list(columns)
    return table


def _read_parquet(path: Path) -> RawTable:
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError, TypeError, NotImplementedError) as exc:  # Arrow's errors subclass these
        return RawTable(
            issues=[_source_issue("unreadable_source", f"cannot read Parquet file {path}: {exc}")]
        )
    table = RawTable(columns=[str(c) for c in frame.columns], n_rows=len(frame))
    for number, record in enumerate(frame.itertuples(index=False, name=None), start=1):
        try:
            table.rows.append((number, {c: _to_str(v) for c, v in zip(table.columns, record, strict=True)}))
        except UnicodeDecodeError as exc:
            message = f"row {number} holds bytes that are not UTF-8 text ({exc.reason}); store them as UTF-8"
            table.add(number, "source", "bad_encoding", message)
    return table


def _words(name: str) -> list[str]:
    return re.sub(r"[\d_\-.]+", " ", name).lower().split()


def _caption_from_name(category: str, stem: str) -> str:
    """``("mugs", "red_mug_01")`` → "red mug"; category words not already in the stem are appended."""
    words = _words(stem)
    for word in _words(category):
        if not any(word.startswith(w) or w.startswith(word) for w in words):
            words.append(word)
    return " ".join(words)


def _read_folder(root: Path) -> RawTable:
    """One sub-folder per category; optional sidecars ``NAME.txt`` (caption), ``NAME.json`` ({"product"})."""
    table = RawTable(columns=["image", "text", "product", "category"])
    files = sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and not p.is_dir()
    )
    for row, image in enumerate(files, start=1):
        relative = image.relative_to(root)
        category = relative.parts[0] if len(relative.parts) > 1 else ""
        values = {
            "image": relative.as_posix(),
            "text": _caption_from_name(category, image.stem),
            "product": relative.with_suffix("").as_posix(),
            "category": category,
        }
        caption, meta = image.with_suffix(".txt"), image.with_suffix(".json")
        try:
            if caption.is_file():
                values["text"] = caption.read_bytes().decode("utf-8-sig").strip()
            if meta.is_file():
                sidecar = json.loads(meta.read_bytes().decode("utf-8-sig"))
                if not isinstance(sidecar, dict):
                    raise ValueError(f"expected a JSON object, got {type(sidecar).__name__}")
                if sidecar.get("product") not in (None, ""):
                    values["product"] = _to_str(sidecar["product"])
        except UnicodeDecodeError:
            table.add(row, "text", "bad_encoding", f"sidecar of {relative} is not UTF-8; re-save it")
            continue
        except (ValueError, RecursionError) as exc:
            table.add(row, "product", "bad_json", f"{meta.name}: {exc}; fix the file")
            continue
        except OSError as exc:
            table.add(row, "text", "unreadable_source", f"cannot read a sidecar of {relative}: {exc}")
            continue
        table.rows.append((row, values))
    table.n_rows = len(files)
    return table


register_importer(ImporterSpec("csv", "comma-separated values", (".csv",), lambda p: _read_delimited(p, ",")))
register_importer(
    ImporterSpec("tsv", "tab-separated values", (".tsv", ".tab"), lambda p: _read_delimited(p, "\t"))
)
register_importer(ImporterSpec("jsonl", "one JSON object per line", (".jsonl", ".ndjson"), _read_jsonl))
register_importer(ImporterSpec("parquet", "Apache Parquet table", (".parquet", ".pq"), _read_parquet))
register_importer(
    ImporterSpec("folder", "one sub-folder per category of images, optional sidecars", (), _read_folder, True)
)
