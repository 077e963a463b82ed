"""The explanation panel: why a run scored one pair as it did, shown on Mismatches cards and in the detail view.

The overlay (relevance over the photo, words coloured by attribution) comes from :mod:`workbench.explain`; the
first explanation of a run rebuilds its models (seconds to minutes), so the panel stays behind a button and every
explanation is cached per (run, pair) in :func:`workbench.ui.cache.explanation`. An opened panel stays open across
reruns (its key is kept in ``explain_open``) until hidden.
"""

from __future__ import annotations

import streamlit as st

from workbench.explain import DisplayExplanation
from workbench.ui import cache
from workbench.ui.common import escape_markdown, friendly_errors

STRONG = 0.5  # share of the largest |attribution| from which a word is shown bold
WEAK = 0.1  # share below which a word is left uncoloured (as good as no effect)
MAX_OPEN = 24  # panels kept open per session; the oldest closes first


def highlighted_words(tokens: list[tuple[str, float]]) -> str:
    """The words as escaped markdown coloured by attribution, as in the overlay: red raises the score, blue
    lowers it; bold from half the largest |attribution|, uncoloured below a tenth of it."""
    peak = max((abs(value) for _, value in tokens), default=0.0)
    parts = []
    for word, value in tokens:
        text = escape_markdown(word)
        share = abs(value) / peak if peak > 0 else 0.0
        if share < WEAK:
            parts.append(text)
            continue
        if share >= STRONG:
            text = f"**{text}**"
        parts.append(f":{'red' if value > 0 else 'blue'}-background[{text}]")
    return " ".join(parts)


def top_words(tokens: list[tuple[str, float]], n: int = 3) -> str:
    """The ``n`` words with the largest |attribution| and their signed values, e.g. "red +0.412 · cap -0.020"."""
    ranked = sorted((t for t in tokens if t[1]), key=lambda t: -abs(t[1]))[:n]
    return " · ".join(f"{escape_markdown(word)} {value:+.3f}" for word, value in ranked)


def show_explanation(result: DisplayExplanation) -> None:
    """The overlay, the highlighted words, the method and score, and why a side was left unexplained."""
    st.image(result.png, caption=f"{result.method} · score {result.score:.3f}", width="stretch")
    if result.tokens:
        st.markdown(highlighted_words(result.tokens))
        strongest = top_words(result.tokens)
        st.caption("red raises the score, blue lowers it"
                   + (f" · strongest: {strongest}" if strongest else " · no word moves the score"))
    for side, reason in result.reasons.items():
        st.info(f"{escape_markdown(side)} not explained: {escape_markdown(reason)}")


def explanation_panel(db: str, run_id: str, pair_id: str, *, key: str = "explain") -> None:
    """An "Explain" button; once pressed, the pair's explanation under the run (kept open until hidden).

    ``key`` prefixes the widget keys: pass a distinct one where the same pair can appear twice on a page.
    Failures (a run that cannot be restored, a config that runs outside code) show as an error, not a traceback.
    """
    opened = f"{run_id}/{pair_id}"
    if opened not in st.session_state["explain_open"]:
        if not st.button("Explain", key=f"{key}_{run_id}_{pair_id}",
                         help="Where in the photo and which words drove this score. The first explanation of a "
                              "run rebuilds its models (seconds)."):
            return
        st.session_state["explain_open"] = [*st.session_state["explain_open"], opened][-MAX_OPEN:]
    result = None
    with st.spinner("Explaining the score…"), friendly_errors("Explaining the pair"):
        result = cache.explanation(run_id, pair_id, db)
    if result is not None:
        show_explanation(result)
    if st.button("Hide explanation", key=f"{key}_hide_{run_id}_{pair_id}"):
        st.session_state["explain_open"] = [k for k in st.session_state["explain_open"] if k != opened]
        st.rerun()
