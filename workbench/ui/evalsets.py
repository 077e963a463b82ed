"""Eval sets: import (upload or server path, column mapping, validate/import with a per-row report), a paged
gallery of pairs with filters, summary charts and deletion with confirmation.

Text from eval sets is untrusted: it is shown with ``st.text``/dataframes or markdown-escaped, never as HTML.
Typed server paths (source, image root) must lie under the data roots (:mod:`workbench.security`), and uploads
are stored privately under random names and deleted once imported (:mod:`workbench.data.uploads`).
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st
from streamlit import config as st_config

from workbench import security
from workbench.data.archive import is_archive
from workbench.data.evalsets import EvalSetError, delete_eval_set, import_eval_set
from workbench.data.importers import FIELDS, guess_mapping
from workbench.data.mapping import mapping_from_choices
from workbench.data.model import PAIR_KINDS, SPLITS
from workbench.data.readers import guess_format, list_importers
from workbench.data.splits import NEGATIVE_KINDS
from workbench.data.tags import filter_products
from workbench.data.uploads import remove_upload, save_upload
from workbench.data.validation import issue_counts
from workbench.ui import cache
from workbench.ui.common import escape_markdown, friendly_errors
from workbench.ui.detail import detail_button
from workbench.ui.selection import selection_actions
from workbench.viz.evalsets import eval_set_figures

GALLERY_COLUMNS = 6
NONE = "(none)"
UPLOAD_TYPES = ["zip", "csv", "tsv", "tab", "jsonl", "ndjson", "parquet", "pq"]


def upload_limit_mb() -> int:
    """The size limit shown on the uploader and enforced on what it receives."""
    return security.upload_limit_mb(st_config.get_option("server.maxUploadSize"))


# ------------------------------------------------------------------------------------------------ import
FIELD_LABELS = {"image": "image *", "text": "text *"}  # the form labels of the required fields
REQUIRED = ("image", "text")
AUTO = "auto"  # a ZIP's format: the one table inside it
MAX_LISTED_PROBLEMS = 10


def _stored_upload(db: str, upload: Any) -> Path:
    """The upload's private copy, written once per uploaded file (reruns reuse it until it is imported)."""
    stored = st.session_state.get("evalsets_upload_stored")
    if stored and stored[0] == upload.file_id and Path(stored[1]).is_file():
        return Path(stored[1])
    path = save_upload(db, upload.name, upload.getvalue(), limit_mb=upload_limit_mb())
    st.session_state["evalsets_upload_stored"] = (upload.file_id, str(path))
    return path


def _source_path(db: str) -> tuple[Path, str | None] | None:
    """The source to read and, for an upload, the user's file name (recorded as the eval set's source)."""
    kind = st.radio("Source", ["Upload a file", "A file or folder on the server"], horizontal=True,
                    key="evalsets_source_kind")
    if kind == "Upload a file":
        limit = upload_limit_mb()
        upload = st.file_uploader(f"Eval set: a ZIP with a table and its images, or a table alone (CSV, TSV, JSONL "
                                  f"or Parquet; at most {limit} MB)", type=UPLOAD_TYPES, key="evalsets_upload",
                                  max_upload_size=limit)
        if upload is None:
            st.info("Upload a **ZIP** holding one table (one row per image and text: columns such as "
                    "`image_path`, `title`, `sku`, `category`, optionally `label`/`split`) and its images, with "
                    "image paths relative to the table inside the archive. A table uploaded alone needs image URLs "
                    "or absolute paths under the data roots. The upload is kept privately and deleted once "
                    "imported.")
            return None
        try:
            return _stored_upload(db, upload), upload.name
        except ValueError as exc:
            st.error(f"Upload refused: {exc}")
            return None
    typed = st.text_input("Path on the server", key="evalsets_path",
                          placeholder="/data/catalogue/pairs.csv, a ZIP, or a folder with one sub-folder per category")
    if not typed.strip():
        st.info("Type the path of a CSV/TSV/JSONL/Parquet file, a ZIP or an image folder on this server, under "
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


def _format_choice(path: Path, token: str) -> str | None:
    """The importer to read with: for a ZIP, 'auto' (the one table inside) or a format; else the guess."""
    formats = list_importers()
    if is_archive(path):
        choice = st.selectbox("Format of the table inside the archive", [AUTO, *formats],
                              key=f"evalsets_format_{token}",
                              help="auto: the one table the archive holds; 'folder' reads its images by folder.")
        return None if choice == AUTO else choice
    try:
        guessed = guess_format(path)
    except ValueError as exc:
        st.warning(str(exc))
        guessed = None
    return st.selectbox("Format", formats, key=f"evalsets_format_{token}",
                        index=formats.index(guessed) if guessed in formats else 0)


def _image_root(db: str, archive: bool) -> tuple[bool, str | None]:
    """(usable, image root): a folder inside the archive, or a server folder under the data roots."""
    if archive:
        typed = st.text_input("Image folder inside the archive (optional; default: the table's folder)",
                              key="evalsets_archive_root")
        return True, typed.strip() or None
    typed = st.text_input("Image root (optional; default: the file's folder)", key="evalsets_image_root")
    if not typed.strip():
        return True, None
    try:
        return True, str(security.check_server_path(typed, db, what="image root"))
    except ValueError as exc:
        st.error(f"Refused: {exc}")
        return False, None


def _mapping_widgets(columns: list[str], token: str) -> dict[str, str | None]:
    guessed = guess_mapping(columns)
    options = [NONE, *columns]
    st.markdown("**Columns** (guessed from their names; change any; * = required)")
    cols = st.columns(4)
    choices: dict[str, str] = {}
    for i, field in enumerate(FIELDS):
        default = guessed.get(field)
        choices[field] = cols[i % 4].selectbox(
            FIELD_LABELS.get(field, field), options,
            index=options.index(default) if default in options else 0, key=f"evalsets_map_{field}_{token}")
    used = set(choices.values())
    attr_field = {c: f for f, c in guessed.items() if f.startswith("attr.")}
    attributes = st.multiselect("Attribute columns (e.g. color, material)", [c for c in columns if c not in used],
                                default=[c for c in attr_field if c not in used], key=f"evalsets_attrs_{token}")
    return mapping_from_choices({f: (None if c == NONE else c) for f, c in choices.items()}, attributes, guessed)


def unmapped_required(mapping: dict[str, str | None]) -> list[str]:
    """The required fields (image, text) no column is mapped to."""
    return [field for field in REQUIRED if not mapping.get(field)]


def _data_uri(png: Any) -> str | None:
    return None if not isinstance(png, bytes) else "data:image/png;base64," + base64.b64encode(png).decode()


def _path_preview(db: str, path: Path, fmt: str | None, mapping: dict, image_root: str | None,
                  upload_name: str | None) -> None:
    """How the first rows' image paths resolve, with thumbnails, before anything is validated (paths inside an
    uploaded archive are shown under the user's file name, not the stored copy's random one)."""
    frame = cache.image_path_preview(str(path), cache.file_mtime(path), fmt, tuple(sorted(mapping.items())),
                                     image_root, db)
    if upload_name:
        prefix = f"{path.name}: "
        frame = frame.assign(resolved_path=[f"{upload_name}: {p.removeprefix(prefix)}" if isinstance(p, str) and
                                            p.startswith(prefix) else p for p in frame["resolved_path"]])
    found = int((frame["exists"] == True).sum())  # noqa: E712 - None (a URL) is neither found nor missing
    st.markdown(f"**Image paths of the first {len(frame)} rows**: {found} found")
    shown = frame.drop(columns=["thumbnail"]).assign(thumbnail=[_data_uri(v) for v in frame["thumbnail"]])
    st.dataframe(shown[["row", "thumbnail", "raw_path", "resolved_path", "exists", "width", "height", "problem"]],
                 hide_index=True, width="stretch", row_height=56,
                 column_config={"thumbnail": st.column_config.ImageColumn("image", width="small"),
                                "problem": st.column_config.TextColumn("problem", width="large")})
    problems = [str(p) for p in frame["problem"] if isinstance(p, str) and not p.startswith("a URL")]
    if problems:
        st.warning(f"{len(problems)} of the first {len(frame)} image paths do not resolve to a readable image, "
                   f"e.g. {problems[0]}. " + ("Set the image folder inside the archive if the images are in a "
                                              "sub-folder." if is_archive(path) else
                                              "Set the image root to the folder the paths are relative to."))


def _show_outcome(outcome: Any, validate_only: bool, strict: bool) -> None:
    """One summary whose counts match the report below: rows read, rows with errors, good rows, and the problems
    of the file itself (e.g. a missing column), which block every row."""
    report = outcome.report
    file_errors = report[(report["row"] == 0) & (report["severity"] == "error")] if not report.empty else report
    good = outcome.n_rows - outcome.n_bad_rows
    line = f"{outcome.n_rows} rows read, {outcome.n_bad_rows} with errors, {good} good."
    if outcome.imported:
        s = outcome.summary
        st.success(f"Imported '{outcome.name}': {s.get('n_products')} products, {s.get('n_images')} images, "
                   f"{s.get('n_texts')} texts, {s.get('n_pairs')} pairs. {line}")
    elif len(file_errors):
        st.error(f"{'Validation' if validate_only else 'Nothing was imported'}: the file itself has "
                 f"{len(file_errors)} error(s), so no row can be imported ({outcome.n_rows} rows read). "
                 + " ".join(escape_markdown(m) for m in file_errors["message"].head(3)))
    elif validate_only:
        (st.success if outcome.n_bad_rows == 0 else st.warning)(f"Validation: {line}")
    elif strict:
        st.error(f"Strict mode: nothing was imported because {outcome.n_bad_rows} row(s) have errors. {line} "
                 "Fix them, or choose lenient to import the good rows only.")
    _show_report(report)


def _show_report(report: pd.DataFrame) -> None:
    if report.empty:
        st.caption("No issues found.")
        return
    bad = sorted(int(r) for r in report.loc[report["severity"] == "error", "row"].unique() if r > 0)
    if bad:
        st.caption("Rows with errors: " + ", ".join(map(str, bad[:30])) + (" …" if len(bad) > 30 else ""))
    st.dataframe(issue_counts(report), hide_index=True)
    st.markdown("**First problems**")
    st.markdown("\n".join(f"- row {int(r.row)}, {escape_markdown(r.field)}: {escape_markdown(r.code)}: "
                          f"{escape_markdown(r.message)}" for r in report.head(MAX_LISTED_PROBLEMS).itertuples()))
    st.caption("Per-row report (row 0 = the file itself)")
    st.dataframe(report, hide_index=True, width="stretch",
                 column_config={"message": st.column_config.TextColumn("message", width="large")})
    st.download_button("Download the report (CSV)", report.to_csv(index=False).encode("utf-8"),
                       file_name="import_report.csv", mime="text/csv")


def import_section(db: str) -> None:
    """Pick a source, choose its format and image root, map its columns, preview how image paths resolve, choose
    the options, then Validate or Import."""
    source = _source_path(db)
    if source is None:
        return
    path, upload_name = source
    token = hashlib.sha256(str(path).encode()).hexdigest()[:10]
    fmt = _format_choice(path, token)
    usable, image_root = _image_root(db, is_archive(path))
    if not usable:
        return
    with friendly_errors("Reading the source"):
        preview = cache.source_preview(str(path), cache.file_mtime(path), fmt, db)
        st.caption(f"Preview: first {len(preview.rows)} of {preview.n_rows} rows of "
                   f"{escape_markdown(upload_name or path.name)}")
        st.dataframe(preview.rows, hide_index=True, width="stretch")
        mapping = _mapping_widgets(preview.columns, f"{token}_{fmt}")
        missing = unmapped_required(mapping)
        if missing:
            st.error("Set the " + " and ".join(f"**{escape_markdown(FIELD_LABELS[f])}** column" for f in missing)
                     + " above: no column is mapped to it, so no row could be imported. Choose the column that "
                     + ("holds image paths" if "image" in missing else "holds the product text")
                     + (" and the one that holds the product text." if len(missing) == 2 else "."))
        else:
            _path_preview(db, path, fmt, mapping, image_root, upload_name)
        c1, c2, c3, c4 = st.columns([2, 1, 2, 1])
        name = c1.text_input("Eval set name", value=Path(upload_name or path).stem, key=f"evalsets_name_{token}")
        mode = c2.radio("Mode", ["strict", "lenient"], key="evalsets_mode",
                        help="strict: import nothing if any row has an error; lenient: import the good rows.")
        negatives = c3.multiselect("Generated negatives", list(NEGATIVE_KINDS), default=list(NEGATIVE_KINDS),
                                   key="evalsets_negatives", help="Only for tables without a label column.")
        seed = c4.number_input("Seed", 0, 2**31 - 1, 0, step=1, key="evalsets_seed")
        b1, b2, _ = st.columns([1, 1, 4])
        validate = b1.button("Validate", disabled=bool(missing))
        do_import = b2.button("Import", type="primary", disabled=bool(missing))
        if not (validate or do_import):
            return
        bar = st.progress(0.0, text="Checking images…")

        def progress(done: int, total: int) -> None:
            bar.progress(done / total if total else 1.0, text=f"Checking images: {done}/{total}")

        try:
            outcome = import_eval_set(path, name, db=db, fmt=fmt, mapping=mapping, image_root=image_root,
                                      strict=mode == "strict", negatives=tuple(negatives), seed=int(seed),
                                      validate_only=validate, progress=progress, source_name=upload_name)
        except EvalSetError as exc:
            bar.empty()
            st.error(f"Nothing was imported: {escape_markdown(exc)}")
            if exc.report is not None:
                _show_report(exc.report)
            return
        bar.empty()
        if outcome.imported:
            cache.forget_eval_sets(db)
            st.session_state["selected_eval_set"] = outcome.name
            if upload_name is not None:
                remove_upload(path, db)
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


def overview(db: str, sets: pd.DataFrame, name: str) -> dict | None:
    """Counts, format, source and content hash of one eval set; None (with the reason shown) when unreadable."""
    with friendly_errors("Loading the eval set"):
        info = cache.eval_set_info(db, name, cache.eval_set_version(sets.set_index("name").loc[name]))
        cols = st.columns(5)
        for col, key in zip(cols, ("n_products", "n_images", "n_texts", "n_pairs"), strict=False):
            col.metric(key.removeprefix("n_"), f"{int(info[key]):,}")
        cols[4].metric("format", str(info.get("format") or "—"))
        st.caption(f"Source: {escape_markdown(info.get('source'))} · seed {info.get('seed')} · "
                   f"content hash {str(info.get('content_hash'))[:12]}")
        return info
    return None


LABEL_FILTERS = {"all": None, "match": 1, "no match": 0}


def _apply_view(db: str, name: str) -> None:
    """Saved-view callback: set the gallery's filter widgets to the view's filter (its products, if any, then
    restrict the gallery while the view stays chosen)."""
    chosen = st.session_state["evalsets_f_view"]
    if chosen is None:
        return
    try:
        view = cache.saved_view(name, chosen, db)
    except KeyError as exc:  # deleted by someone else since the list was read
        st.session_state["selection_message"] = ("evalsets_selection", f"Opening the view failed: {exc.args[0]}")
        return
    f = view.filters
    label = {v: k for k, v in LABEL_FILTERS.items()}.get(f.get("label"), "all")
    st.session_state.update({
        "evalsets_f_split": f.get("split", "all"), "evalsets_f_label": label,
        "evalsets_f_kind": f.get("pair_kind", "all"), "evalsets_f_category": f.get("category", "all"),
        "evalsets_f_search": f.get("search", ""), "evalsets_f_tag": f.get("tag"),
    })


def gallery_filters(db: str, name: str, info: dict) -> tuple[tuple, dict[str, Any]]:
    """The filter widgets (split, label, kind, category, tag, search, saved view): the filter tuple of
    :func:`workbench.ui.cache.pairs_page` and the same filter as a saved view stores it."""
    categories = sorted(c for c in info["categories"]["category"].dropna())
    tags = list(cache.tag_counts(name, db)["tag"])
    views = list(cache.saved_views(name, db)["name"])
    for key, options in (("evalsets_f_category", ["all", *categories]), ("evalsets_f_tag", [None, *tags]),
                         ("evalsets_f_view", [None, *views])):
        if st.session_state.get(key) not in options:  # a view or tag of another eval set, or one just deleted
            st.session_state.pop(key, None)
    c1, c2, c3, c4, c5, c6, c7 = st.columns([1, 1, 1, 1, 1, 2, 1.5])
    split = c1.selectbox("Split", ["all", *SPLITS], key="evalsets_f_split")
    label = c2.selectbox("Label", list(LABEL_FILTERS), key="evalsets_f_label")
    kind = c3.selectbox("Pair kind", ["all", *PAIR_KINDS], key="evalsets_f_kind")
    category = c4.selectbox("Category", ["all", *categories], key="evalsets_f_category")
    tag = c5.selectbox("Tag", [None, *tags], key="evalsets_f_tag", format_func=lambda t: "any" if t is None else t)
    search = c6.text_input("Search text or product id", key="evalsets_f_search")
    view = c7.selectbox("Saved view", [None, *views], key="evalsets_f_view", on_change=_apply_view, args=(db, name),
                        format_func=lambda v: "none" if v is None else v,
                        help="Opening a view sets the filters it saved; a view of selected products also keeps "
                             "the gallery to them while it is chosen.")
    products = cache.saved_view(name, view, db).products if view is not None else None
    saved = {"split": None if split == "all" else split, "label": LABEL_FILTERS[label],
             "pair_kind": None if kind == "all" else kind, "category": None if category == "all" else category,
             "search": search, "tag": tag}
    filters = (saved["split"], saved["label"], saved["pair_kind"], saved["category"], search, tag, products)
    return filters, saved


def gallery(db: str, name: str, info: dict) -> None:
    """Filters, a text search, tags and saved views, a page of pair cards (thumbnail, text, label, split,
    category, kind, a detail-view button), and the actions on every pair the filter matches."""
    chosen = None
    with friendly_errors("Reading tags and views"):
        chosen = gallery_filters(db, name, info)
    if chosen is None:
        return
    filters, saved = chosen
    if st.session_state.get("evalsets_filters") != (name, filters):
        st.session_state["evalsets_filters"] = (name, filters)
        st.session_state["evalsets_page"] = 1
    version = cache.eval_set_version(info)
    tag = filters[5]
    with friendly_errors("Loading pairs"):
        tagged = cache.tagged_products(name, tag, db) if tag else ()
        _, total = cache.pairs_page(db, name, version, filters, 0, tagged)
        n_pages = max(1, -(-total // cache.PAGE_SIZE))
        st.session_state["evalsets_page"] = min(st.session_state.get("evalsets_page", 1), n_pages)
        p1, p2 = st.columns([1, 5], vertical_alignment="bottom")
        page = p1.number_input("Page", 1, n_pages, step=1, key="evalsets_page")
        p2.caption(f"{total:,} pairs match · page {page} of {n_pages} · {cache.PAGE_SIZE} per page")
        frame, _ = cache.pairs_page(db, name, version, filters, int(page) - 1, tagged)
        if frame.empty:
            st.info("No pairs match these filters.")
            return
        for start in range(0, len(frame), GALLERY_COLUMNS):
            cols = st.columns(GALLERY_COLUMNS)
            for col, row in zip(cols, frame.iloc[start:start + GALLERY_COLUMNS].itertuples(index=False),
                                strict=False):
                with col.container(border=True):
                    _card(name, row)
        with st.container(border=True):
            selection_actions(db, name, lambda: filter_products(name, saved, products=filters[6], db=db),
                              key="evalsets_selection",
                              what=f"Tag, save or export the products of the {total:,} pairs this filter matches",
                              filters=None if filters[6] is not None else saved)


def _card(name: str, row: Any) -> None:
    """One pair card: thumbnail, text, label, split, kind (swapped attribute), category, detail button."""
    image = cache.thumbnail(row.path, cache.file_mtime(row.path))
    if image is None:
        st.caption("image unavailable")
    else:
        st.image(image)
    st.text(row.text)
    mark = "**match**" if row.label == 1 else "no match"
    swapped = f" ({row.swapped_attribute})" if isinstance(row.swapped_attribute, str) else ""
    st.caption(f"{mark} · {row.split} · {row.pair_kind}{escape_markdown(swapped)} · "
               f"{escape_markdown(row.category or 'no category')}")
    detail_button(name, row.product_id, key=f"evalsets_detail_{row.pair_id}")


def charts(db: str, name: str, info: dict) -> None:
    with friendly_errors("Drawing the charts"):
        data = cache.chart_data(db, name, cache.eval_set_version(info))
        figures = eval_set_figures(info, data)
        names = list(figures)
        for i in range(0, len(names), 2):
            cols = st.columns(2)
            for col, key in zip(cols, names[i:i + 2], strict=False):
                col.plotly_chart(figures[key], width="stretch", key=f"evalsets_chart_{key}")


def delete_section(db: str, name: str) -> None:
    with st.expander(f"Delete '{name}'"):
        st.warning("Deleting removes the eval set and every run made on it (scores, metrics). "
                   "Cached embeddings are kept.")
        confirmed = st.checkbox(f"Yes, delete '{name}' and its runs", key=f"evalsets_confirm_{name}")
        if st.button("Delete eval set", disabled=not confirmed, key="evalsets_delete"):
            with friendly_errors("Deleting the eval set"):
                delete_eval_set(name, db)
                cache.forget_eval_sets(db)
                st.session_state["selected_eval_set"] = None
                st.session_state["evalsets_flash"] = f"Deleted eval set '{name}'."
                st.rerun()


def flash() -> None:
    message = st.session_state.pop("evalsets_flash", None)
    if message:
        st.success(message)
