"""The per-item detail view: one product of an eval set in a dialog, opened from any card or point.

Any widget opens it with :func:`detail_button` (it stores ``[eval set, product id]`` in ``detail_item``); every page
that hosts such buttons calls :func:`detail_dialog` once. The dialog shows the product's full images, texts,
attributes and tags (editable), every pair built from it with swap details and label-error marks, each chosen run's
score, calibrated probability and decision side by side, and, behind a toggle or a button, its nearest products in
a run's joint space and a pair's explanation (:mod:`workbench.ui.explain`). Reads are small (one product) and
always fresh, so marks and tags show at once.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from workbench.data.tags import set_product_tags
from workbench.evaluation.items import ProductDetail, pair_decisions, product_detail
from workbench.evaluation.label_errors import mark_label_error, unmark_label_error
from workbench.ui import cache
from workbench.ui.common import escape_markdown, friendly_errors, show_image
from workbench.ui.explain import explanation_panel

FULL_SIDE = 1024  # long side of the full image shown (decoded at reduced size, never the 90-MP original)
MAX_RUNS = 4
SIMILAR_K = 6


def open_detail(eval_set: str, product_id: str) -> None:
    """Button callback: show this product in the detail view."""
    st.session_state["detail_item"] = [eval_set, product_id]


def close_detail() -> None:
    st.session_state["detail_item"] = None


def detail_button(eval_set: str, product_id: str | None, key: str, label: str = "Details") -> None:
    """A button that opens the product's detail view (disabled for an item that belongs to no product)."""
    st.button(label, key=key, on_click=open_detail, args=(eval_set, product_id), disabled=not product_id,
              help="Open this product: full image, every text and pair, and what each run decided.")


def detail_dialog(db: str) -> None:
    """Show the detail view when one is open (call once per page, anywhere: it is modal)."""
    item = st.session_state["detail_item"]
    if item:
        _dialog(db, item[0], item[1])


@st.dialog("Item detail", width="large", on_dismiss=close_detail)
def _dialog(db: str, eval_set: str, product_id: str) -> None:
    detail = None
    with friendly_errors("Loading the item"):
        detail = product_detail(eval_set, product_id, db=db)
    if detail is not None:
        _overview(detail)
        _tags_editor(db, detail)
        run_ids = _choose_runs(db, eval_set)
        _pairs(db, detail, run_ids)
        _similar(db, detail, run_ids)
    if st.button("Close", key="detail_close"):
        close_detail()
        st.rerun()


def _overview(detail: ProductDetail) -> None:
    category = escape_markdown(detail.category or "no category")
    st.markdown(f"**Product {escape_markdown(detail.product_id)}** · {category} · eval set "
                f"{escape_markdown(detail.eval_set)}")
    if detail.attributes:
        st.caption(" · ".join(f"{escape_markdown(k)}: {escape_markdown(v)}" for k, v in detail.attributes.items()))
    cols = st.columns(max(1, min(len(detail.images), 3)))
    for i, image in enumerate(detail.images.to_dict("records")):
        with cols[i % len(cols)]:
            data = cache.thumbnail(image["path"], cache.file_mtime(image["path"]), max_side=FULL_SIDE)
            if data is None:
                st.caption(f"image unavailable: {escape_markdown(image['path'])}")
            else:
                st.image(data, caption=f"{image['image_id']} · {image['width']}×{image['height']} px")
    st.markdown("**Texts**")
    st.dataframe(detail.texts, hide_index=True, width="stretch")


def _tags_editor(db: str, detail: ProductDetail) -> None:
    """The product's tags as an editable multiselect (new tags typed in); a change is saved at once."""
    known = list(cache.tag_counts(detail.eval_set, db)["tag"])
    key = f"detail_tags_{detail.eval_set}_{detail.product_id}"
    st.multiselect("Tags of this product", sorted({*known, *detail.tags}), default=detail.tags, key=key,
                   accept_new_options=True, on_change=_save_tags, args=(db, detail, key),
                   help="Type a new tag and press Enter; remove one with its ×.")
    if message := st.session_state["detail_message"]:
        st.caption(escape_markdown(message))
        st.session_state["detail_message"] = None


def _save_tags(db: str, detail: ProductDetail, key: str) -> None:
    """Multiselect callback: only a change made by the user is written (never a stale widget value)."""
    try:
        saved = set_product_tags(detail.eval_set, detail.product_id, st.session_state[key], db=db)
    except (ValueError, KeyError) as exc:
        st.session_state["detail_message"] = f"Tags not saved: {exc.args[0] if exc.args else exc}"
        return
    cache.forget_tags(detail.eval_set, db, {*saved, *detail.tags})
    st.session_state["detail_message"] = f"Tags saved: {', '.join(saved) or 'none'}."


def _choose_runs(db: str, eval_set: str) -> list[str]:
    runs = cache.finished_runs(db)
    runs = runs[runs["eval_set"] == eval_set]
    labels = dict(zip(runs["run_id"], runs["label"], strict=True))
    if st.session_state.get("detail_runs") is None or not set(st.session_state["detail_runs"]) <= set(labels):
        preferred = [r for r in st.session_state["selected_runs"] if r in labels]
        st.session_state["detail_runs"] = (preferred or list(labels))[:MAX_RUNS]
    if not labels:
        st.caption("No finished runs on this eval set yet: scores and decisions appear once one has run.")
        return []
    return st.multiselect("Runs to show side by side", list(labels), format_func=labels.get, key="detail_runs",
                          max_selections=MAX_RUNS)


def decisions_table(pairs: pd.DataFrame, decisions: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    """One row per pair (text, label, kind, swap, label-error mark) and, per run, its score, calibrated match
    probability and decision (right or wrong against the label)."""
    table = pd.DataFrame({
        "pair": pairs["pair_id"], "text": pairs["text"].astype(str).str.slice(0, 80),
        "label": pairs["label"].map({1: "match", 0: "non-match"}), "split": pairs["split"], "kind": pairs["pair_kind"],
        "swap": [f"{a}: {f} → {t}" if isinstance(a, str) else "" for a, f, t in
                 zip(pairs["swapped_attribute"], pairs["swap_from"], pairs["swap_to"], strict=True)],
        "label error": pairs["marked_label_error"].map({True: "marked", False: ""}),
    })
    for run_id, label in labels.items():
        mine = decisions[decisions["run_id"] == run_id].set_index("pair_id")
        table[f"{label} · score"] = table["pair"].map(mine["score"])
        table[f"{label} · p(match)"] = table["pair"].map(mine["probability"])
        mark = mine["decision"] + mine["correct"].map({True: " (right)", False: " (wrong)"})
        table[f"{label} · decision"] = table["pair"].map(mark).fillna("not scored")
    return table


def _pairs(db: str, detail: ProductDetail, run_ids: list[str]) -> None:
    pairs = detail.pairs
    st.markdown(f"**Pairs built from this product** ({len(pairs)}: its image or its text in each)")
    if pairs.empty:
        st.caption("No pairs.")
        return
    runs = cache.finished_runs(db)
    labels = {r: runs.set_index("run_id").at[r, "label"] for r in run_ids}
    decisions = None
    with friendly_errors("Reading the runs' scores"):
        decisions = pair_decisions(detail.eval_set, run_ids, list(pairs["pair_id"]), db=db)
    if decisions is None:
        return
    table = decisions_table(pairs, decisions, labels)
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        c: st.column_config.NumberColumn(format="%.3f") for c in table.columns if c.endswith(("score", "p(match)"))})
    st.caption("Decision: score ≥ the run's own threshold (chosen on val); p(match): the run's val-fitted "
               "calibrator applied to the score (blank when none was stored). Right/wrong: against the label.")
    texts = dict(zip(pairs["pair_id"], pairs["text"].astype(str), strict=True))
    pair_id = st.selectbox("Pair", list(pairs["pair_id"]), key="detail_pair",
                           format_func=lambda p: f"{p} · {texts[p][:60]}")
    row = pairs.set_index("pair_id").loc[pair_id]
    c1, c2 = st.columns([1, 2])
    with c1:
        show_image(row["image_path"])
    with c2:
        st.text(str(row["text"]))
        if row["marked_label_error"]:
            st.badge("marked as label error", icon=":material/flag:", color="orange")
            if st.button("Unmark label error", key="detail_unmark"):
                unmark_label_error(detail.eval_set, pair_id, db=db)
                cache.forget_marks(detail.eval_set, db)
                st.rerun()
        elif st.button("Mark as label error", key="detail_mark"):
            mark_label_error(detail.eval_set, pair_id, note="marked in the detail view", db=db)
            cache.forget_marks(detail.eval_set, db)
            st.rerun()
    _explanation(db, run_ids, pair_id, labels)


def _explanation(db: str, run_ids: list[str], pair_id: str, labels: dict[str, str]) -> None:
    """The chosen pair's explanation under one of the runs (behind the panel's own Explain button)."""
    if not run_ids:
        return
    run_id = st.selectbox("Explain with run", run_ids, format_func=labels.get, key="detail_explain_run")
    explanation_panel(db, run_id, pair_id, key="detail_explain")


def _similar(db: str, detail: ProductDetail, run_ids: list[str]) -> None:
    if not run_ids or detail.images.empty:
        return
    runs = cache.finished_runs(db).set_index("run_id")
    run_id = st.selectbox("Similar products in the joint space of", run_ids, format_func=runs["label"].get,
                          key="detail_similar_run")
    if not st.toggle("Show similar products", key="detail_similar",
                     help="Rebuilds the run's models once (seconds), then ranks every item of the eval set."):
        return
    image_id = str(detail.images["image_id"].iloc[0])
    result = None
    with friendly_errors("Finding similar products"), st.spinner("Rebuilding the run's models…"):
        result = cache.similar_items(run_id, db, "all", image_id, SIMILAR_K)
    if result is None:
        return
    st.caption(f"Nearest to image {escape_markdown(image_id)}: {escape_markdown(result.method)}")
    hits = result.hits[result.hits["modality"] == "image"]
    cols = st.columns(SIMILAR_K)
    for i, hit in enumerate(hits.to_dict("records")):
        with cols[i % SIMILAR_K]:
            show_image(hit["image_path"])
            st.caption(f"{escape_markdown(hit['product_id'] or '—')} · {hit['score']:.3f}")
            if hit["product_id"] and hit["product_id"] != detail.product_id and st.button(
                    "Open", key=f"detail_open_{hit['item_id']}"):
                open_detail(detail.eval_set, hit["product_id"])
                st.rerun()
    texts = result.hits[result.hits["modality"] == "text"]
    if not texts.empty:
        st.dataframe(texts[["rank", "product_id", "score", "text"]], hide_index=True, width="stretch")
