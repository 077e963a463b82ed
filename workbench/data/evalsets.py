"""Eval sets in the store: import (strict or lenient, atomic), the bundled demo catalogue, list/show/delete."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from workbench import store
from workbench.data.archive import is_archive
from workbench.data.leakage import (
    check_split_leakage,
    leakage_issues,
    leakage_message,
    leaking_pairs,
    near_duplicate_images,
)
from workbench.data.model import (
    ATTRIBUTE_COLUMNS,
    IMAGE_COLUMNS,
    PAIR_COLUMNS,
    PRODUCT_COLUMNS,
    TEXT_COLUMNS,
    EvalSetData,
)
from workbench.data.splits import NEGATIVE_KINDS, make_pairs

Progress = Callable[[int, int], None]
DEMO_NAME = "demo"
DEMO_PRODUCTS = 2000
CHART_SAMPLE = 20_000  # rows sampled (reproducibly) for the summary charts


class EvalSetError(ValueError):
    """A user-facing problem with an eval set (unknown name, name taken, nothing to import…); ``report`` is the
    per-row import report when the problem ends an import, so callers can still write it."""

    def __init__(self, message: str, *, report: pd.DataFrame | None = None) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class ImportOutcome:
    name: str | None
    imported: bool
    n_rows: int
    n_bad_rows: int
    report: pd.DataFrame
    summary: dict


def content_hash(data: EvalSetData) -> str:
    """SHA-256 over the image bytes' hashes, the texts and the labelled pairs (order independent)."""
    digest = hashlib.sha256()
    for frame, columns in (
        (data.images, ["image_id", "product_id", "sha256"]),
        (data.texts, ["text_id", "product_id", "sha256"]),
        (data.pairs, ["pair_id", "image_id", "text_id", "label", "split", "pair_kind"]),
    ):
        if frame is None:
            continue
        for row in frame[columns].sort_values(columns[0]).itertuples(index=False):
            digest.update("\x1f".join("" if pd.isna(v) else str(v) for v in row).encode())
            digest.update(b"\n")
    return digest.hexdigest()


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not name or name in (".", "..") or len(name) > 100 or any(c in name for c in "/\\\n\t"):
        raise EvalSetError(f"Invalid eval set name {name!r}: use 1–100 characters without slashes or newlines "
                           "(and not '.' or '..').")
    return name


def store_eval_set(
    con,
    name: str,
    data: EvalSetData,
    *,
    seed: int,
    source: str,
    fmt: str,
    options: dict | None = None,
    replace: bool = False,
) -> dict:
    """Write a complete eval set (with pairs) in one transaction; nothing is written if anything fails.

    ``data.audit`` is stored with it; its ``leakage`` section is computed here when the caller has not.
    """
    name = _check_name(name)
    if data.pairs is None or data.pairs.empty:
        raise EvalSetError("The eval set has no pairs to store (no valid rows?).")
    audit = dict(data.audit)
    if "leakage" not in audit:
        audit["leakage"] = check_split_leakage(data)
    exists = con.execute("SELECT count(*) FROM eval_sets WHERE name = ?", [name]).fetchone()[0]
    if exists and not replace:
        raise EvalSetError(f"An eval set named {name!r} already exists; choose another name or delete it first.")
    summary = {
        "name": name,
        "content_hash": content_hash(data),
        "n_products": len(data.products),
        "n_images": len(data.images),
        "n_texts": len(data.texts),
        "n_pairs": len(data.pairs),
        "audit": audit,
    }
    with store.transaction(con):
        if exists:
            _delete_rows(con, name)
        con.execute(
            "INSERT INTO eval_sets (name, created_at, source, format, content_hash, seed, options, n_products, "
            "n_images, n_texts, n_pairs, audit) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [name, datetime.now(), source, fmt, summary["content_hash"], seed, json.dumps(options or {}),
             summary["n_products"], summary["n_images"], summary["n_texts"], summary["n_pairs"],
             json.dumps(audit, ensure_ascii=False)],
        )
        for table, frame, columns in (
            ("products", data.products, PRODUCT_COLUMNS),
            ("attributes", data.attributes, ATTRIBUTE_COLUMNS),
            ("images", data.images, IMAGE_COLUMNS),
            ("texts", data.texts, TEXT_COLUMNS),
            ("pairs", data.pairs, PAIR_COLUMNS),
        ):
            rows = frame[list(columns)].copy()
            rows.insert(0, "eval_set", name)
            store.insert_frame(con, table, rows)
    return summary


def _log_import(con, name: str | None, source: str, fmt: str, mode: str, status: str, n_rows: int,
                report: pd.DataFrame) -> None:
    con.execute(
        "INSERT INTO import_log (eval_set, imported_at, source, format, mode, status, n_rows, n_bad_rows, report) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [name, datetime.now(), source, fmt, mode, status, n_rows,
         int(report["row"].nunique()) if not report.empty else 0, report.to_json(orient="records")],
    )


def _leakage_audit(data: EvalSetData, *, supplied: bool, near_duplicates: bool = False) -> dict:
    """The leakage section of an eval set's audit (the near-duplicate report decodes every image: opt-in)."""
    leakage = {"splits": "supplied" if supplied else "generated", **check_split_leakage(data)}
    if near_duplicates:
        leakage["near_duplicates"] = near_duplicate_images(data)
    return leakage


def import_eval_set(
    path: str | os.PathLike[str],
    name: str,
    *,
    db: str | os.PathLike[str] | None = None,
    fmt: str | None = None,
    mapping: dict[str, str] | None = None,
    image_root: str | os.PathLike[str] | None = None,
    strict: bool = True,
    negatives: tuple[str, ...] = NEGATIVE_KINDS,
    seed: int = 0,
    validate_only: bool = False,
    progress: Progress | None = None,
    source_name: str | None = None,
    near_duplicates: bool = False,
) -> ImportOutcome:
    """Read, validate and (unless ``validate_only``) store an eval set.

    Strict mode stores nothing when any row has an error; lenient mode stores the good rows. Either way the
    per-row report is returned and logged in ``import_log``. ``source_name`` is recorded as the source instead
    of the path (an upload's own file name; its stored copy has a random name and is deleted after import).

    A ZIP archive (one table plus its images) is unpacked safely by :mod:`workbench.data.archive` into the eval
    set's media folder and imported from there (``image_root``, if given, is a folder inside the archive); the
    source recorded is the archive's file name, and the extraction is kept only when the import succeeds.

    User-supplied splits are checked for a product, image (bytes) or normalised title in two splits: strict mode
    rejects the import with a ``split_leakage`` error on each such row, lenient mode imports with warnings. The
    leakage section of the stored audit says which; ``near_duplicates`` adds a perceptual-hash report to it.
    """
    from workbench.data.images import ImageCache
    from workbench.data.importers import read_source
    from workbench.data.readers import guess_format

    name = _check_name(name)
    path = Path(path)
    if is_archive(path):
        return _import_archive(path, name, db=db, fmt=fmt, mapping=mapping, image_root=image_root, strict=strict,
                               negatives=negatives, seed=seed, validate_only=validate_only, progress=progress,
                               source_name=source_name, near_duplicates=near_duplicates)
    fmt = fmt or guess_format(path)
    source = source_name or str(path)
    cache_dir = store.resolve_db_path(db).parent / "image_cache"
    result = read_source(path, format=fmt, mapping=mapping, image_root=image_root,
                         image_cache=ImageCache(cache_dir), progress=progress)
    pairs = result.data.pairs
    supplied = pairs is not None and not pairs.empty and bool(pairs["split"].notna().all())
    if supplied:
        result.report.issues.extend(leakage_issues(leaking_pairs(result.data), result.pair_rows,
                                                   severity="error" if strict else "warning"))
    report = result.report.to_frame()
    n_rows = result.report.n_rows
    n_bad = result.report.n_bad_rows
    mode = "strict" if strict else "lenient"
    blocked = validate_only or (strict and n_bad > 0)
    summary: dict = {}
    paired = None
    if not blocked:
        if result.data.images.empty or result.data.texts.empty:
            raise EvalSetError(f"No valid rows to import from {source} ({n_bad} of {n_rows} rows have errors).",
                               report=report)
        paired = make_pairs(result.data, negatives=tuple(negatives), seed=seed)
        paired.audit["leakage"] = _leakage_audit(paired, supplied=supplied, near_duplicates=near_duplicates)
    with store.connect(db) as con:
        if paired is not None:
            summary = store_eval_set(con, name, paired, seed=seed, source=source, fmt=fmt,
                                     options={"mapping": mapping or {}, "negatives": list(negatives), "mode": mode})
        status = "validated" if validate_only else ("rejected" if blocked else "imported")
        _log_import(con, None if blocked else name, source, fmt, mode, status, n_rows, report)
    return ImportOutcome(name if not blocked else None, not blocked, n_rows, n_bad, report, summary)


def _import_archive(path: Path, name: str, *, db, fmt: str | None, image_root, source_name: str | None,
                    validate_only: bool, **options) -> ImportOutcome:
    """Unpack the archive into the eval set's media folder, import from there, keep it only if imported."""
    from workbench.data.archive import extract_archive

    if not validate_only:
        with store.connect(db) as con:
            if con.execute("SELECT count(*) FROM eval_sets WHERE name = ?", [name]).fetchone()[0]:
                raise EvalSetError(f"An eval set named {name!r} already exists; choose another name or delete it "
                                   "first.")
    extracted = extract_archive(path, media_dir(db, name), fmt=fmt, image_root=image_root)
    try:
        outcome = import_eval_set(extracted.table, name, db=db, fmt=extracted.fmt, image_root=extracted.image_root,
                                  source_name=source_name or path.name, validate_only=validate_only, **options)
    except BaseException:
        extracted.remove()
        raise
    if not outcome.imported:
        extracted.remove()
    return outcome


def media_dir(db: str | os.PathLike[str] | None, name: str) -> Path:
    """Where an eval set's own image files live (the synthetic catalogue's renders, unpacked archives)."""
    return store.resolve_db_path(db).parent / "media" / _check_name(name)


def create_catalog_eval_set(
    name: str = DEMO_NAME,
    *,
    db: str | os.PathLike[str] | None = None,
    n_products: int = DEMO_PRODUCTS,
    seed: int = 0,
    progress: Progress | None = None,
    replace: bool = False,
) -> dict:
    """Generate the synthetic bilingual catalogue, add negatives and splits, and store it as an eval set."""
    from workbench.data.catalog import generate_catalog

    name = _check_name(name)
    parts = generate_catalog(media_dir(db, name), n_products=n_products, seed=seed, progress=progress)
    data = EvalSetData(parts.products, parts.attributes, parts.images, parts.texts)
    paired = make_pairs(data, negatives=NEGATIVE_KINDS, seed=seed)
    paired.audit["leakage"] = _leakage_audit(paired, supplied=False)
    with store.connect(db) as con:
        return store_eval_set(con, name, paired, seed=seed, source="synthetic catalogue", fmt="catalog",
                              options={"n_products": n_products, "negatives": list(NEGATIVE_KINDS)},
                              replace=replace)


def demo_eval_set_name(n_products: int = DEMO_PRODUCTS, seed: int = 0) -> str:
    return DEMO_NAME if n_products == DEMO_PRODUCTS and seed == 0 else f"{DEMO_NAME}-{n_products}-s{seed}"


def parse_demo_name(name: str) -> tuple[int, int] | None:
    """(n_products, seed) if ``name`` is a demo catalogue name, else None."""
    if name == DEMO_NAME:
        return DEMO_PRODUCTS, 0
    match = re.fullmatch(rf"{DEMO_NAME}-(\d+)-s(\d+)", name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def ensure_demo_eval_set(
    *, db: str | os.PathLike[str] | None = None, n_products: int = DEMO_PRODUCTS, seed: int = 0,
    progress: Progress | None = None,
) -> str:
    """Create the bundled demo catalogue the first time it is needed; return its eval-set name."""
    name = demo_eval_set_name(n_products, seed)
    with store.connect(db) as con:
        exists = con.execute("SELECT count(*) FROM eval_sets WHERE name = ?", [name]).fetchone()[0]
    if not exists:
        create_catalog_eval_set(name, db=db, n_products=n_products, seed=seed, progress=progress)
    return name


def list_eval_sets(db: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    with store.connect(db) as con:
        return store.query_frame(
            con,
            "SELECT name, created_at, source, format, n_products, n_images, n_texts, n_pairs, seed, content_hash "
            "FROM eval_sets ORDER BY created_at DESC",
        )


def get_eval_set_info(name: str, db: str | os.PathLike[str] | None = None) -> dict:
    """Summary of one eval set: counts per split/kind/label/category/language."""
    with store.connect(db) as con:
        row = store.query_frame(con, "SELECT * FROM eval_sets WHERE name = ?", [name])
        if row.empty:
            available = [r[0] for r in con.execute("SELECT name FROM eval_sets ORDER BY name").fetchall()]
            raise EvalSetError(f"Eval set {name!r} not found. Available: {available}")
        info = row.iloc[0].to_dict()
        info["options"] = json.loads(info["options"] or "{}")
        info["audit"] = json.loads(info["audit"] or "{}")
        info["pairs_by_split"] = store.query_frame(
            con,
            "SELECT split, pair_kind, label, count(*) AS n FROM pairs WHERE eval_set = ? "
            "GROUP BY ALL ORDER BY split, pair_kind", [name],
        )
        info["categories"] = store.query_frame(
            con, "SELECT category, count(*) AS n_products FROM products WHERE eval_set = ? GROUP BY ALL "
            "ORDER BY n_products DESC", [name],
        )
        info["languages"] = store.query_frame(
            con, "SELECT language, count(*) AS n_texts FROM texts WHERE eval_set = ? GROUP BY ALL", [name]
        )
    return info


def leakage_warning(name: str, db: str | os.PathLike[str] | None = None) -> str | None:
    """A banner for pages and reports when ``name`` was imported with content in two splits (else None)."""
    with store.connect(db) as con:
        row = con.execute("SELECT audit FROM eval_sets WHERE name = ?", [name]).fetchone()
    return leakage_message(name, json.loads(row[0]) if row and row[0] else None)


def _counts(mapping: dict | None) -> str:
    return ", ".join(f"{key} {value}" for key, value in (mapping or {}).items()) or "none"


def audit_lines(name: str, audit: dict | None) -> list[str]:
    """The audit as text lines for ``evalset show``: negatives by kind, swaps by attribute, discarded candidates
    by reason, and the leakage section with its warning."""
    audit = audit or {}
    if not audit:
        return ["no audit stored (the eval set predates audits; re-import it to get one)"]
    lines = []
    negatives = audit.get("negatives")
    if negatives is not None:
        lines += [f"negatives by kind: {_counts(negatives.get('by_kind'))}",
                  f"swaps by attribute: {_counts(negatives.get('swaps_by_attribute'))}",
                  f"discarded candidates: {_counts(negatives.get('discarded'))}"]
    leakage = audit.get("leakage")
    if leakage is not None:
        lines += [
            f"leakage ({leakage.get('splits', 'generated')} splits): {leakage['content_groups']} content groups, "
            f"{leakage['shared_groups']} of several products ({leakage['shared_images']} shared images, "
            f"{leakage['shared_titles']} shared titles); {leakage['groups_across_splits']} groups across splits",
            f"in more than one split: {_counts(leakage.get('across_splits'))}",
        ]
        for overlap in leakage.get("overlaps", []):
            key = overlap["key"][:12] if overlap["kind"] == "image" else overlap["key"][:60]
            examples = "; ".join(f"{split}: {', '.join(ids)}" for split, ids in overlap["example_pairs"].items())
            lines.append(f"  {overlap['kind']} {key!r}: {_counts(overlap['n_pairs'])} pairs (e.g. {examples})")
        near = leakage.get("near_duplicates")
        if near is not None:
            lines.append(f"near-duplicate images ({near['method']}): {near['pairs']} pairs of {near['n_images']} "
                         f"images, {near['across_splits']} across splits")
            for pair in near["examples"]:
                lines.append(f"  images {' ~ '.join(pair['images'])} (products {', '.join(pair['products'])}; "
                             f"splits {', '.join(pair['splits']) or '-'}; distance {pair['distance']})")
        warning = leakage_message(name, audit)
        if warning:
            lines.append(f"WARNING: {warning}")
    return lines


def _like_pattern(search: str) -> str:
    escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def query_pairs(
    db: Path | str, name: str, *, split: str | None = None, label: int | None = None, pair_kind: str | None = None,
    category: str | None = None, search: str = "", tag: str | None = None, products: list[str] | None = None,
    limit: int = 24, offset: int = 0,
) -> tuple[pd.DataFrame, int]:
    """One page of an eval set's pairs (image path, text, label, split, kind, category) and the filtered total.

    Filters are bound parameters; ``search`` matches the text or product id, case-insensitively; ``tag`` and
    ``products`` keep pairs whose image belongs to a product with that tag / among those products (a saved view).
    """
    where, params = ["p.eval_set = ?"], [name]
    for column, value in (("p.split", split), ("p.label", label), ("p.pair_kind", pair_kind),
                          ("pr.category", category)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if search.strip():
        where.append("(t.text ILIKE ? ESCAPE '\\' OR i.product_id ILIKE ? ESCAPE '\\')")
        params += [_like_pattern(search.strip())] * 2
    if tag is not None:
        where.append("i.product_id IN (SELECT product_id FROM item_tags WHERE eval_set = p.eval_set AND tag = ?)")
        params.append(tag)
    if products is not None:
        where.append("list_contains(?, i.product_id)")
        params.append(list(products))
    body = (
        " FROM pairs p"
        " JOIN images i ON i.eval_set = p.eval_set AND i.image_id = p.image_id"
        " JOIN texts t ON t.eval_set = p.eval_set AND t.text_id = p.text_id"
        " LEFT JOIN products pr ON pr.eval_set = p.eval_set AND pr.product_id = i.product_id"
        " WHERE " + " AND ".join(where)
    )
    with store.connect(db) as con:
        total = int(con.execute("SELECT count(*)" + body, params).fetchone()[0])
        page = store.query_frame(
            con,
            "SELECT p.pair_id, i.path, t.text, p.label, p.split, p.pair_kind, p.swapped_attribute, pr.category, "
            "t.language, i.product_id" + body + " ORDER BY p.split, p.pair_id LIMIT ? OFFSET ?",
            [*params, int(limit), int(offset)],
        )
    return page, total


def chart_data(db: Path | str, name: str) -> dict[str, pd.DataFrame]:
    """Text lengths and image sizes (a reproducible sample of at most CHART_SAMPLE rows each)."""
    with store.connect(db) as con:
        texts = store.query_frame(
            con, "SELECT * FROM (SELECT length(text) AS n_chars, language FROM texts WHERE eval_set = ?) "
            f"USING SAMPLE reservoir({CHART_SAMPLE} ROWS) REPEATABLE (0)", [name])
        images = store.query_frame(
            con, "SELECT * FROM (SELECT width, height FROM images WHERE eval_set = ?) "
            f"USING SAMPLE reservoir({CHART_SAMPLE} ROWS) REPEATABLE (0)", [name])
    return {"texts": texts, "images": images}


def load_eval_set(con, name: str) -> EvalSetData:
    """Load every table of one eval set (used by the runner)."""
    exists = con.execute("SELECT count(*) FROM eval_sets WHERE name = ?", [name]).fetchone()[0]
    if not exists:
        available = [r[0] for r in con.execute("SELECT name FROM eval_sets ORDER BY name").fetchall()]
        raise EvalSetError(f"Eval set {name!r} not found. Available: {available}")

    def read(table: str, columns: tuple[str, ...], order: str) -> pd.DataFrame:
        cols = ", ".join(columns)
        return store.query_frame(con, f"SELECT {cols} FROM {table} WHERE eval_set = ? ORDER BY {order}", [name])

    return EvalSetData(
        products=read("products", PRODUCT_COLUMNS, "product_id"),
        attributes=read("attributes", ATTRIBUTE_COLUMNS, "product_id, name"),
        images=read("images", IMAGE_COLUMNS, "image_id"),
        texts=read("texts", TEXT_COLUMNS, "text_id"),
        pairs=read("pairs", PAIR_COLUMNS, "pair_id"),
    )


def _delete_rows(con, name: str) -> None:
    run_ids = [r[0] for r in con.execute("SELECT run_id FROM runs WHERE eval_set = ?", [name]).fetchall()]
    for table in ("scores", "run_embeddings", "metrics", "run_artifacts"):
        for run_id in run_ids:
            con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
    con.execute("DELETE FROM runs WHERE eval_set = ?", [name])
    for table in ("pairs", "texts", "images", "attributes", "products", "label_errors", "item_tags", "saved_views"):
        con.execute(f"DELETE FROM {table} WHERE eval_set = ?", [name])
    con.execute("DELETE FROM eval_sets WHERE name = ?", [name])


def delete_eval_set(name: str, db: str | os.PathLike[str] | None = None) -> None:
    """Delete an eval set, the runs made on it and its media folder (images the workbench wrote: catalogue renders,
    unpacked archives; files imported from elsewhere are never touched). The embedding cache is kept: it is keyed
    by content."""
    with store.connect(db) as con:
        if not con.execute("SELECT count(*) FROM eval_sets WHERE name = ?", [name]).fetchone()[0]:
            raise EvalSetError(f"Eval set {name!r} not found.")
        with store.transaction(con):
            _delete_rows(con, name)
    shutil.rmtree(media_dir(db, name), ignore_errors=True)
