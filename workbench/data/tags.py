"""Tags, saved views and selection exports: people's annotations of an eval set's products, kept beside it.

The unit is the product (what the detail view opens): a lasso point, a gallery card or a mismatch card is tagged
through its product, so one tag follows every image, text and pair of that product. A saved view is a named
gallery filter (split, label, pair kind, category, search text, tag) and/or a fixed selection of products; both are
deleted with their eval set. Exports are one row per image and text of the selected products.
"""

from __future__ import annotations

import io
import json
import os
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from workbench import store
from workbench.data.evalsets import query_pairs

TAG_MAX_CHARS = 64
VIEW_NAME_MAX_CHARS = 80
VIEW_FILTER_KEYS = ("split", "label", "pair_kind", "category", "search", "tag")
EXPORT_FORMATS = ("csv", "parquet")
SELECTION_COLUMNS = ("eval_set", "product_id", "category", "modality", "item_id", "image_path", "text", "language",
                     "tags")
Db = str | os.PathLike[str] | None


@dataclass(frozen=True)
class SavedView:
    """A named gallery filter (keys of :data:`VIEW_FILTER_KEYS`) and/or a fixed selection of products."""

    eval_set: str
    name: str
    filters: dict[str, Any]
    products: tuple[str, ...] | None
    created_at: datetime


# ----------------------------------------------------------------------------------------------- validation
def _check_label(what: str, value: Any, max_chars: int) -> str:
    text = str(value).strip() if value is not None else ""
    if not text or len(text) > max_chars:
        raise ValueError(f"{what} must be 1–{max_chars} characters; got {value!r}")
    if any(unicodedata.category(c).startswith("C") for c in text):
        raise ValueError(f"{what} must not contain control characters; got {value!r}")
    return text


def check_tag(tag: Any) -> str:
    """A tag, stripped: 1–64 printable characters, no comma (the CLI and exports list tags comma-separated)."""
    text = _check_label("A tag", tag, TAG_MAX_CHARS)
    if "," in text:
        raise ValueError(f"A tag must not contain a comma; got {tag!r}")
    return text


def _check_eval_set(con, eval_set: str) -> None:
    if not con.execute("SELECT count(*) FROM eval_sets WHERE name = ?", [eval_set]).fetchone()[0]:
        raise KeyError(f"Eval set {eval_set!r} not found. See `python -m workbench evalset list`.")


def _check_products(con, eval_set: str, product_ids: Iterable[str]) -> list[str]:
    """The distinct product ids, sorted; every one must belong to the eval set."""
    ids = sorted({str(p) for p in product_ids})
    if not ids:
        raise ValueError("No products given: select or filter some items first.")
    _check_eval_set(con, eval_set)
    known = {r[0] for r in con.execute("SELECT product_id FROM products WHERE eval_set = ? AND list_contains(?, "
                                       "product_id)", [eval_set, ids]).fetchall()}
    unknown = [p for p in ids if p not in known]
    if unknown:
        raise KeyError(f"{len(unknown)} product id(s) not in eval set {eval_set!r}: {unknown[:5]}"
                       + (" …" if len(unknown) > 5 else ""))
    return ids


# ----------------------------------------------------------------------------------------------------- tags
def tag_products(eval_set: str, product_ids: Iterable[str], tag: str, *, db: Db = None) -> int:
    """Give ``tag`` to the products (idempotent); returns how many did not have it yet."""
    tag = check_tag(tag)
    with store.connect(db) as con:
        ids = _check_products(con, eval_set, product_ids)
        with store.transaction(con):
            before = _count_tagged(con, eval_set, ids, tag)
            con.execute("INSERT INTO item_tags SELECT ?, unnest(?::VARCHAR[]), ?, ? ON CONFLICT DO NOTHING",
                        [eval_set, ids, tag, datetime.now()])
            return _count_tagged(con, eval_set, ids, tag) - before


def untag_products(eval_set: str, product_ids: Iterable[str], tag: str, *, db: Db = None) -> int:
    """Remove ``tag`` from the products; returns how many had it."""
    tag = check_tag(tag)
    with store.connect(db) as con:
        ids = _check_products(con, eval_set, product_ids)
        with store.transaction(con):
            had = _count_tagged(con, eval_set, ids, tag)
            con.execute("DELETE FROM item_tags WHERE eval_set = ? AND tag = ? AND list_contains(?, product_id)",
                        [eval_set, tag, ids])
            return had


def set_product_tags(eval_set: str, product_id: str, tags: Iterable[str], *, db: Db = None) -> list[str]:
    """Make ``tags`` exactly the product's tags (the detail view's editor); returns them, sorted."""
    wanted = sorted({check_tag(t) for t in tags})
    with store.connect(db) as con:
        _check_products(con, eval_set, [product_id])
        with store.transaction(con):
            con.execute("DELETE FROM item_tags WHERE eval_set = ? AND product_id = ?", [eval_set, product_id])
            if wanted:
                con.execute("INSERT INTO item_tags SELECT ?, ?, unnest(?::VARCHAR[]), ?",
                            [eval_set, product_id, wanted, datetime.now()])
    return wanted


def _count_tagged(con, eval_set: str, ids: list[str], tag: str) -> int:
    return int(con.execute("SELECT count(*) FROM item_tags WHERE eval_set = ? AND tag = ? AND list_contains(?, "
                           "product_id)", [eval_set, tag, ids]).fetchone()[0])


def list_tags(eval_set: str, *, db: Db = None) -> pd.DataFrame:
    """Every tag of the eval set with how many products carry it (``tag``, ``n_products``), by tag."""
    with store.connect(db) as con:
        _check_eval_set(con, eval_set)
        return store.query_frame(con, "SELECT tag, count(*)::INTEGER AS n_products FROM item_tags WHERE eval_set = ? "
                                      "GROUP BY tag ORDER BY tag", [eval_set])


def tagged_products(eval_set: str, tag: str, *, db: Db = None) -> list[str]:
    """The products carrying ``tag``, sorted (empty when none do)."""
    with store.connect(db) as con:
        rows = con.execute("SELECT product_id FROM item_tags WHERE eval_set = ? AND tag = ? ORDER BY product_id",
                           [eval_set, check_tag(tag)]).fetchall()
    return [r[0] for r in rows]


def product_tags(eval_set: str, product_ids: Iterable[str], *, db: Db = None) -> dict[str, list[str]]:
    """Each given product's tags, sorted (products without tags map to an empty list)."""
    ids = sorted({str(p) for p in product_ids})
    out: dict[str, list[str]] = {p: [] for p in ids}
    with store.connect(db) as con:
        rows = con.execute("SELECT product_id, tag FROM item_tags WHERE eval_set = ? AND list_contains(?, product_id) "
                           "ORDER BY product_id, tag", [eval_set, ids]).fetchall()
    for product, tag in rows:
        out[product].append(tag)
    return out


# ---------------------------------------------------------------------------------------------------- views
def _check_filters(filters: Mapping[str, Any] | None) -> dict[str, Any]:
    filters = dict(filters or {})
    unknown = sorted(set(filters) - set(VIEW_FILTER_KEYS))
    if unknown:
        raise ValueError(f"Unknown view filter(s) {unknown}; allowed: {list(VIEW_FILTER_KEYS)}")
    bad = {k: v for k, v in filters.items() if not (v is None or isinstance(v, str | int))}
    if bad:
        raise ValueError(f"View filters must be text, whole numbers or None; got {bad}")
    return {k: v for k, v in filters.items() if v is not None and v != ""}


def save_view(eval_set: str, name: str, *, filters: Mapping[str, Any] | None = None,
              products: Iterable[str] | None = None, replace: bool = False, db: Db = None) -> SavedView:
    """Store a named view: a gallery filter, a fixed selection of products, or both (the filter applies within
    the selection). An existing name is an error unless ``replace``."""
    name = _check_label("A view name", name, VIEW_NAME_MAX_CHARS)
    clean = _check_filters(filters)
    if products is None and not clean:
        raise ValueError("A view needs a filter or a selection of products; both are empty.")
    with store.connect(db) as con:
        _check_eval_set(con, eval_set)
        ids = None if products is None else _check_products(con, eval_set, products)
        with store.transaction(con):
            exists = con.execute("SELECT count(*) FROM saved_views WHERE eval_set = ? AND name = ?",
                                 [eval_set, name]).fetchone()[0]
            if exists and not replace:
                raise ValueError(f"A view named {name!r} already exists on {eval_set!r}; choose another name or "
                                 "replace it.")
            con.execute("DELETE FROM saved_views WHERE eval_set = ? AND name = ?", [eval_set, name])
            created = datetime.now()
            con.execute("INSERT INTO saved_views VALUES (?, ?, ?, ?, ?)",
                        [eval_set, name, json.dumps(clean), None if ids is None else json.dumps(ids), created])
    return SavedView(eval_set, name, clean, None if ids is None else tuple(ids), created)


def list_views(eval_set: str, *, db: Db = None) -> pd.DataFrame:
    """The eval set's views: ``name``, ``filters`` (as text), ``n_products`` (None: no fixed selection) and
    ``created_at``, by name."""
    with store.connect(db) as con:
        frame = store.query_frame(con, "SELECT name, filters, json_array_length(products) AS n_products, created_at "
                                       "FROM saved_views WHERE eval_set = ? ORDER BY name", [eval_set])
    frame["filters"] = [", ".join(f"{k}={v}" for k, v in json.loads(f).items()) for f in frame["filters"]]
    return frame[["name", "filters", "n_products", "created_at"]]


def get_view(eval_set: str, name: str, *, db: Db = None) -> SavedView:
    with store.connect(db) as con:
        row = con.execute("SELECT filters, products, created_at FROM saved_views WHERE eval_set = ? AND name = ?",
                          [eval_set, name]).fetchone()
    if row is None:
        raise KeyError(f"No view named {name!r} on eval set {eval_set!r}.")
    products = None if row[1] is None else tuple(json.loads(row[1]))
    return SavedView(eval_set, name, json.loads(row[0]), products, row[2])


def delete_view(eval_set: str, name: str, *, db: Db = None) -> None:
    get_view(eval_set, name, db=db)
    with store.connect(db) as con:
        con.execute("DELETE FROM saved_views WHERE eval_set = ? AND name = ?", [eval_set, name])


def filter_products(eval_set: str, filters: Mapping[str, Any] | None = None, *, products: Iterable[str] | None = None,
                    db: Db = None) -> list[str]:
    """The products of every pair a gallery filter matches (within ``products`` when given), sorted: what bulk
    actions on a filter act on."""
    f = _check_filters(filters)
    frame, _ = query_pairs(db, eval_set, split=f.get("split"), label=f.get("label"), pair_kind=f.get("pair_kind"),
                           category=f.get("category"), search=f.get("search", ""), tag=f.get("tag"),
                           products=None if products is None else list(products), limit=2**62)
    return sorted(set(frame["product_id"].dropna().astype(str)))


def view_products(eval_set: str, name: str, *, db: Db = None) -> list[str]:
    """A saved view's products now: those of the pairs its filter matches, within its selection if it has one."""
    view = get_view(eval_set, name, db=db)
    return filter_products(eval_set, view.filters, products=view.products, db=db)


# --------------------------------------------------------------------------------------------------- export
def selection_items(eval_set: str, product_ids: Iterable[str], *, db: Db = None) -> pd.DataFrame:
    """Every image and text of the products, one row each (:data:`SELECTION_COLUMNS`; ``tags`` comma-joined),
    by product, modality and item id: the table a selection is exported as."""
    with store.connect(db) as con:
        ids = _check_products(con, eval_set, product_ids)
        frame = store.query_frame(con, """
            SELECT ? AS eval_set, pr.product_id, pr.category, x.modality, x.item_id, x.image_path, x.text, x.language,
                   coalesce((SELECT string_agg(tag, ',' ORDER BY tag) FROM item_tags g
                             WHERE g.eval_set = pr.eval_set AND g.product_id = pr.product_id), '') AS tags
            FROM products pr JOIN (
                SELECT product_id, 'image' AS modality, image_id AS item_id, path AS image_path, NULL AS text,
                       NULL AS language FROM images WHERE eval_set = ?
                UNION ALL
                SELECT product_id, 'text', text_id, NULL, text, language FROM texts WHERE eval_set = ?
            ) x USING (product_id)
            WHERE pr.eval_set = ? AND list_contains(?, pr.product_id)
            ORDER BY pr.product_id, x.modality, x.item_id""", [eval_set, eval_set, eval_set, eval_set, ids])
    return frame[list(SELECTION_COLUMNS)]


def export_selection(frame: pd.DataFrame, fmt: str) -> bytes:
    """A selection table as the bytes of a CSV (UTF-8) or Parquet file."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format={fmt!r} is not supported; allowed: {list(EXPORT_FORMATS)}")
    if fmt == "csv":
        return frame.to_csv(index=False).encode("utf-8")
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()
