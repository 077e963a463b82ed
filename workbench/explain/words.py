"""Text attributions shown by word: sub-word, character or keyword attributions merged into the words of the text.

Words are what the TF-IDF encoder sees (``workbench.models.encoders.tokenize``): jieba words for texts with Chinese
characters (a character inside 口红 means nothing alone), ``\\w+`` runs otherwise, each kept with its span in the
original text so that it can be shown with its original casing and deleted in the faithfulness test.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import numpy as np

from workbench.models.encoders import has_cjk

_WORD = re.compile(r"\w+")


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the words of ``text`` in order (jieba for text with Chinese characters)."""
    lowered = text.lower()
    if len(lowered) != len(text):  # a case mapping that changes length: spans would not line up
        lowered = text
    if not has_cjk(lowered):
        return [m.span() for m in _WORD.finditer(lowered)]
    import jieba

    jieba.setLogLevel(logging.WARNING)
    spans, cursor = [], 0
    for token in jieba.lcut(lowered):
        if _WORD.search(token):
            spans.append((cursor, cursor + len(token)))
        cursor += len(token)
    return spans


def merge_to_words(text: str, spans: Sequence[tuple[int, int] | None], values: Sequence[float]
                   ) -> tuple[list[tuple[str, float]], list[tuple[int, int]]]:
    """Sum unit attributions (tokens, characters, keyword matches with their spans) into the words they overlap,
    split by overlap length; units outside every word (spaces, punctuation, special tokens) are dropped."""
    words = word_spans(text)
    totals = np.zeros(len(words))
    for span, value in zip(spans, values, strict=True):
        if span is None or not value:
            continue
        start, end = span
        overlaps = np.array([max(0, min(end, e) - max(start, s)) for s, e in words], dtype=np.float64)
        if overlaps.sum() > 0:
            totals += float(value) * overlaps / overlaps.sum()
    return [(text[s:e], float(v)) for (s, e), v in zip(words, totals, strict=True)], words


def delete_spans(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """``text`` without the characters of ``spans``, runs of spaces collapsed (the text a deletion test scores)."""
    keep = np.ones(len(text), dtype=bool)
    for start, end in spans:
        keep[start:end] = False
    return re.sub(r"\s+", " ", "".join(c for c, k in zip(text, keep, strict=True) if k)).strip()
