"""The "Likely label errors" section of the Mismatches page: ranked candidates with one-click marking.

The ranking (:func:`workbench.label_errors.label_error_candidates`) is computed behind a toggle and cached per
runs, split and metrics version; marks are read fresh on every rerun so a click shows at once.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from workbench import analysis
from workbench.label_errors import NEIGHBOURHOOD_DEFAULTS, SIGNAL_HELP, SIGNALS, label_error_candidates
from workbench.ui.analysis import metrics_version, show_image
from workbench.ui.common import escape_markdown, friendly_errors

SPLITS = ("test", None, "val", "train")  # test first: held out, and the only split with all signals
MAX_CANDIDATES = 200


@st.cache_data(max_entries=16, show_spinner="Ranking pairs by how likely their label is wrong…")
def candidates(run_ids: tuple[str, ...], split: str | None, db: str, version: tuple) -> pd.DataFrame:
    return label_error_candidates(list(run_ids), db=db, top=MAX_CANDIDATES, split=split)


def _explanation() -> str:
    k = NEIGHBOURHOOD_DEFAULTS["k"]
    return ("Each pair gets up to three signals in [0, 1] (higher = more suspicious) and their mean as its score: "
            + "; ".join(f"**{name}**: {text}" for name, text in SIGNAL_HELP.items())
            + f". The neighbourhood signal follows LEMoN (Zhang et al., ICML 2025) with k = {k} neighbours and "
              "exists only for test pairs (the runs store joint-space vectors for the test gallery); on the train "
              "split the runs have learnt the stored labels, so their disagreement understates errors there. "
              "Ties are broken by pair id.")


def _card(row: dict, eval_set: str, db: str) -> None:
    show_image(row["image_path"])
    st.text(str(row["text"])[:240])
    st.caption(f"rank {row['rank']} · score **{row['score']:.3f}** · labelled "
               f"{'match' if row['label'] == 1 else 'non-match'} · {escape_markdown(row['split'])} · "
               f"{escape_markdown(row['pair_kind'])}")
    st.caption(" · ".join(f"{name} {'–' if pd.isna(row[name]) else format(row[name], '.2f')}" for name in SIGNALS))
    if row["marked_label_error"]:
        st.badge("marked as label error", icon=":material/flag:", color="orange")
        if st.button("Unmark", key=f"mismatch_le_unmark_{row['pair_id']}"):
            analysis.unmark_label_error(eval_set, row["pair_id"], db=db)
            st.rerun()
    elif st.button("Mark as label error", key=f"mismatch_le_mark_{row['pair_id']}"):
        analysis.mark_label_error(eval_set, row["pair_id"], db=db,
                                  note=f"likely label error (score {row['score']:.3f}) on the Mismatches page")
        st.session_state["mismatch_message"] = f"Pair {row['pair_id']} marked as a label error."
        st.rerun()


def likely_label_errors(run_id: str, runs: pd.DataFrame, eval_set: str, db: str) -> None:
    """The section: other runs of the same eval set to ask, split and length, then the ranked cards."""
    st.subheader("Likely label errors")
    st.caption(_explanation())
    same = runs[(runs["eval_set"] == eval_set) & (runs["run_id"] != run_id)]
    labels = dict(zip(same["run_id"], same["label"], strict=True))
    c1, c2, c3 = st.columns([3, 1, 1])
    others = c1.multiselect("Also ask these runs (same eval set)", list(labels), format_func=labels.get,
                            key="mismatch_le_runs", help="Their disagreement with each label is averaged; the "
                            "margin is the selected run's.")
    split = c2.selectbox("Split", SPLITS, format_func=lambda s: "all" if s is None else s, key="mismatch_le_split")
    top = c3.number_input("Show", min_value=4, max_value=MAX_CANDIDATES, value=12, step=4, key="mismatch_le_top")
    if not st.toggle("Find likely label errors", key="mismatch_le_show"):
        return
    run_ids = (run_id, *others)
    table = None
    with friendly_errors("Finding likely label errors"):
        table = candidates(run_ids, split, db, metrics_version(run_ids, db))
    if table is None:
        return
    if table.empty:
        st.info("No pairs to rank.")
        return
    marked = set(analysis.list_label_errors(eval_set, db=db)["pair_id"])
    rows = table.head(int(top)).assign(marked_label_error=lambda t: t["pair_id"].isin(marked))
    cols = st.columns(4)
    for i, row in enumerate(rows.to_dict("records")):
        with cols[i % 4], st.container(border=True):
            _card(row, eval_set, db)
