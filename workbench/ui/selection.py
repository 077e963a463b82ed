"""Selections: what a gallery filter, a lasso or the Mismatches filters picked, turned into actions on its products
(tag or untag in bulk, save as a named view, export as CSV or Parquet), and the lasso's table of thumbnails and
texts from which any product's detail view opens.

The products of a selection are passed as a callable, so a filter over many pairs is resolved only when an action
is pressed, never on every rerun; exports are generated when the download is clicked.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd
import streamlit as st

from workbench.data.tags import (
    EXPORT_FORMATS,
    export_selection,
    save_view,
    selection_items,
    tag_products,
    untag_products,
)
from workbench.ui import cache
from workbench.ui.common import escape_markdown, friendly_errors
from workbench.ui.detail import detail_button

MAX_TABLE_ROWS = 500  # selected points listed in the lasso table (all of them are tagged, saved and exported)
THUMB_SIDE = 96
MIME = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}


def _flash(key: str) -> None:
    message = st.session_state["selection_message"]
    if message and message[0] == key:
        st.info(message[1])
        st.session_state["selection_message"] = None


def selection_actions(db: str, eval_set: str, products: Callable[[], list[str]], *, key: str, what: str,
                      filters: Mapping[str, Any] | None = None) -> None:
    """Tag/untag the selection's products, save it as a view (``filters`` when given, so the view follows the
    data; else the products themselves), and export its products' images and texts. ``what`` (plain text) says
    what is selected."""
    st.markdown(f"**{escape_markdown(what)}**")
    _flash(key)
    c1, c2, c3 = st.columns(3)
    with c1:
        tag = st.text_input("Tag", key=f"{key}_tag", placeholder="e.g. blurry, wrong colour")
        b1, b2 = st.columns(2)
        add = b1.button("Add tag", key=f"{key}_tag_add")
        remove = b2.button("Remove tag", key=f"{key}_tag_remove")
    with c2:
        name = st.text_input("View name", key=f"{key}_view_name")
        replace = st.checkbox("Replace a view of that name", key=f"{key}_view_replace")
        save = st.button("Save view", key=f"{key}_view_save",
                         help="Saves " + ("this filter" if filters is not None else "these products") + " by name; "
                              "reopen it from the Eval sets gallery.")
    with c3:
        fmt = st.radio("Export as", EXPORT_FORMATS, horizontal=True, key=f"{key}_format", format_func=str.upper)
        st.download_button("Export", data=lambda: _export(db, eval_set, products, fmt),
                           file_name=f"{eval_set}-selection.{fmt}", mime=MIME[fmt], key=f"{key}_export",
                           on_click="ignore", help="One row per image and text of the selected products, with tags.")
    if add or remove:
        with friendly_errors("Tagging"):
            ids = products()
            n = (tag_products if add else untag_products)(eval_set, ids, tag, db=db)
            cache.forget_tags(eval_set, db, [tag.strip()])
            done = (f"Tag '{tag.strip()}' added to {n} product(s)" if add
                    else f"Tag '{tag.strip()}' removed from {n} product(s)")
            st.session_state["selection_message"] = (key, f"{done} of the {len(ids)} selected.")
            st.rerun()
    if save:
        with friendly_errors("Saving the view"):
            view = save_view(eval_set, name, filters=filters, products=None if filters is not None else products(),
                             replace=replace, db=db)
            cache.forget_view(eval_set, view.name, db)
            st.session_state["selection_message"] = (key, f"View '{view.name}' saved.")
            st.rerun()


def _export(db: str, eval_set: str, products: Callable[[], list[str]], fmt: str) -> bytes:
    return export_selection(selection_items(eval_set, products(), db=db), fmt)


def thumbnail_uri(path: str | None) -> str | None:
    """A small JPEG as a data URI (for an image column of a table), or None when the file cannot be read."""
    data = cache.thumbnail(path, cache.file_mtime(path), max_side=THUMB_SIDE)
    return None if data is None else "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


def points_table(points: pd.DataFrame) -> pd.DataFrame:
    """Selected map points (a projection frame's rows) as a table: thumbnail for images, text for texts."""
    shown = points.head(MAX_TABLE_ROWS)
    images = shown["modality"] == "image"
    return pd.DataFrame({
        "thumbnail": [thumbnail_uri(p) if i else None for p, i in zip(shown["image_path"], images, strict=True)],
        "modality": shown["modality"], "item": shown["item_id"], "product": shown["product_id"],
        "category": shown["category"], "text": shown["label_text"].where(~images, None),
    }).reset_index(drop=True)


def lasso_selection(points: pd.DataFrame, eval_set: str, db: str, key: str) -> None:
    """The points picked with the box or lasso: a table with thumbnails and texts, a product to open in the
    detail view, and the actions on their products."""
    products = sorted(set(points["product_id"].dropna().astype(str)))
    more = f" (first {MAX_TABLE_ROWS} listed)" if len(points) > MAX_TABLE_ROWS else ""
    st.markdown(f"**Selected: {len(points):,} points of {len(products):,} products**{more}")
    st.dataframe(points_table(points), hide_index=True, width="stretch", key=f"{key}_table",
                 column_config={"thumbnail": st.column_config.ImageColumn("thumbnail", width="small")})
    if not products:
        return
    p1, p2 = st.columns([3, 1], vertical_alignment="bottom")
    product = p1.selectbox("Product", products, key=f"{key}_product")
    with p2:
        detail_button(eval_set, product, key=f"{key}_open", label="Open details")
    selection_actions(db, eval_set, lambda: products, key=key,
                      what=f"Tag, save or export the {len(products):,} selected products")
