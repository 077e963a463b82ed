"""Eval sets: import (upload or server path, column mapping, validate/import with a per-row report), a paged
gallery of pairs with filters, summary charts and deletion with confirmation.

Text from eval sets is untrusted: it is shown with ``st.text``/dataframes or markdown-escaped, never as HTML.
Typed server paths (source, image root) must lie under the data roots, and uploads are stored privately under
random names and deleted once imported (:mod:`workbench.security`).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.express as px
import streamlit as st
from streamlit import config as st_config

from workbench import security
from workbench.data.evalsets import (
    chart_data,
    delete_eval_set,
    get_eval_set_info,
    import_eval_set,
    list_eval_sets,
    query_pairs,
)
from workbench.data.importers import FIELDS, get_importer, guess_format, guess_mapping, list_importers
from workbench.data.model import PAIR_KINDS, SPLITS
from workbench.data.splits import NEGATIVE_KINDS
from workbench.ui.common import escape_markdown, file_mtime, friendly_errors, thumbnail

PAGE_SIZE = 24
GALLERY_COLUMNS = 6
PREVIEW_ROWS = 8
NONE = "(none)"
UPLOAD_TYPES = ["csv", "tsv", "tab", "jsonl", "ndjson", "parquet", "pq"]


# ------------------------------------------------------------------------------------------- pure helpers
def summary_figures(info: dict, data: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Plotly figures: category balance, label balance per split, text lengths, image sizes, languages."""
    pairs = info["pairs_by_split"].copy()
    pairs["label"] = pairs["label"].map({1: "match", 0: "no match"})
    categories = info["categories"].fillna({"category": "(none)"})
    return {
        "Categories": px.bar(categories, x="category", y="n_products", title="Products per category"),
        "Labels": px.bar(pairs, x="split", y="n", color="label", pattern_shape="pair_kind", barmode="stack",
                         title="Pairs per split, label and kind"),
        "Text length": px.histogram(data["texts"], x="n_chars", color="language", nbins=40, barmode="overlay",
                                    title="Text length (characters)"),
        "Image sizes": px.scatter(data["images"], x="width", y="height", opacity=0.5,
                                  title="Image sizes (pixels)"),
        "Languages": px.pie(info["languages"], names="language", values="n_texts", title="Texts per language"),
    }


def build_mapping(choices: dict[str, str], attributes: list[str]) -> dict[str, str | None]:
    """Widget choices → importer mapping: every field explicit (None unmaps a guess) plus attr.COLUMN fields."""
    mapping: dict[str, str | None] = {f: (None if c == NONE else c) for f, c in choices.items()}
    for column in attributes:
        key = "attr." + re.sub(r"[^0-9a-z]+", "_", column.lower()).strip("_")
        if key != "attr." and key not in mapping:
            mapping[key] = column
    return mapping


def outcome_counts(report: pd.DataFrame) -> pd.DataFrame:
    if report.empty:
        return pd.DataFrame(columns=["severity", "code", "rows", "issues"])
    return (report.groupby(["severity", "code"]).agg(rows=("row", "nunique"), issues=("row", "size"))
            .reset_index().sort_values(["severity", "issues"], ascending=[True, False]))


# ------------------------------------------------------------------------------------------------ cached
@st.cache_data(ttl=2, show_spinner=False)
def cached_eval_sets(db: str) -> pd.DataFrame:
    return list_eval_sets(db)


@st.cache_data(ttl=2, show_spinner=False)
def cached_info(db: str, name: str) -> dict:
    return get_eval_set_info(name, db)


@st.cache_data(ttl=2, show_spinner=False)
def cached_page(db: str, name: str, filters: tuple, page: int) -> tuple[pd.DataFrame, int]:
    split, label, kind, category, search = filters
    return query_pairs(db, name, split=split, label=label, pair_kind=kind, category=category, search=search,
                       limit=PAGE_SIZE, offset=page * PAGE_SIZE)


@st.cache_data(ttl=60, show_spinner=False)
def cached_chart_data(db: str, name: str, content_hash: str) -> dict[str, pd.DataFrame]:
    return chart_data(db, name)


@st.cache_data(max_entries=16, show_spinner=False)
def preview_source(path: str, mtime: float, fmt: str) -> tuple[list[str], pd.DataFrame, int]:
    """Columns, the first rows as a table of strings, and the row count (the importer's own reader)."""
    table = get_importer(fmt).reader(Path(path))
    rows = [values for _, values in table.rows[:PREVIEW_ROWS]]
    return table.columns, pd.DataFrame(rows, columns=table.columns, dtype=str), table.n_rows


def upload_limit_mb() -> int:
    """The size limit shown on the uploader and enforced on what it receives."""
    return security.upload_limit_mb(st_config.get_option("server.maxUploadSize"))


def save_upload(db: Path | str, filename: str, content: bytes) -> Path:
    """Remove stale uploads, then store this one in the private upload folder under a random name."""
    security.clean_uploads(db)
    return security.store_upload(db, filename, content, limit_mb=upload_limit_mb())


def _clear_caches() -> None:
    cached_eval_sets.clear()
    cached_info.clear()
    cached_page.clear()


# ------------------------------------------------------------------------------------------------ import
def _stored_upload(db: Path, upload: Any) -> Path:
    """The upload's private copy, written once per uploaded file (reruns reuse it until it is imported)."""
    stored = st.session_state.get("evalsets_upload_stored")
    if stored and stored[0] == upload.file_id and Path(stored[1]).is_file():
        return Path(stored[1])
    path = save_upload(db, upload.name, upload.getvalue())
    st.session_state["evalsets_upload_stored"] = (upload.file_id, str(path))
    return path


def _source_path(db: Path) -> tuple[Path, str | None] | None:
    """The source to read and, for an upload, the user's file name (recorded as the eval set's source)."""
    kind = st.radio("Source", ["Upload a file", "A file or folder on the server"], horizontal=True,
                    key="evalsets_source_kind")
    if kind == "Upload a file":
        limit = upload_limit_mb()
        upload = st.file_uploader(f"Eval set file (CSV, TSV, JSONL or Parquet; at most {limit} MB)",
                                  type=UPLOAD_TYPES, key="evalsets_upload", max_upload_size=limit)
        if upload is None:
            st.info("Upload a table with one row per (image, text): columns such as `image_path`, `title`, "
                    "`sku`, `category`, and optionally `label`/`split`. Image paths are read relative to the "
                    "image root below, so an uploaded table needs absolute image paths under it or URLs. "
                    "The upload is kept privately and deleted once imported.")
            return None
        try:
            return _stored_upload(db, upload), upload.name
        except ValueError as exc:
            st.error(f"Upload refused: {exc}")
            return None
    typed = st.text_input("Path on the server", key="evalsets_path",
                          placeholder="/data/catalogue/pairs.csv or a folder with one sub-folder per category")
    if not typed.strip():
        st.info("Type the path of a CSV/TSV/JSONL/Parquet file or of an image folder on this server, under "
                f"the data roots ({', '.join(str(r) for r in security.data_roots(db))}).")
        return None
    try:
        path = security.check_server_path(typed, db, what="path")
    except ValueError as exc:
        st.error(f"Refused: {exc}")
        return None
    if not path.exists():
        st.error(f"Nothing at {path}; check the path (it is read on the server, not your computer).")
        return None
    return path, None


def _mapping_widgets(columns: list[str], token: str) -> dict[str, str | None]:
    guessed = guess_mapping(columns)
    options = [NONE, *columns]
    st.markdown("**Columns** (guessed from their names; change any)")
    cols = st.columns(4)
    choices: dict[str, str] = {}
    for i, field in enumerate(FIELDS):
        default = guessed.get(field)
        choices[field] = cols[i % 4].selectbox(
            field + (" *" if field in ("image", "text") else ""), options,
            index=options.index(default) if default in options else 0, key=f"evalsets_map_{field}_{token}")
    used = set(choices.values())
    attr_field = {c: f for f, c in guessed.items() if f.startswith("attr.")}
    attributes = st.multiselect("Attribute columns (e.g. color, material)", [c for c in columns if c not in used],
                                default=[c for c in attr_field if c not in used], key=f"evalsets_attrs_{token}")
    mapping = build_mapping(choices, [c for c in attributes if c not in attr_field])
    mapping.update({f: (c if c in attributes else None) for c, f in attr_field.items()})
    return mapping


def _show_outcome(outcome: Any, validate_only: bool, strict: bool) -> None:
    good = outcome.n_rows - outcome.n_bad_rows
    line = f"{outcome.n_rows} rows read, {outcome.n_bad_rows} with errors, {good} good."
    if outcome.imported:
        s = outcome.summary
        st.success(f"Imported '{outcome.name}': {s.get('n_products')} products, {s.get('n_images')} images, "
                   f"{s.get('n_texts')} texts, {s.get('n_pairs')} pairs. {line}")
    elif validate_only:
        (st.success if outcome.n_bad_rows == 0 else st.warning)(f"Validation: {line}")
    elif strict:
        st.error(f"Strict mode: nothing was imported because {outcome.n_bad_rows} row(s) have errors. {line} "
                 "Fix them, or choose lenient to import the good rows only.")
    if outcome.report.empty:
        st.caption("No issues found.")
        return
    bad = sorted(int(r) for r in outcome.report.loc[outcome.report["severity"] == "error", "row"].unique() if r > 0)
    if bad:
        st.caption("Rows with errors: " + ", ".join(map(str, bad[:30])) + (" …" if len(bad) > 30 else ""))
    st.dataframe(outcome_counts(outcome.report), hide_index=True)
    st.caption("Per-row report (row 0 = the file itself)")
    st.dataframe(outcome.report, hide_index=True, width="stretch")
    st.download_button("Download the report (CSV)", outcome.report.to_csv(index=False).encode("utf-8"),
                       file_name="import_report.csv", mime="text/csv")


def import_section(db: Path) -> None:
    """Pick a source, map its columns, choose the options, then Validate or Import."""
    source = _source_path(db)
    if source is None:
        return
    path, upload_name = source
    try:
        guessed_format = guess_format(path)
    except ValueError as exc:
        st.warning(str(exc))
        guessed_format = None
    formats = list_importers()
    token = hashlib.sha256(str(path).encode()).hexdigest()[:10]
    fmt = st.selectbox("Format", formats, key=f"evalsets_format_{token}",
                       index=formats.index(guessed_format) if guessed_format in formats else 0)
    typed_root = st.text_input("Image root (optional; default: the file's folder)", key="evalsets_image_root")
    image_root = None
    if typed_root.strip():
        try:
            image_root = security.check_server_path(typed_root, db, what="image root")
        except ValueError as exc:
            st.error(f"Refused: {exc}")
            return
    with friendly_errors("Reading the source"):
        columns, preview, n_rows = preview_source(str(path), file_mtime(path), fmt)
        st.caption(f"Preview: first {min(PREVIEW_ROWS, len(preview))} of {n_rows} rows of "
                   f"{escape_markdown(upload_name or path.name)}")
        st.dataframe(preview, hide_index=True, width="stretch")
        mapping = _mapping_widgets(columns, f"{token}_{fmt}")
        c1, c2, c3, c4 = st.columns([2, 1, 2, 1])
        name = c1.text_input("Eval set name", value=Path(upload_name or path).stem, key=f"evalsets_name_{token}")
        mode = c2.radio("Mode", ["strict", "lenient"], key="evalsets_mode",
                        help="strict: import nothing if any row has an error; lenient: import the good rows.")
        negatives = c3.multiselect("Generated negatives", list(NEGATIVE_KINDS), default=list(NEGATIVE_KINDS),
                                   key="evalsets_negatives", help="Only for tables without a label column.")
        seed = c4.number_input("Seed", 0, 2**31 - 1, 0, step=1, key="evalsets_seed")
        b1, b2, _ = st.columns([1, 1, 4])
        validate, do_import = b1.button("Validate"), b2.button("Import", type="primary")
        if not (validate or do_import):
            return
        bar = st.progress(0.0, text="Checking images…")

        def progress(done: int, total: int) -> None:
            bar.progress(done / total if total else 1.0, text=f"Checking images: {done}/{total}")

        outcome = import_eval_set(path, name, db=db, fmt=fmt, mapping=mapping, image_root=image_root,
                                  strict=mode == "strict", negatives=tuple(negatives), seed=int(seed),
                                  validate_only=validate, progress=progress, source_name=upload_name)
        bar.empty()
        if outcome.imported:
            _clear_caches()
            st.session_state["selected_eval_set"] = outcome.name
            if upload_name is not None:
                security.remove_upload(path, db)
                st.session_state.pop("evalsets_upload_stored", None)
        _show_outcome(outcome, validate, mode == "strict")


# ------------------------------------------------------------------------------------------------ browse
def choose_eval_set(sets: pd.DataFrame) -> str:
    names = list(sets["name"])
    if st.session_state.get("selected_eval_set") not in names:
        st.session_state["selected_eval_set"] = names[0]
    st.session_state["evalsets_choice"] = st.session_state["selected_eval_set"]
    return st.selectbox("Eval set", names, key="evalsets_choice", on_change=_remember_choice)


def _remember_choice() -> None:
    st.session_state["selected_eval_set"] = st.session_state["evalsets_choice"]


def overview(db: Path, name: str) -> dict | None:
    with friendly_errors("Loading the eval set"):
        info = cached_info(str(db), name)
        cols = st.columns(5)
        for col, key in zip(cols, ("n_products", "n_images", "n_texts", "n_pairs"), strict=False):
            col.metric(key.removeprefix("n_"), f"{int(info[key]):,}")
        cols[4].metric("format", str(info.get("format") or "—"))
        st.caption(f"Source: {escape_markdown(info.get('source'))} · seed {info.get('seed')} · "
                   f"content hash {str(info.get('content_hash'))[:12]}")
        return info
    return None


def gallery(db: Path, name: str, info: dict) -> None:
    """Filters, a text search and a page of pair cards (thumbnail, text, label, split, category, kind)."""
    categories = sorted(c for c in info["categories"]["category"].dropna())
    c1, c2, c3, c4, c5 = st.columns([1, 1, 1, 1, 2])
    split = c1.selectbox("Split", ["all", *SPLITS], key="evalsets_f_split")
    label = c2.selectbox("Label", ["all", "match", "no match"], key="evalsets_f_label")
    kind = c3.selectbox("Pair kind", ["all", *PAIR_KINDS], key="evalsets_f_kind")
    category = c4.selectbox("Category", ["all", *categories], key="evalsets_f_category")
    search = c5.text_input("Search text or product id", key="evalsets_f_search")
    filters = (None if split == "all" else split, {"all": None, "match": 1, "no match": 0}[label],
               None if kind == "all" else kind, None if category == "all" else category, search)
    if st.session_state.get("evalsets_filters") != (name, filters):
        st.session_state["evalsets_filters"] = (name, filters)
        st.session_state["evalsets_page"] = 1
    with friendly_errors("Loading pairs"):
        _, total = cached_page(str(db), name, filters, 0)
        n_pages = max(1, -(-total // PAGE_SIZE))
        st.session_state["evalsets_page"] = min(st.session_state.get("evalsets_page", 1), n_pages)
        p1, p2 = st.columns([1, 5], vertical_alignment="bottom")
        page = p1.number_input("Page", 1, n_pages, step=1, key="evalsets_page")
        p2.caption(f"{total:,} pairs match · page {page} of {n_pages} · {PAGE_SIZE} per page")
        frame, _ = cached_page(str(db), name, filters, int(page) - 1)
        if frame.empty:
            st.info("No pairs match these filters.")
            return
        for start in range(0, len(frame), GALLERY_COLUMNS):
            cols = st.columns(GALLERY_COLUMNS)
            for col, row in zip(cols, frame.iloc[start:start + GALLERY_COLUMNS].itertuples(index=False),
                                strict=False):
                with col.container(border=True):
                    image = thumbnail(row.path, file_mtime(row.path))
                    if image is None:
                        st.caption("image unavailable")
                    else:
                        st.image(image)
                    st.text(row.text)
                    mark = "✅ match" if row.label == 1 else "❌ no match"
                    swapped = f" ({row.swapped_attribute})" if isinstance(row.swapped_attribute, str) else ""
                    st.caption(f"{mark} · {row.split} · {row.pair_kind}{escape_markdown(swapped)} · "
                               f"{escape_markdown(row.category or 'no category')}")


def charts(db: Path, name: str, info: dict) -> None:
    with friendly_errors("Drawing the charts"):
        data = cached_chart_data(str(db), name, str(info.get("content_hash")))
        figures = summary_figures(info, data)
        names = list(figures)
        for i in range(0, len(names), 2):
            cols = st.columns(2)
            for col, key in zip(cols, names[i:i + 2], strict=False):
                col.plotly_chart(figures[key], width="stretch", key=f"evalsets_chart_{key}")


def delete_section(db: Path, name: str, info: dict) -> None:
    with st.expander(f"Delete '{name}'"):
        st.warning("Deleting removes the eval set and every run made on it (scores, metrics). "
                   "Cached embeddings are kept.")
        confirmed = st.checkbox(f"Yes, delete '{name}' and its runs", key=f"evalsets_confirm_{name}")
        if st.button("Delete eval set", disabled=not confirmed, key="evalsets_delete"):
            with friendly_errors("Deleting the eval set"):
                delete_eval_set(name, db)
                _clear_caches()
                st.session_state["selected_eval_set"] = None
                st.session_state["evalsets_flash"] = f"Deleted eval set '{name}'."
                st.rerun()


def flash() -> None:
    message = st.session_state.pop("evalsets_flash", None)
    if message:
        st.success(message)
