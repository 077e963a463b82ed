"""Search page widgets: pick runs and a query, then each run's top-k side by side with its method and latency.

Models are rebuilt once per run (``cache.run_searcher``, bounded) behind the Search button; results are cached per
(run, gallery, retriever, query, k), so a rerun of the page recomputes nothing.
"""

from __future__ import annotations

import hashlib

import pandas as pd
import streamlit as st

from workbench.run.search import GALLERIES, RETRIEVERS, SearchResult
from workbench.ui import cache
from workbench.ui.common import escape_markdown, friendly_errors, show_image

MODES = {"text": "Typed text", "photo": "Uploaded photo", "title": "Eval-set title", "image": "Eval-set photo"}
RETRIEVER_LABELS = {"auto": "auto (BM25 over titles for texts, CCA view for photos)", "lexical": "BM25 over titles",
                    "cca": "CCA view of the run's encoder outputs"}
MAX_RUNS = 4
MAX_ITEMS = 2000  # eval-set items offered as queries
GRID_WIDTH = 6  # hit thumbnails per row across all runs' columns


def choose_eval_set(runs: pd.DataFrame) -> str:
    """An eval set that has finished runs (the one last chosen on any page when it has)."""
    names = sorted(runs["eval_set"].unique())
    if st.session_state.get("search_eval_set") not in names:
        preferred = st.session_state["selected_eval_set"]
        st.session_state["search_eval_set"] = preferred if preferred in names else names[0]
    name = st.selectbox("Eval set", names, key="search_eval_set", help="Runs answer over this eval set's gallery.")
    st.session_state["selected_eval_set"] = name
    return name


def choose_runs(runs: pd.DataFrame, eval_set: str) -> list[str]:
    """Up to four finished runs of the eval set (the compared runs first)."""
    here = runs[runs["eval_set"] == eval_set]
    labels = dict(zip(here["run_id"], here["label"], strict=True))
    if not [r for r in st.session_state.get("search_runs", []) if r in labels]:
        kept = [r for r in st.session_state["selected_runs"] if r in labels]
        st.session_state["search_runs"] = (kept or list(here["run_id"]))[:2]
    return list(st.multiselect("Runs", list(labels), key="search_runs", format_func=labels.get,
                               max_selections=MAX_RUNS, help="Each run answers the query side by side."))


def query_form(db: str, eval_set: str, run_ids: list[str], labels: dict[str, str]) -> dict | None:
    """The query (its kind and value), k, gallery and retriever, committed with the Search button; None until
    something was searched."""
    mode = st.radio("Search with", list(MODES), format_func=MODES.get, horizontal=True, key="search_mode")
    gallery = st.session_state.get("search_gallery", "test")
    with st.form("search_form", border=False):
        value = _query_input(db, eval_set, mode, gallery)
        c1, c2, c3 = st.columns([1, 2, 3])
        k = c1.number_input("Results (k)", min_value=1, max_value=50, value=10, key="search_k")
        c2.radio("Gallery", list(GALLERIES), format_func=lambda g: GALLERIES[g], horizontal=True, key="search_gallery",
                 help="test split: the gallery the run's retrieval metrics use; all items: every item of the set.")
        others = [r for r in labels if r in run_ids]
        retriever = c3.selectbox(
            "Retriever for pair heads", [*RETRIEVERS, *others], key="search_retriever",
            format_func=lambda r: RETRIEVER_LABELS.get(r) or f"joint space of {labels[r]}",
            help="A head that scores pairs has no joint space: it re-ranks the top 100 candidates of this retriever.")
        if st.form_submit_button("Search", type="primary"):
            st.session_state["search_submitted"] = True
    if not st.session_state["search_submitted"] or value is None:
        return None
    return {"query": value, "k": int(k), "gallery": st.session_state["search_gallery"], "retriever": retriever}


def _query_input(db: str, eval_set: str, mode: str, gallery: str) -> tuple | None:
    """The query as a small hashable tuple: ("text", str), ("image", bytes) or ("item", id)."""
    if mode == "text":
        text = st.text_input("Query", key="search_text", placeholder="红色纯棉T恤 · black leather office chair")
        return ("text", text.strip()) if text.strip() else None
    if mode == "photo":
        upload = st.file_uploader("Photo", type=["jpg", "jpeg", "png", "webp"], key="search_upload")
        if upload is None:
            return None
        data = upload.getvalue()
        st.image(data, width=160, caption=f"query photo · {hashlib.sha256(data).hexdigest()[:8]}")
        return ("image", data)
    images, texts = cache.gallery_items(db, eval_set, gallery, cache.eval_set_version(_set_row(db, eval_set)))
    if mode == "title":
        titles = dict(zip(texts["text_id"][:MAX_ITEMS], texts["text"][:MAX_ITEMS], strict=True))
        item = st.selectbox("Eval-set title (its true product's rank is shown)", list(titles), key="search_item_text",
                            format_func=lambda t: f"{titles[t][:90]} · {t}")
        return ("item", item) if item else None
    paths = dict(zip(images["image_id"][:MAX_ITEMS], images["path"][:MAX_ITEMS], strict=True))
    products = dict(zip(images["image_id"][:MAX_ITEMS], images["product_id"][:MAX_ITEMS], strict=True))
    item = st.selectbox("Eval-set photo (its true product's rank is shown)", list(paths), key="search_item_image",
                        format_func=lambda i: f"{i} · product {products[i]}")
    if item:
        show_image(paths[item], caption="query photo", width=160)
    return ("item", item) if item else None


def _set_row(db: str, eval_set: str) -> pd.Series:
    sets = cache.eval_sets(db)
    return sets[sets["name"] == eval_set].iloc[0]


def results(db: str, run_ids: list[str], labels: dict[str, str], request: dict) -> None:
    """Each run's answer in its own column: loading status, method, latency, true rank and the hits."""
    columns = st.columns(len(run_ids))
    for column, run_id in zip(columns, run_ids, strict=True):
        with column:
            st.markdown(f"**{escape_markdown(labels[run_id])}**")
            result = _answer(db, run_id, request)
            if result is not None:
                _show(result, per_row=max(1, GRID_WIDTH // len(run_ids)))


def _answer(db: str, run_id: str, request: dict) -> SearchResult | None:
    gallery = request["gallery"]
    with st.status("Loading the run's models…", expanded=False) as status:
        st.write("The first query of a run rebuilds its models (encoders refit, head retrained): a few seconds. "
                 "Later queries reuse them.")
        result = None
        with friendly_errors("Search"):
            models, seconds = cache.restored_models(run_id, db)
            # only pair heads use a retriever; one key for a joint-space run keeps one searcher per gallery
            retriever = request["retriever"] if not models.head.embeds and request["retriever"] != run_id else "auto"
            result = cache.search_results(run_id, db, gallery, retriever, request["query"], request["k"])
        if result is None:
            status.update(label="Search failed", state="error", expanded=True)
            return None
        status.update(label=f"Models ready (rebuilt in {seconds:.1f} s)", state="complete")
    return result


def _show(result: SearchResult, per_row: int) -> None:
    stages = " · ".join(f"{name} {ms:.1f}" for name, ms in result.latency_ms.items() if name != "total")
    st.metric("Latency", f"{result.latency_ms['total']:.1f} ms", help=f"ms per stage: {stages}")
    if result.retriever is not None:
        st.info(f"No joint space: {escape_markdown(result.method)}.", icon=":material/info:")
    else:
        st.caption(escape_markdown(result.method))
    st.caption(escape_markdown(result.gallery))
    if result.words:
        st.caption("query words: " + " · ".join(escape_markdown(w) for w in result.words))
    if result.true_product is not None:
        rank = f"rank **{result.true_rank}**" if result.true_rank else escape_markdown(result.note or "")
        st.caption(f"true product {escape_markdown(result.true_product)}: {rank}")
    grid = st.columns(per_row)
    for i, hit in enumerate(result.hits.to_dict("records")):
        with grid[i % per_row]:
            st.caption(f"#{hit['rank']} · score {hit['score']:.3f} · product {escape_markdown(hit['product_id'])}")
            if hit["modality"] == "image":
                show_image(hit["image_path"])
            else:
                st.text(hit["text"])
