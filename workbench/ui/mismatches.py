"""Mismatches: the gallery of false positives / negatives and hardest negatives, retrieval failures, likely label
errors with one-click marking, and recomputing a run's metrics without the marked pairs.

Every read goes through :mod:`workbench.ui.cache`, keyed by the run's metrics version and the eval set's marks, so
a mark or a recomputation shows at once while reruns (filters, paging) read nothing again.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from workbench.evaluation import aggregate
from workbench.evaluation.aggregate import compute_metrics
from workbench.evaluation.label_errors import (
    NEIGHBOURHOOD_DEFAULTS,
    SIGNAL_HELP,
    SIGNALS,
    mark_label_error,
    unmark_label_error,
)
from workbench.evaluation.mismatches import MISMATCH_SORTS
from workbench.evaluation.mismatches import mismatches as find_mismatches
from workbench.metrics import metric_view
from workbench.run import runner
from workbench.ui import cache
from workbench.ui.common import escape_markdown, friendly_errors, show_image
from workbench.ui.detail import detail_button
from workbench.ui.explain import explanation_panel
from workbench.ui.selection import selection_actions

KIND_LABELS = {"false_positive": "False positives (non-matches scored as matches)",
               "false_negative": "False negatives (matches scored as non-matches)",
               "hardest_negative": "Hardest negatives (highest-scored non-matches)"}
SORT_LABELS = {"score": "most confident first", "margin": "furthest from threshold"}
PER_PAGE = 12
LABEL_ERROR_SPLITS = ("test", None, "val", "train")  # test first: held out, and the only split with all signals


def flash() -> None:
    """The one-shot message of the last mark or recomputation."""
    if message := st.session_state["mismatch_message"]:
        st.success(message)
        st.session_state["mismatch_message"] = None


def _mark(eval_set: str, pair_id: str, db: str, note: str) -> None:
    mark_label_error(eval_set, pair_id, note=note, db=db)
    cache.forget_marks(eval_set, db)
    st.session_state["mismatch_message"] = f"Pair {pair_id} marked as a label error."
    st.rerun()


def _unmark(eval_set: str, pair_id: str, db: str) -> None:
    unmark_label_error(eval_set, pair_id, db=db)
    cache.forget_marks(eval_set, db)
    st.rerun()


# ------------------------------------------------------------------------------------------ metrics policy
BEFORE_AFTER_METRICS = metric_view("before_after")


def exclusion_toggle(run_id: str, db: str, version: tuple) -> None:
    """Toggle: recompute the run's metrics with or without the marked pairs; the recorded policy under it, and
    after a recomputation here the headline metrics before and after with their CIs and changes."""
    policy = ((cache.curves(run_id, db, version) or {}).get("policies") or {}).get("label_errors", "")
    toggle_key = f"mismatch_exclude_{run_id}"
    st.toggle("Recompute metrics excluding label errors", value="excluded" in policy, key=toggle_key,
              on_change=_recompute_metrics, args=(run_id, db, toggle_key),
              help="Recomputes every metric of this run from its stored scores; the choice is recorded with the "
                   "run.")
    st.caption(f"Recorded with the run's metrics: {escape_markdown(policy or 'unknown')}.")
    recomputed = st.session_state["mismatch_recomputed"]
    if recomputed and recomputed[0] == run_id:
        st.markdown("**Before and after the recomputation** (test split, 95% bootstrap CIs)")
        after = aggregate.load_metrics(run_id, db=db)
        st.dataframe(before_after(pd.DataFrame(recomputed[1]), after), hide_index=True, width="stretch",
                     column_config={c: st.column_config.NumberColumn(format="%.4f")
                                    for c in ("before", "after", "change")})


def _ci(low, high) -> str:
    return "" if pd.isna(low) or pd.isna(high) else f"[{low:.3f}, {high:.3f}]"


def _value(row: pd.Series | None) -> float | None:
    return None if row is None or pd.isna(row["value"]) else float(row["value"])


def before_after(before: pd.DataFrame, after: pd.DataFrame,
                 names: tuple[str, ...] = BEFORE_AFTER_METRICS) -> pd.DataFrame:
    """Headline metrics (frames of :func:`workbench.evaluation.aggregate.load_metrics`) side by side: value and
    CI before and after, the change, and the pairs each value rests on (fewer after excluding label errors)."""
    b, a = before.set_index("name"), after.set_index("name")
    rows = []
    for name in names:
        if name not in b.index and name not in a.index:
            continue
        old = b.loc[name] if name in b.index else None
        new = a.loc[name] if name in a.index else None
        rows.append({
            "metric": name, "before": _value(old), "before 95% CI": "" if old is None else _ci(old["ci_low"],
                                                                                            old["ci_high"]),
            "after": _value(new), "after 95% CI": "" if new is None else _ci(new["ci_low"], new["ci_high"]),
            "change": None if _value(old) is None or _value(new) is None else _value(new) - _value(old),
            "pairs before": None if old is None else old["n"], "pairs after": None if new is None else new["n"],
        })
    return pd.DataFrame(rows, columns=["metric", "before", "before 95% CI", "after", "after 95% CI", "change",
                                       "pairs before", "pairs after"])


def _recompute_metrics(run_id: str, db: str, toggle_key: str) -> None:
    """Toggle callback. The new metrics carry a new version, so every cached read of this run is read again; the
    metrics from before are kept in the session for the before/after table."""
    exclude = bool(st.session_state[toggle_key])
    try:
        run = runner.get_run(run_id, db=db)
        before = aggregate.load_metrics(run_id, db=db)
        compute_metrics(run_id, db=db, exclude_label_errors=exclude, seed=int(run.get("seed") or 0))
        st.session_state["mismatch_recomputed"] = (run_id, before.to_dict("records"))
        st.session_state["mismatch_message"] = ("Metrics recomputed " + ("excluding" if exclude else "including")
                                                + " pairs marked as label errors.")
    except (ValueError, KeyError, RuntimeError, OSError) as exc:
        st.session_state["mismatch_message"] = f"Recomputing metrics failed: {exc}"


def swap_note(row: dict) -> str:
    """' · swapped colour: red → blue' for an attribute-swap negative (values when stored), '' for any other pair
    (a missing attribute is None or NaN, never shown)."""
    attribute = row.get("swapped_attribute")
    if not isinstance(attribute, str) or not attribute:
        return ""
    old, new = row.get("swap_from"), row.get("swap_to")
    values = f": {old} → {new}" if isinstance(old, str) and isinstance(new, str) else ""
    return f" · swapped {escape_markdown(attribute + values)}"


# ------------------------------------------------------------------------------------------------- gallery
def mismatch_gallery(run_id: str, eval_set: str, db: str, version: tuple, marked: pd.DataFrame) -> None:
    """Kind, filters, sort and page, then a page of pair cards."""
    counts = cache.mismatch_counts(run_id, db, version)
    kind = st.radio("Show", list(KIND_LABELS), horizontal=True, key="mismatch_kind",
                    format_func=lambda k: f"{KIND_LABELS[k]} · {counts[k]:,}")
    pairs = cache.scored_pairs(run_id, "test", db, version)
    f1, f2, f3, f4, f5 = st.columns(5)
    category = f1.selectbox("Category", [None, *sorted(pairs["category"].dropna().unique())],
                            key="mismatch_category", format_func=lambda c: "all" if c is None else c)
    pair_kind = f2.selectbox("Pair kind", [None, *sorted(pairs["pair_kind"].unique())], key="mismatch_pair_kind",
                             format_func=lambda c: "all" if c is None else c)
    sort = f3.selectbox("Sort by", list(MISMATCH_SORTS), key="mismatch_sort",
                        format_func=lambda s: SORT_LABELS.get(s, s))
    hide_marked = f4.checkbox("Hide pairs marked as label errors", key="mismatch_hide_marked")
    tag = f5.selectbox("Tag", [None, *cache.tag_counts(eval_set, db)["tag"]], key="mismatch_tag",
                       format_func=lambda t: "any" if t is None else t,
                       help="Only pairs whose image belongs to a product with this tag.")
    page = st.number_input("Page", min_value=1, value=1, step=1, key="mismatch_page_no")
    filters = {"kind": kind, "category": category, "pair_kind": pair_kind, "sort": sort,
               "include_label_errors": not hide_marked, "tag": tag}
    rows = None
    with friendly_errors("Loading mismatches"):
        tagged = cache.tagged_products(eval_set, tag, db) if tag else ()
        rows = cache.mismatches(run_id, db, version, cache.marks_version(marked), kind=kind, category=category,
                                pair_kind=pair_kind, sort=sort, limit=PER_PAGE, offset=(int(page) - 1) * PER_PAGE,
                                include_marked=not hide_marked, tag=tag, tagged=tagged)
    if rows is None:
        return
    if rows.empty:
        st.info("No pairs match these filters.")
    cols = st.columns(4)
    for i, row in enumerate(rows.to_dict("records")):
        with cols[i % 4], st.container(border=True):
            mismatch_card(row, eval_set, db, run_id)
    if not rows.empty:
        with st.container(border=True):
            selection_actions(db, eval_set, lambda: _filtered_products(run_id, db, filters), key="mismatch_selection",
                              what="Tag, save or export the products of every pair these filters show (all pages)")


def _filtered_products(run_id: str, db: str, filters: dict) -> list[str]:
    """The products of every pair the Mismatches filters select, on all pages (resolved when an action runs)."""
    every = find_mismatches(run_id, db=db, limit=2**62, **filters)
    return sorted(set(every["image_product"].dropna().astype(str)))


def mismatch_card(row: dict, eval_set: str, db: str, run_id: str) -> None:
    """One pair: thumbnail, escaped text, score vs threshold, what was swapped, the label-error button, and the
    run's explanation of the score behind a button."""
    show_image(row["image_path"])
    st.text(str(row["text"])[:240])
    if isinstance(row.get("original_text"), str) and row["original_text"]:
        st.caption("swapped from:")
        st.text(str(row["original_text"])[:240])
    st.caption(f"score **{row['score']:.3f}** vs threshold {row['threshold']:.3f} · "
               f"{'match' if row['label'] == 1 else 'non-match'} · {escape_markdown(row['category'] or '—')} · "
               f"{escape_markdown(row['pair_kind'])}{swap_note(row)}")
    if row["marked_label_error"]:
        st.badge("marked as label error", icon=":material/flag:", color="orange")
        if st.button("Unmark", key=f"mismatch_unmark_{row['pair_id']}"):
            _unmark(eval_set, row["pair_id"], db)
    elif st.button("Mark as label error", key=f"mismatch_mark_{row['pair_id']}"):
        _mark(eval_set, row["pair_id"], db, "marked on the Mismatches page")
    detail_button(eval_set, row["image_product"], key=f"mismatch_detail_{row['pair_id']}")
    explanation_panel(db, run_id, row["pair_id"], key="mismatch_explain")


# -------------------------------------------------------------------------------------- retrieval failures
def retrieval_failures(run_id: str, db: str, version: tuple) -> None:
    """Queries whose true item is not ranked first, worst first, with the run's own top k."""
    r1, r2, r3 = st.columns(3)
    direction = r1.radio("Direction", ["t2i", "i2t"], horizontal=True, key="mismatch_direction",
                         format_func={"t2i": "text → image", "i2t": "image → text"}.get)
    k = r2.slider("Top k", 1, 10, 5, key="mismatch_k")
    limit = r3.slider("Queries", 1, 50, 10, key="mismatch_limit")
    failures = None
    with friendly_errors("Loading retrieval failures"):
        failures = cache.retrieval_failures(run_id, db, version, direction=direction, k=k, limit=limit)
    if failures:
        st.caption(f"Queries whose true item is not ranked first, worst first. Ranking: "
                   f"{escape_markdown(failures[0]['method'])}; the top {k} are the run's own.")
        for entry in failures:
            with st.container(border=True):
                retrieval_failure_card(entry)
    elif failures is not None:
        st.info("Every query ranks its true item first.")


def retrieval_failure_card(entry: dict) -> None:
    q, r = st.columns([1, 3])
    with q:
        if entry["query_modality"] == "text":
            st.text(str(entry["query_text"])[:240])
        else:
            show_image(entry["query_image_path"])
        st.caption(f"rank of the true item: **{entry['first_rank']}** (run's ranking, {entry['ties']} ties)")
    with r:
        cols = st.columns(max(len(entry["results"]), 1))
        for col, item in zip(cols, entry["results"], strict=False):
            with col:
                if item["image_path"]:
                    show_image(item["image_path"])
                else:
                    st.text(str(item["text"])[:160])
                st.caption(("**true item**" if item["relevant"] else "other product") + f" · {item['score']:.3f}")


# -------------------------------------------------------------------------------------- likely label errors
def _explanation() -> str:
    k = NEIGHBOURHOOD_DEFAULTS["k"]
    return ("Each pair gets up to three signals in [0, 1] (higher = more suspicious) and their mean as its score: "
            + "; ".join(f"**{name}**: {text}" for name, text in SIGNAL_HELP.items())
            + f". The neighbourhood signal follows LEMoN (Zhang et al., ICML 2025) with k = {k} neighbours and "
              "exists only for test pairs (the runs store joint-space vectors for the test gallery); on the train "
              "split the runs have learnt the stored labels, so their disagreement understates errors there. "
              "Ties are broken by pair id.")


def _candidate_card(row: dict, eval_set: str, db: str) -> None:
    show_image(row["image_path"])
    st.text(str(row["text"])[:240])
    st.caption(f"rank {row['rank']} · score **{row['score']:.3f}** · labelled "
               f"{'match' if row['label'] == 1 else 'non-match'} · {escape_markdown(row['split'])} · "
               f"{escape_markdown(row['pair_kind'])}")
    st.caption(" · ".join(f"{name} {'–' if pd.isna(row[name]) else format(row[name], '.2f')}" for name in SIGNALS))
    if row["marked_label_error"]:
        st.badge("marked as label error", icon=":material/flag:", color="orange")
        if st.button("Unmark", key=f"mismatch_le_unmark_{row['pair_id']}"):
            _unmark(eval_set, row["pair_id"], db)
    elif st.button("Mark as label error", key=f"mismatch_le_mark_{row['pair_id']}"):
        _mark(eval_set, row["pair_id"], db, f"likely label error (score {row['score']:.3f}) on the Mismatches page")


def likely_label_errors(run_id: str, runs: pd.DataFrame, eval_set: str, db: str, marked: pd.DataFrame) -> None:
    """Other runs of the same eval set to ask, split and length; behind a toggle, the ranked cards."""
    st.caption(_explanation())
    same = runs[(runs["eval_set"] == eval_set) & (runs["run_id"] != run_id)]
    labels = dict(zip(same["run_id"], same["label"], strict=True))
    c1, c2, c3 = st.columns([3, 1, 1])
    others = c1.multiselect("Also ask these runs (same eval set)", list(labels), format_func=labels.get,
                            key="mismatch_le_runs", help="Their disagreement with each label is averaged; the "
                            "margin is the selected run's.")
    split = c2.selectbox("Split", LABEL_ERROR_SPLITS, format_func=lambda s: "all" if s is None else s,
                         key="mismatch_le_split")
    top = c3.number_input("Show", min_value=4, max_value=cache.MAX_CANDIDATES, value=12, step=4,
                          key="mismatch_le_top")
    if not st.toggle("Find likely label errors", key="mismatch_le_show"):
        return
    run_ids = (run_id, *others)
    table = None
    with friendly_errors("Finding likely label errors"):
        table = cache.label_error_candidates(run_ids, split, db, cache.metrics_version(run_ids, db))
    if table is None:
        return
    if table.empty:
        st.info("No pairs to rank.")
        return
    rows = table.head(int(top)).assign(marked_label_error=lambda t: t["pair_id"].isin(set(marked["pair_id"])))
    cols = st.columns(4)
    for i, row in enumerate(rows.to_dict("records")):
        with cols[i % 4], st.container(border=True):
            _candidate_card(row, eval_set, db)
