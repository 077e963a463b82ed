"""Explanations of a report's top mismatches: why the most confident mistakes were scored as they were.

Explaining needs the run's models, rebuilt by :func:`workbench.run.restore.restore_run_models` (seconds for the
bundled configs; impossible when the run's plug-ins no longer load, its embeddings were evicted from the cache or
it ran on another device). A report is worth more without explanations than not at all, so every failure here
becomes a one-line reason in the report instead of an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

TOP_WORDS = 5  # attributed words listed per mismatch (by |attribution|)
OVERLAY_DPI = 72  # shown ~240 px wide: the explain command's 110 dpi would add ~150 KB per mismatch to HTML


@dataclass(frozen=True)
class MismatchExplanation:
    """One mismatch's explanation (``method``, ``text_tokens``, ``image_relevance``, the overlay ``png``) or, when
    it could not be explained, ``error`` saying why in one line."""

    method: str = ""
    text_tokens: list[tuple[str, float]] = field(default_factory=list)
    image_relevance: list[list[float]] = field(default_factory=list)
    png: bytes | None = None
    reasons: dict[str, str] = field(default_factory=dict)  # side -> why it was left unexplained
    error: str = ""

    def to_json(self) -> dict:
        """The JSON report's ``explanation`` object (same values as ``python -m workbench explain --json``)."""
        return {"method": self.method, "text_tokens": [[word, value] for word, value in self.text_tokens],
                "image_relevance": self.image_relevance}

    def top_words(self, k: int = TOP_WORDS) -> list[tuple[str, float]]:
        """The ``k`` words with the largest attribution magnitude, strongest first (text order breaks ties); words
        that did not move the score are left out."""
        ranked = sorted(((i, t) for i, t in enumerate(self.text_tokens) if t[1] != 0),
                        key=lambda item: (-abs(item[1][1]), item[0]))
        return [token for _, token in ranked[:k]]


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message``: what a report shows for a failure."""
    message = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__


def explained_pairs(mismatches: pd.DataFrame, top: int) -> list[str]:
    """The pair ids to explain: the first ``top`` false positives and false negatives (already most confident
    first)."""
    if top <= 0 or mismatches.empty:
        return []
    return list(mismatches.groupby("kind", sort=False).head(top)["pair_id"])


def explain_mismatches(run_id: str, mismatches: pd.DataFrame, *, db, device: str | None,
                       top: int) -> tuple[dict[str, MismatchExplanation], str]:
    """Explain a run's top ``top`` false positives and false negatives: ``{pair_id: explanation}`` and a note.

    The note is empty when the models were restored; otherwise it says in one line why not, and each of those
    pairs carries it as its error. ``device``: where the run ran (its models are rebuilt there; default cpu).
    """
    pair_ids = explained_pairs(mismatches, top)
    if not pair_ids:
        return {}, ""
    from workbench.explain import explain_pair, overlay_png
    from workbench.run.restore import restore_run_models

    try:
        models = restore_run_models(run_id, db=db, device=device if device in ("cpu", "cuda", "mps") else "cpu")
    except Exception as exc:  # plug-ins, evicted caches, other devices: any failure leaves a readable report
        note = f"Explanations unavailable: the run's models could not be restored: {one_line(exc)}"
        return {p: MismatchExplanation(error=note) for p in pair_ids}, note
    explanations = {}
    for pair_id in pair_ids:
        try:
            explanation = explain_pair(models, pair_id)
            pair = models.pair(pair_id)
            png = overlay_png(explanation, models.load_image(pair["image_id"]), models.text(pair["text_id"]),
                              dpi=OVERLAY_DPI)
        except Exception as exc:  # one pair that cannot be explained never costs the others or the report
            explanations[pair_id] = MismatchExplanation(error=f"Not explained: {one_line(exc)}")
            continue
        payload = explanation.to_json()
        explanations[pair_id] = MismatchExplanation(
            method=payload["method"], text_tokens=[(word, value) for word, value in payload["text_tokens"]],
            image_relevance=payload["image_relevance"], png=png, reasons=dict(explanation.reasons))
    return explanations, ""
