"""Import eval sets: map a source's columns to fields, validate every row, build the eval set.

A reader (:mod:`workbench.data.readers`) turns a source into a :class:`~workbench.data.readers.RawTable`;
:func:`read_source` maps its columns to :data:`FIELDS`, resolves and probes images, checks consistency between
rows and builds an :class:`~workbench.data.model.EvalSetData` from the rows without errors.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.data.grouping import normalise_text
from workbench.data.images import (
    ImageCache,
    ImageError,
    ImageInfo,
    is_url,
    probe_image,
    sha256_text,
)
from workbench.data.model import (
    ATTRIBUTE_COLUMNS,
    IMAGE_COLUMNS,
    PAIR_COLUMNS,
    PRODUCT_COLUMNS,
    SPLITS,
    TEXT_COLUMNS,
    EvalSetData,
    empty_frame,
)
from workbench.data.readers import UNDECODABLE, get_importer, guess_format
from workbench.data.validation import ValidationReport
from workbench.data.vocab import detect_language

FIELDS = ("image", "text", "product", "category", "label", "split", "language", "id")
REQUIRED_FIELDS = ("image", "text")
ATTR_PREFIX = "attr."
PROBE_WORKERS = 4

_SYNONYMS: dict[str, tuple[str, ...]] = {
    "image": (
        "image", "image_path", "img", "img_path", "image_file", "image_url", "img_url", "url", "path", "file",
        "filename", "file_name", "picture", "photo", "图片", "图片路径", "图像",
    ),
    "text": (
        "text", "title", "caption", "description", "desc", "product_title", "product_name", "name",
        "sentence", "query", "标题", "商品标题", "文本", "描述",
    ),
    "product": (
        "product", "product_id", "sku", "item_id", "item", "asin", "goods_id", "spu",
        "商品id", "商品编号",
    ),
    "category": ("category", "category_name", "cat", "class", "product_type", "类目", "类别", "品类"),
    "label": ("label", "is_match", "match", "is_positive", "target", "y", "标签"),
    "split": ("split", "subset", "fold", "partition", "划分"),
    "language": ("language", "lang", "locale", "语言"),
    "id": ("id", "pair_id", "row_id", "uid"),
    "attr.color": ("color", "colour", "颜色"),
    "attr.material": ("material", "材质"),
    "attr.pattern": ("pattern", "图案"),
    "attr.brand": ("brand", "品牌"),
}  # fmt: skip
_LABELS = {"1": 1, "0": 0, "true": 1, "false": 0, "yes": 1, "no": 0, "y": 1, "n": 0, "t": 1, "f": 0}
_SPLIT_ALIASES = {
    "train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
}  # fmt: skip
MAX_FIELD_CHARS = 10_000  # no title, id, path or URL is longer; a mapped value beyond this is a row error

Progress = Callable[[int, int], None]


@dataclass
class ImportResult:
    """The rows without errors as an eval set, the full report, and the rows left out."""

    data: EvalSetData
    report: ValidationReport
    bad_rows: set[int]
    pair_rows: dict[str, int] = field(default_factory=dict)  # labelled pair id -> source row


# --- column mapping -----------------------------------------------------------------------------------------


def _normalize(column: str) -> str:
    return re.sub(r"[\s\-.]+", "_", column.strip().lower())


def guess_mapping(columns: Iterable[str]) -> dict[str, str]:
    """Map fields to columns by common names (``img``, ``title``, ``sku``, ``is_match``, ``attr_color`` …)."""
    columns = list(columns)
    by_name: dict[str, str] = {}
    for column in columns:
        by_name.setdefault(_normalize(column), column)
    mapping: dict[str, str] = {}
    used: set[str] = set()
    for name, synonyms in _SYNONYMS.items():
        for synonym in synonyms:
            column = by_name.get(synonym)
            if column is not None and column not in used:
                mapping[name] = column
                used.add(column)
                break
    for column in columns:
        normalized = _normalize(column)
        if column not in used and normalized.startswith("attr_") and len(normalized) > len("attr_"):
            mapping.setdefault(ATTR_PREFIX + normalized[len("attr_") :], column)
    return mapping


def _resolve_mapping(
    columns: list[str], user: Mapping[str, str | None] | None, report: ValidationReport
) -> dict[str, str]:
    """Guesses overridden by the user's mapping (``None`` unmaps a field); missing columns become issues."""
    mapping = guess_mapping(columns)
    user = dict(user or {})
    reported: set[str] = set()
    for key, column in user.items():
        if key not in FIELDS and not (key.startswith(ATTR_PREFIX) and len(key) > len(ATTR_PREFIX)):
            raise ValueError(f"unknown field {key!r}; fields are {list(FIELDS)} or 'attr.NAME'")
        mapping = {k: v for k, v in mapping.items() if k in user or v != column}
        mapping.pop(key, None)
        if column is None:
            continue
        if column in columns:
            mapping[key] = column
        else:
            reported.add(key)
            report.add(
                0,
                key,
                "missing_column",
                f"column {column!r} mapped to {key!r} does not exist; available columns: {columns}",
            )
    for name in REQUIRED_FIELDS:
        if name not in mapping and name not in reported:
            report.add(
                0,
                name,
                "missing_column",
                f"no column for {name!r} among {columns}; pass mapping={{{name!r}: COLUMN}}",
            )
    return mapping


# --- rows ---------------------------------------------------------------------------------------------------


@dataclass
class _Row:
    number: int
    image_key: str | None  # resolved absolute path or URL; None when unusable
    text: str
    product: str
    category: str
    label: int | None
    split: str | None
    language: str
    row_id: str
    attributes: dict[str, str]


def resolve_image_path(value: str, root: Path, number: int, report: ValidationReport) -> str | None:
    """A row's image value as an absolute path under ``root`` (or the URL itself); a problem is reported on the
    row and gives None. The import and its preview (:func:`workbench.data.mapping.preview_image_paths`) share it."""
    if not value:
        report.add(number, "image", "empty_path", "image is empty; give a file path or an http(s) URL")
        return None
    if is_url(value):
        return value
    candidate = Path(value.replace("\\", "/") if os.sep == "/" else value)
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if not resolved.is_relative_to(root):
        report.add(
            number,
            "image",
            "path_escapes_root",
            f"{value!r} resolves to {resolved}, outside the image root {root}; move it under the root "
            "or pass image_root",
        )
        return None
    return str(resolved)


def _readable_rows(
    rows: list[tuple[int, dict[str, str]]], fields: dict[str, str], report: ValidationReport
) -> list[tuple[int, dict[str, str]]]:
    """Rows whose mapped values are at most :data:`MAX_FIELD_CHARS` long and hold only decodable text; others
    are row errors. Unmapped columns are never used, so their length or bytes cost nothing."""
    readable = []
    for number, values in rows:
        fine = True
        for name, column in fields.items():
            value = values.get(column, "")
            if len(value) > MAX_FIELD_CHARS:
                fine = False
                report.add(
                    number,
                    name,
                    "field_too_long",
                    f"{column!r} is {len(value):,} characters long; the limit is {MAX_FIELD_CHARS:,}; "
                    "shorten it or map another column",
                )
            elif bad := UNDECODABLE.search(value):
                fine = False
                code = ord(bad.group()) - 0xDC00
                what = f"byte 0x{code:02X} is not UTF-8" if 0x80 <= code <= 0xFF else "a broken \\u escape"
                report.add(number, name, "bad_encoding", f"{column!r}: {what}; re-save the file as UTF-8")
        if fine:
            readable.append((number, values))
    return readable


def _parse_label(raw: str, number: int, report: ValidationReport) -> int | None:
    value = raw.strip().lower()
    if value in _LABELS:
        return _LABELS[value]
    try:
        number_value = float(value)
    except ValueError:
        report.add(number, "label", "non_numeric_label", f"label {raw!r} is not 0/1, true/false or yes/no")
        return None
    if number_value in (0.0, 1.0):
        return int(number_value)
    report.add(number, "label", "invalid_label", f"label {raw!r} must be 0 (no match) or 1 (match)")
    return None


def _parse_row(
    number: int, values: dict[str, str], fields: dict[str, str], root: Path, report: ValidationReport
) -> _Row:
    def get(name: str) -> str:
        return values.get(fields[name], "").strip() if name in fields else ""

    text = get("text")
    if not text:
        report.add(number, "text", "empty_text", "text is empty or whitespace; fill it in or remove the row")
    label = _parse_label(get("label"), number, report) if "label" in fields else None
    split = None
    if "split" in fields and "label" in fields:
        split = _SPLIT_ALIASES.get(get("split").lower())
        if split is None:
            report.add(
                number, "split", "unknown_split", f"split {get('split')!r} is not one of {list(SPLITS)}"
            )
    language = re.split(r"[-_]", get("language").lower())[0] or detect_language(text)
    attributes = {k[len(ATTR_PREFIX) :]: get(k) for k in fields if k.startswith(ATTR_PREFIX) and get(k)}
    return _Row(
        number=number,
        image_key=resolve_image_path(get("image"), root, number, report),
        text=text,
        product=get("product"),
        category=get("category"),
        label=label,
        split=split,
        language=language,
        row_id=get("id"),
        attributes=attributes,
    )


def _probe_all(
    keys: list[str], cache: ImageCache | None, max_pixels: int | None, progress: Progress | None
) -> dict[str, tuple[Path, ImageInfo] | ImageError]:
    """Fetch and probe each distinct image once, four at a time to overlap IO; progress runs here."""

    def probe(key: str) -> tuple[Path, ImageInfo] | ImageError:
        try:
            if is_url(key):
                if cache is None:
                    raise ImageError(
                        f"{key} is a URL; pass image_cache=ImageCache(DIR) to fetch it", code="url_failed"
                    )
                local = cache.fetch(key)
            else:
                local = Path(key)
            return local, probe_image(local, max_pixels=max_pixels)
        except ImageError as exc:
            return exc

    results: dict[str, tuple[Path, ImageInfo] | ImageError] = {}
    with ThreadPoolExecutor(max_workers=PROBE_WORKERS) as pool:
        futures = {pool.submit(probe, key): key for key in keys}
        for done, future in enumerate(as_completed(futures), start=1):
            results[futures[future]] = future.result()
            if progress is not None:
                progress(done, len(keys))
    return results


def _check_between_rows(rows: list[_Row], labelled: bool, report: ValidationReport) -> None:
    """Duplicate ids, repeated rows and one (image, text) given both labels."""
    first_id: dict[str, int] = {}
    for row in rows:
        if row.row_id:
            if row.row_id in first_id:
                report.add(
                    row.number,
                    "id",
                    "duplicate_id",
                    f"id {row.row_id!r} already used by row {first_id[row.row_id]}; give each row its own id",
                )
            first_id.setdefault(row.row_id, row.number)
    groups: dict[tuple[str, ...], list[_Row]] = {}
    for row in rows:
        if row.image_key is not None and row.text and (row.label is not None or not labelled):
            key = (row.image_key, row.text) if labelled else (row.image_key, row.text, row.product)
            groups.setdefault(key, []).append(row)
    for group in groups.values():
        labels = {row.label for row in group}
        if len(labels) > 1:
            numbers = [row.number for row in group]
            for row in group:
                report.add(
                    row.number,
                    "label",
                    "conflicting_label",
                    f"the same image and text are labelled 0 and 1 in rows {numbers}; keep the right one",
                )
            continue
        for row in group[1:]:
            report.add(
                row.number,
                "image",
                "duplicate_row",
                f"repeats row {group[0].number} (same image, text and product); remove the duplicate",
            )


def _frame(records: list[tuple], columns: tuple[str, ...]) -> pd.DataFrame:
    """Object columns (missing values stay None), except integer width, height and label."""
    if not records:
        return empty_frame(columns)
    frame = pd.DataFrame(records, columns=list(columns), dtype=object)
    for name in ("width", "height", "label"):
        if name in frame:
            frame[name] = frame[name].astype("int64")
    return frame


def _image_id(key: str, root: Path) -> str:
    """From the URL or the path relative to the image root, so ids do not depend on where the files live."""
    return sha256_text(key if is_url(key) else Path(key).relative_to(root).as_posix())[:16]


def _build(
    rows: list[_Row], probes: dict[str, Any], labelled: bool, report: ValidationReport, root: Path
) -> tuple[EvalSetData, dict[str, int]]:
    """Assemble the eval set from rows without errors; products and categories must agree across rows.

    Ids come from content (normalised text and its product, the image's path relative to ``root`` or its URL),
    never from absolute paths. Also returns the source row of each labelled pair.
    """
    products: dict[str, str | None] = {}
    attributes: dict[tuple[str, str, str], None] = {}
    images: dict[str, tuple] = {}
    image_rows: dict[str, int] = {}
    texts: dict[tuple[str | None, str], tuple] = {}
    pairs: list[tuple] = []
    pair_rows: dict[str, int] = {}
    pair_keys: dict[tuple[str, str], int] = {}
    bad = report.bad_rows
    for row in rows:
        key = row.image_key
        if row.number in bad or key is None:
            continue
        known = images.get(key)
        product = row.product or (known[1] if known else f"row-{row.number:05d}")
        if known and known[1] != product:
            report.add(
                row.number,
                "product",
                "conflicting_product",
                f"image already belongs to product {known[1]!r} (row {image_rows[key]}); give it one product",
            )
            continue
        category = row.category or None
        if product in products and category and products[product] not in (None, category):
            report.add(
                row.number,
                "category",
                "conflicting_category",
                f"product {product!r} already has category {products[product]!r}; kept that one",
                severity="warning",
            )
        elif products.get(product) is None:
            products[product] = category
        for name, value in row.attributes.items():
            attributes[(product, name, value)] = None
        text_product = product if row.label != 0 else None
        text_key = (text_product, normalise_text(row.text))
        image_id = known[0] if known else _image_id(key, root)
        text_id = texts[text_key][0] if text_key in texts else sha256_text(f"{text_product or ''}\n{text_key[1]}")[:16]
        if labelled and (image_id, text_id) in pair_keys:
            report.add(
                row.number,
                "text",
                "duplicate_row",
                f"repeats row {pair_keys[(image_id, text_id)]} (same image, same text up to case and spaces); "
                "remove the duplicate",
            )
            continue
        if known is None:
            local, info = probes[key]
            images[key] = (image_id, product, str(local), info.sha256, info.width, info.height)
            image_rows[key] = row.number
        if text_key not in texts:
            texts[text_key] = (text_id, text_product, row.text, row.language, sha256_text(row.text))
        if labelled:
            pair_id = row.row_id or sha256_text(f"{image_id}\n{text_id}")[:16]
            pairs.append((pair_id, image_id, text_id, row.label, row.split, "labelled", None, None, None))
            pair_rows[pair_id] = row.number
            pair_keys[(image_id, text_id)] = row.number
    data = EvalSetData(
        products=_frame(list(products.items()), PRODUCT_COLUMNS),
        attributes=_frame(list(attributes), ATTRIBUTE_COLUMNS),
        images=_frame(list(images.values()), IMAGE_COLUMNS),
        texts=_frame(list(texts.values()), TEXT_COLUMNS),
        pairs=_frame(pairs, PAIR_COLUMNS) if labelled else None,
    )
    return data, pair_rows


def read_source(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    mapping: Mapping[str, str | None] | None = None,
    image_root: str | os.PathLike[str] | None = None,
    image_cache: ImageCache | None = None,
    max_pixels: int | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Read, validate and convert one source; bad rows are reported and left out of ``data``.

    ``mapping`` maps :data:`FIELDS` (or ``attr.NAME``) to column names and overrides the guesses.
    Image paths are relative to ``image_root`` (default: the source's folder) and must stay inside it;
    http(s) images are fetched through ``image_cache``. With a ``label`` column each row is a labelled pair,
    otherwise each row is a matched (image, text) and ``data.pairs`` is None. ``progress(done, total)`` is
    called as images are probed.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"source not found: {path}")
    table = get_importer(format or guess_format(path)).reader(path)
    report = ValidationReport(issues=list(table.issues), n_rows=table.n_rows)
    all_rows = {number for number, _ in table.rows} | report.bad_rows
    empty = EvalSetData(products=empty_frame(PRODUCT_COLUMNS))
    if not table.columns:
        if report.ok:
            report.add(0, "source", "missing_column", f"{path} has no columns or rows")
        return ImportResult(empty, report, all_rows)
    fields = _resolve_mapping(table.columns, mapping, report)
    if any(name not in fields for name in REQUIRED_FIELDS):
        return ImportResult(empty, report, all_rows)
    labelled = "label" in fields
    if "split" in fields and not labelled:
        report.add(
            0,
            "split",
            "ignored_column",
            f"split column {fields['split']!r} ignored: splits are only read with a label column",
            severity="warning",
        )
    root = Path(image_root if image_root is not None else path if path.is_dir() else path.parent).resolve()
    readable = _readable_rows(table.rows, fields, report)
    rows = [_parse_row(number, values, fields, root, report) for number, values in readable]
    keys = list(dict.fromkeys(row.image_key for row in rows if row.image_key is not None))
    probes = _probe_all(keys, image_cache, max_pixels, progress)
    for row in rows:
        result = probes.get(row.image_key) if row.image_key is not None else None
        if isinstance(result, ImageError):
            report.add(row.number, "image", result.code, str(result))
    _check_between_rows(rows, labelled, report)
    data, pair_rows = _build(rows, probes, labelled, report, root)
    return ImportResult(data, report, report.bad_rows, pair_rows)
