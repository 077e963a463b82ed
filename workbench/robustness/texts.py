"""Text perturbations at severities 1..5: typos, character noise, casing and punctuation, word order, dropped
attribute words, mixed English/Chinese and unit/number variants.

Every function takes a text, a severity, a generator whose draws do not depend on the severity, and the eval
set's vocabulary (:func:`workbench.data.vocab.catalogue_vocabulary`). The draws fix an order of candidate edits
per text, and severity s applies a growing prefix of that order, so severity s+1 keeps every edit of severity s.
Chinese is handled by word: word order and attribute edits use the vocabulary's jieba segmentation (the
catalogue's own words in its dictionary), so 口红 is never split into 口 + 红.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from workbench.data.vocab import ATTRIBUTES, CatalogueVocabulary, contains_han, find_attributes

EDIT_RATE = (0.03, 0.06, 0.10, 0.15, 0.20)  # fraction of characters typed wrong / dropped or swapped
CASE_PUNCT_RATE = (0.1, 0.2, 0.35, 0.5, 0.7)  # fraction of words and punctuation slots changed
MOVED_WORDS = (0.2, 0.35, 0.5, 0.7, 1.0)  # fraction of words moved
PUNCTUATION = (",", " -", " /", " |", " ·")

_HAN_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_LATIN_WORD = re.compile(r"[^\W_]+(?:[-'.][^\W_]+)*")
_QWERTY = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _keyboard_neighbours() -> dict[str, str]:
    """Letter -> the letters next to it on a QWERTY keyboard (same row and the rows above and below)."""
    where = {ch: (r, c) for r, row in enumerate(_QWERTY) for c, ch in enumerate(row)}
    return {ch: "".join(o for o, (r2, c2) in where.items() if o != ch and abs(r2 - r) <= 1 and abs(c2 - c) <= 1)
            for ch, (r, c) in where.items()}


NEIGHBOURS = _keyboard_neighbours()


def _count(rate: float, n: int) -> int:
    """How many of ``n`` candidates a rate touches: at least one when there is one."""
    return min(n, max(1, round(rate * n))) if n else 0


def _share(severity: int, n: int) -> int:
    """Severity s touches s/5 of ``n`` countable things (attribute words, say), at least one."""
    return min(n, max(1, math.ceil(n * severity / 5))) if n else 0


def _squeeze(text: str) -> str:
    return re.sub(r"\s{2,}", " ", text).strip()


def _tidy(text: str) -> str:
    """Separators left with nothing to separate once words are gone: "Brio (cream, )" -> "Brio (cream)"."""
    text = re.sub(r"\s*[,，/|]\s*(?=[,，/|)）】]|$)", "", text)
    text = re.sub(r"(?<=[(（【])\s*[,，/|]\s*", "", text)
    text = re.sub(r"[(（【]\s*[)）】]", "", text)
    return re.sub(r"^[\s,，/|-]+", "", _squeeze(text))


def word_spans(text: str, vocabulary: CatalogueVocabulary) -> list[tuple[int, int]]:
    """(start, end) of every word: jieba's segmentation inside Chinese runs, alphanumeric words elsewhere; a
    number with its unit (350毫升, 1.5 L) and a multi-word attribute value (polka dot) count as one word."""
    spans = []
    position = 0
    for run in _HAN_RUN.finditer(text):
        spans += [(position + m.start(), position + m.end()) for m in _LATIN_WORD.finditer(text[position:run.start()])]
        spans += [(run.start() + s, run.start() + e) for _, s, e in vocabulary.tokenizer.tokenize(run.group())]
        position = run.end()
    spans += [(position + m.start(), position + m.end()) for m in _LATIN_WORD.finditer(text[position:])]
    phrases = [(m.start(), m.end()) for m in _MENTION.finditer(text)]
    phrases += [(o.start, o.end) for o in vocabulary.occurrences(text)]
    for start, end in phrases:
        inside = [s for s in spans if s[0] < end and s[1] > start]
        spans = sorted({*(s for s in spans if s not in inside),
                        (min(start, *(s for s, _ in inside)), max(end, *(e for _, e in inside)))})
    return spans


# ---------------------------------------------------------------------------------------------- character noise
def keyboard_typo(text: str, severity: int, rng: np.random.Generator, vocabulary: CatalogueVocabulary) -> str:
    """Latin letters hit as a neighbouring key (case kept). Chinese is typed through an input method, whose slips
    are other characters; see ``char_drop_swap``."""
    positions = [i for i, ch in enumerate(text) if ch.lower() in NEIGHBOURS]
    order = rng.permutation(len(positions))
    picks = rng.random(len(positions))
    chars = list(text)
    for k in order[: _count(EDIT_RATE[severity - 1], len(positions))]:
        i = positions[k]
        options = NEIGHBOURS[text[i].lower()]
        new = options[int(picks[k] * len(options))]
        chars[i] = new.upper() if text[i].isupper() else new
    return "".join(chars)


def char_drop_swap(text: str, severity: int, rng: np.random.Generator, vocabulary: CatalogueVocabulary) -> str:
    """Characters dropped, or swapped with the next one, in English and Chinese alike (a hurried seller)."""
    positions = [i for i, ch in enumerate(text) if ch.isalnum()]
    order = rng.permutation(len(positions))
    swap = rng.random(len(positions)) < 0.5
    chosen = {positions[k]: bool(swap[k]) for k in order[: _count(EDIT_RATE[severity - 1], len(positions))]}
    out, i = [], 0
    while i < len(text):
        if i not in chosen:
            out.append(text[i])
            i += 1
        elif chosen[i] and i + 1 < len(text) and text[i + 1].isalnum():
            out += [text[i + 1], text[i]]
            i += 2
        else:
            i += 1  # dropped (or a swap with nothing to swap with)
    return "".join(out)


def case_punct(text: str, severity: int, rng: np.random.Generator, vocabulary: CatalogueVocabulary) -> str:
    """Casing and punctuation: Latin words upper- or lower-cased, punctuation removed, separators inserted
    between words."""
    spans = word_spans(text, vocabulary)
    edits: list[tuple[str, int, int]] = [("case", s, e) for s, e in spans if re.search("[A-Za-z]", text[s:e])]
    inside = {i for s, e in spans for i in range(s, e)}  # the hyphen of T-shirt belongs to its word
    edits += [("drop", m.start(), m.end()) for m in re.finditer(r"[^\w\s]", text) if m.start() not in inside]
    edits += [("insert", e, e) for (_, e), (s2, _) in zip(spans, spans[1:], strict=False) if text[e:s2] == " "]
    order = rng.permutation(len(edits))
    marks = rng.integers(len(PUNCTUATION), size=len(edits))
    chosen = sorted((edits[k] + (int(marks[k]),) for k in order[: _count(CASE_PUNCT_RATE[severity - 1],
                                                                           len(edits))]), key=lambda e: -e[1])
    for kind, start, end, mark in chosen:  # right to left, so earlier offsets stay valid
        word = text[start:end]
        if kind == "case":
            word = word.lower() if word.isupper() else word.upper()
        text = text[:start] + (word if kind == "case" else PUNCTUATION[mark] if kind == "insert" else "") + text[end:]
    return _squeeze(text) if any(kind == "drop" for kind, *_ in chosen) else text


# ------------------------------------------------------------------------------------------------------ words
def word_order(text: str, severity: int, rng: np.random.Generator, vocabulary: CatalogueVocabulary) -> str:
    """Words reordered (jieba words inside Chinese): a growing share of the words is shuffled among its own
    places by keys drawn once per word, so a higher severity shuffles a superset; separators stay in place."""
    spans = word_spans(text, vocabulary)
    if len(spans) < 2:
        return text
    order, keys = rng.permutation(len(spans)), rng.random(len(spans))
    chosen = sorted(order[: max(2, _count(MOVED_WORDS[severity - 1], len(spans)))])
    shuffled = sorted(chosen, key=lambda k: keys[k])
    if shuffled == chosen:  # the keys kept the order: the two first chosen words change places instead
        shuffled[:2] = shuffled[1::-1]
    words = [text[s:e] for s, e in spans]
    for target, source in zip(chosen, shuffled, strict=True):
        words[target] = text[spans[source][0] : spans[source][1]]
    out, position = [], 0
    for (start, end), word in zip(spans, words, strict=True):
        out += [text[position:start], word]
        position = end
    return "".join(out) + text[position:]


def drop_attribute(text: str, severity: int, rng: np.random.Generator, vocabulary: CatalogueVocabulary) -> str:
    """Attribute words (the eval set's colours, materials, categories …, matched as whole words) left out:
    one at severity 1, all of them at severity 5."""
    found = vocabulary.occurrences(text)
    order = rng.permutation(len(found))
    for k in sorted(order[: _share(severity, len(found))], key=lambda k: -found[k].start):
        text = text[: found[k].start] + text[found[k].end :]
    return _tidy(text) if found else text


def _translation(surface: str) -> str | None:
    """The other language's first lexicon form of an attribute word, or None (a value the lexicon lacks)."""
    han = contains_han(surface)
    found = find_attributes(surface, "zh" if han else "en")
    if len(found) != 1:
        return None
    (attribute, value), = found.items()
    forms = ATTRIBUTES[attribute][value].get("en" if han else "zh")
    return forms[0] if forms else None


def mixed_language(text: str, severity: int, rng: np.random.Generator, vocabulary: CatalogueVocabulary) -> str:
    """Attribute words written in the other language (红色 -> red, cotton -> 纯棉), as bilingual listings do; a
    Latin word between Latin letters gets spaces around it."""
    found = [(o, t) for o in vocabulary.occurrences(text) if (t := _translation(text[o.start : o.end]))]
    order = rng.permutation(len(found))
    for k in sorted(order[: _share(severity, len(found))], key=lambda k: -found[k][0].start):
        occurrence, word = found[k]
        before, after = text[: occurrence.start], text[occurrence.end :]
        if not contains_han(word):
            word = (" " if before[-1:].isascii() and before[-1:].isalnum() else "") + word + (
                " " if after[:1].isascii() and after[:1].isalnum() else "")
        text = before + word + after
    return text


# ------------------------------------------------------------------------------------------------------ units
@dataclass(frozen=True)
class Unit:
    """A unit: its dimension, size in the dimension's base unit, Latin forms (the first canonical, the second
    the variant a seller writes instead) and Chinese form (None where listings keep the Latin one)."""

    dimension: str
    factor: float
    latin: tuple[str, ...]
    zh: str | None
    convert_to: str | None = None  # the unit a seller converts to (1.5 L -> 1500 ml); None: never converted


UNITS: dict[str, Unit] = {
    "ml": Unit("volume", 1.0, ("ml", "mL", "ML"), "毫升", "l"),
    "l": Unit("volume", 1000.0, ("L", "l", "litre", "liter"), "升", "ml"),
    "oz": Unit("volume", 29.5735, ("oz", "OZ", "fl oz"), "盎司", "ml"),
    "g": Unit("mass", 1.0, ("g", "gram", "grams"), "克", "kg"),
    "kg": Unit("mass", 1000.0, ("kg", "KG"), "千克", "g"),
    "mm": Unit("length", 1.0, ("mm", "MM"), "毫米", "cm"),
    "cm": Unit("length", 10.0, ("cm", "CM"), "厘米", "mm"),
    "m": Unit("length", 1000.0, ("m", "metre", "meter"), "米", "cm"),
    "inch": Unit("length", 25.4, ("inch", "in", "inches", '"'), "英寸", "cm"),
    "gb": Unit("storage", 1.0, ("GB", "G", "gb", "Gb"), None),
    "tb": Unit("storage", 1024.0, ("TB", "T", "tb"), None),
    "mah": Unit("charge", 1.0, ("mAh", "mah", "MAH"), "毫安", None),
}
# Forms written as variants but never read: "G" and "T" alone name networks (5G), "in" is a preposition.
_UNREAD = frozenset({"G", "T", "in"})
_READ_FORMS = {form: key for key, unit in UNITS.items()
               for form in (*(f for f in unit.latin if f not in _UNREAD), *([unit.zh] if unit.zh else []))}
_FORMS = "|".join(re.escape(f) for f in sorted(_READ_FORMS, key=lambda f: -len(f)))
_MENTION = re.compile(rf"(?<![A-Za-z0-9.])(\d+(?:\.\d+)?)( ?)({_FORMS})(?![A-Za-z])")
_FULL_WIDTH = str.maketrans("0123456789.", "０１２３４５６７８９．")


def _number(value: float) -> str:
    """At most three significant digits, no trailing zeros: 1500, 0.35, 15.5, 355."""
    digits = max(0, 2 - math.floor(math.log10(abs(value)))) if value else 0
    return f"{round(value, digits):.{digits}f}".rstrip("0").rstrip(".") if digits else str(round(value))


def _variant(number: str, space: str, form: str, severity: int) -> str:
    unit = UNITS[_READ_FORMS[form]]
    written_zh = form == unit.zh
    if not written_zh:  # 1: the other Latin spelling (128GB -> 128G, ml -> mL)
        form = unit.latin[1] if form == unit.latin[0] else unit.latin[0]
    if severity >= 2 and unit.convert_to:  # 2: converted (1.5L -> 1500ml)
        target = UNITS[unit.convert_to]
        number = _number(float(number) * unit.factor / target.factor)
        unit = target
        form = (target.zh if written_zh else None) or target.latin[0]
    if severity >= 3:  # 3: spacing flips (1500ml -> 1500 ml)
        space = "" if space else " "
    if severity >= 4:  # 4: the other language (ml <-> 毫升)
        form = unit.latin[0] if written_zh else unit.zh or form
    if severity >= 5:  # 5: full-width digits, as Chinese input methods type them
        number = number.translate(_FULL_WIDTH)
    return f"{number}{space}{form}"


def unit_variants(text: str, severity: int, rng: np.random.Generator, vocabulary: CatalogueVocabulary) -> str:
    """Every number with a unit written another way, one more way per severity: 1 spelling (128GB -> 128G),
    2 conversion (1.5L -> 1500ml), 3 spacing (1500 ml), 4 language (1500 毫升), 5 full-width digits (１５００ 毫升).
    Units written in Chinese skip the spelling step."""
    return _MENTION.sub(lambda m: _variant(m.group(1), m.group(2), m.group(3), severity), text)
