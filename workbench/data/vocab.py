"""Bilingual (English/Chinese) product attribute vocabulary, and the swap vocabulary of one eval set.

``ATTRIBUTES`` is one table for the synthetic catalogue (titles) and the fusion heads' multi-hot tag vectors, so
a word the catalogue writes is always a word the matcher can find. Every surface form belongs to exactly one
canonical value; matching takes the longest form first, so "navy blue" is navy (not blue) and "solid wood" is a
material (not the solid pattern).

Attribute-swap negatives use :func:`catalogue_vocabulary` instead: the words of the eval set itself (its
categories and ``attr.*`` values), plus the lexicon's colours, materials and patterns only where this
catalogue's titles use them, matched as whole words (jieba for Chinese, word boundaries for English).
"""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from workbench.data.grouping import normalise_text
from workbench.data.model import EvalSetData

if TYPE_CHECKING:
    import jieba

LANGUAGES = ("en", "zh")

# attribute name -> canonical value -> language -> surface forms (synonyms). English forms are matched
# case-insensitively on word boundaries, Chinese forms as substrings.
ATTRIBUTES: dict[str, dict[str, dict[str, list[str]]]] = {
    "color": {
        "red": {"en": ["red", "crimson", "scarlet"], "zh": ["红色", "大红", "红"]},
        "orange": {"en": ["orange", "tangerine"], "zh": ["橙色", "橘色", "橙"]},
        "yellow": {"en": ["yellow", "mustard", "lemon"], "zh": ["黄色", "明黄", "黄"]},
        "green": {"en": ["green", "emerald", "forest green"], "zh": ["绿色", "翠绿", "绿"]},
        "blue": {"en": ["blue", "azure", "sky blue"], "zh": ["蓝色", "天蓝", "蓝"]},
        "navy": {"en": ["navy", "navy blue", "dark blue"], "zh": ["藏青色", "藏青", "深蓝色", "深蓝"]},
        "teal": {"en": ["teal", "turquoise", "aqua"], "zh": ["青色", "蓝绿色", "湖蓝"]},
        "purple": {"en": ["purple", "violet", "lilac"], "zh": ["紫色", "紫罗兰", "紫"]},
        "pink": {"en": ["pink", "rose", "blush"], "zh": ["粉红色", "粉色", "粉红"]},
        "brown": {"en": ["brown", "chocolate", "chestnut"], "zh": ["棕色", "咖啡色", "褐色"]},
        "beige": {"en": ["beige", "cream", "sand"], "zh": ["米色", "米白", "卡其色"]},
        "black": {"en": ["black", "jet black", "onyx"], "zh": ["黑色", "纯黑", "黑"]},
        "white": {"en": ["white", "ivory", "snow white"], "zh": ["白色", "纯白", "白"]},
        "grey": {"en": ["grey", "gray", "charcoal"], "zh": ["灰色", "炭灰", "灰"]},
    },
    "material": {
        "cotton": {"en": ["cotton", "pure cotton"], "zh": ["纯棉", "棉质", "棉"]},
        "leather": {"en": ["leather", "genuine leather"], "zh": ["真皮", "皮革", "皮质"]},
        "wool": {"en": ["wool", "woollen", "merino"], "zh": ["羊毛", "毛呢"]},
        "denim": {"en": ["denim"], "zh": ["牛仔布", "牛仔"]},
        "canvas": {"en": ["canvas"], "zh": ["帆布"]},
        "plastic": {"en": ["plastic", "polycarbonate"], "zh": ["塑料", "塑胶"]},
        "metal": {
            "en": ["metal", "stainless steel", "aluminium", "aluminum"],
            "zh": ["金属", "不锈钢", "铝合金"],
        },
        "ceramic": {"en": ["ceramic", "porcelain", "stoneware"], "zh": ["陶瓷", "瓷"]},
        "glass": {"en": ["glass"], "zh": ["玻璃"]},
        "wood": {"en": ["wood", "wooden", "solid wood", "oak"], "zh": ["实木", "木质", "木"]},
    },
    "pattern": {
        "solid": {"en": ["solid", "plain", "solid colour"], "zh": ["纯色", "素色"]},
        "striped": {"en": ["striped", "stripe", "pinstripe"], "zh": ["条纹", "竖条纹", "横条纹"]},
        "dotted": {"en": ["polka dot", "polka-dot", "dotted", "spotted"], "zh": ["波点", "圆点"]},
        "checked": {"en": ["checked", "plaid", "checkered", "gingham"], "zh": ["格子", "格纹", "方格"]},
        "gradient": {"en": ["gradient", "ombre"], "zh": ["渐变", "渐变色"]},
        "floral": {"en": ["floral", "flower print", "flowery"], "zh": ["碎花", "花卉", "花朵"]},
    },
    "category": {
        "tshirt": {"en": ["T-shirt", "tee", "tshirt", "tee shirt"], "zh": ["T恤", "短袖T恤", "短袖"]},
        "mug": {"en": ["mug", "coffee mug", "cup"], "zh": ["马克杯", "杯子", "茶杯"]},
        "sneaker": {
            "en": ["sneaker", "sneakers", "trainers", "running shoes"],
            "zh": ["运动鞋", "跑鞋", "球鞋"],
        },
        "handbag": {
            "en": ["handbag", "tote bag", "tote", "purse", "shoulder bag"],
            "zh": ["手提包", "单肩包", "手袋"],
        },
        "phone": {"en": ["phone", "smartphone", "mobile phone", "cell phone"], "zh": ["手机", "智能手机"]},
        "watch": {"en": ["watch", "wristwatch", "smartwatch"], "zh": ["手表", "腕表", "智能手表"]},
        "lamp": {
            "en": ["lamp", "desk lamp", "table lamp", "reading lamp"],
            "zh": ["台灯", "床头灯", "落地灯"],
        },
        "backpack": {
            "en": ["backpack", "rucksack", "daypack", "school bag"],
            "zh": ["背包", "双肩包", "书包"],
        },
        "bottle": {
            "en": ["water bottle", "bottle", "flask", "thermos"],
            "zh": ["水瓶", "水壶", "保温瓶", "保温杯"],
        },
        "chair": {
            "en": ["chair", "armchair", "office chair", "dining chair"],
            "zh": ["椅子", "座椅", "扶手椅", "餐椅"],
        },
        "hat": {"en": ["hat", "cap", "beanie", "bucket hat"], "zh": ["帽子", "棒球帽", "渔夫帽", "毛线帽"]},
        "umbrella": {"en": ["umbrella", "parasol"], "zh": ["雨伞", "遮阳伞", "折叠伞", "伞"]},
    },
}

CATEGORIES: list[str] = list(ATTRIBUTES["category"])

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[A-Za-z]+")


@dataclass(frozen=True)
class _Match:
    start: int
    end: int
    attribute: str
    value: str
    language: str


def detect_language(text: str) -> str:
    """Return "zh" when CJK characters dominate, else "en".

    CJK characters are weighed against Latin *words* (a Chinese character carries about a word), so a Chinese
    title with a Latin brand or "T恤" is still Chinese.
    """
    n_cjk = len(_CJK.findall(text))
    return "zh" if n_cjk and n_cjk >= len(_LATIN_WORD.findall(text)) else "en"


def contains_han(text: str) -> bool:
    """Whether ``text`` has a Chinese (Han) character; a swap puts Chinese words only where Chinese ones were."""
    return bool(_CJK.search(text))


@cache
def _forms() -> dict[str, dict[str, tuple[str, str]]]:
    """language -> lower-cased surface form -> (attribute, value); raises on a form claimed twice."""
    table: dict[str, dict[str, tuple[str, str]]] = {lang: {} for lang in LANGUAGES}
    for attribute, values in ATTRIBUTES.items():
        for value, by_language in values.items():
            for lang, forms in by_language.items():
                for form in forms:
                    key = form.lower()
                    if key in table[lang] and table[lang][key] != (attribute, value):
                        raise ValueError(f"form {form!r} is claimed by {table[lang][key]} and {value!r}")
                    table[lang][key] = (attribute, value)
    return table


@cache
def _pattern(language: str) -> re.Pattern[str]:
    # A zero-width lookahead reports the longest form starting at every position, overlaps included; the
    # greedy pass in _find_matches then prefers long matches over short ones anywhere in the text.
    alternation = "|".join(re.escape(f) for f in sorted(_forms()[language], key=lambda f: (-len(f), f)))
    if language == "en":
        return re.compile(rf"(?<![A-Za-z0-9])(?=({alternation})(?![A-Za-z0-9]))", re.IGNORECASE)
    return re.compile(rf"(?=({alternation}))", re.IGNORECASE)


def _languages(language: object) -> tuple[str, ...]:
    """Vocabulary languages to match: "zh-CN" -> ("zh",); None or a language without a vocabulary -> all."""
    code = language.replace("_", "-").split("-")[0].lower() if isinstance(language, str) else None
    return (code,) if code in LANGUAGES else LANGUAGES


def _find_matches(text: str, language: str | None) -> list[_Match]:
    """Non-overlapping vocabulary matches, longest first (ties: leftmost), returned in text order."""
    candidates = []
    for lang in _languages(language):
        for m in _pattern(lang).finditer(text):
            attribute, value = _forms()[lang][m.group(1).lower()]
            candidates.append(_Match(m.start(1), m.end(1), attribute, value, lang))
    candidates.sort(key=lambda c: (c.start - c.end, c.start))
    taken = np.zeros(len(text), dtype=bool)
    chosen = []
    for c in candidates:
        if not taken[c.start : c.end].any():
            taken[c.start : c.end] = True
            chosen.append(c)
    return sorted(chosen, key=lambda c: c.start)


def find_attributes(text: str, language: str | None = None) -> dict[str, str]:
    """Map attribute name -> canonical value for the vocabulary words in ``text``.

    ``language`` restricts matching to "en" or "zh" forms; None (or a language code without a vocabulary, as
    imported data may carry) uses both. When one attribute matches several times, the longest (then leftmost)
    match wins.
    """
    found: dict[str, _Match] = {}
    for m in _find_matches(text, language):
        best = found.get(m.attribute)
        if best is None or m.end - m.start > best.end - best.start:
            found[m.attribute] = m
    return {name: found[name].value for name in ATTRIBUTES if name in found}


# --- the swap vocabulary of one eval set --------------------------------------------------------------------

SWAP_LEXICON = ("color", "material", "pattern")
# Brands are rarely legible in product photos (the synthetic catalogue never renders one), so a brand swap
# would be a "negative" that the image cannot contradict. The runner keeps brand out of its targets likewise.
UNSWAPPED_ATTRIBUTES = frozenset({"brand"})
_HAN_RUN = re.compile(_CJK.pattern + "+")
_jieba_lock = threading.Lock()


@dataclass(frozen=True)
class Occurrence:
    """``text[start:end]`` is a whole-word form of ``value`` (a value name of ``attribute``)."""

    start: int
    end: int
    attribute: str
    value: str


@dataclass
class CatalogueVocabulary:
    """The swap vocabulary of one eval set: attribute -> value name -> surface forms, matched as whole words.

    A form matches only where the text has word boundaries at both of its ends: jieba's segmentation (with this
    catalogue's words in a private dictionary) inside Chinese, and non-alphanumerics or a change of script
    elsewhere. Where forms overlap, the longest wins. ``product_values`` maps each product to the value names
    the eval set records for it (its category and attributes). Built by :func:`catalogue_vocabulary`.
    """

    values: dict[str, dict[str, tuple[str, ...]]]
    product_values: dict[str, dict[str, str]]
    tokenizer: jieba.Tokenizer = field(repr=False)
    _forms: dict[str, tuple[str, str]] = field(init=False, repr=False)
    _scripted: dict[tuple[str, str, bool], tuple[str, ...]] = field(init=False, repr=False)
    _longest: int = field(init=False, repr=False)
    _boundaries_of: dict[str, list[int]] = field(default_factory=dict, init=False, repr=False)
    _occurrences_of: dict[str, list[Occurrence]] = field(default_factory=dict, init=False, repr=False)
    _eligible: dict[tuple[str, tuple[bool, ...]], tuple[str, ...]] = field(default_factory=dict, init=False,
                                                                          repr=False)

    def __post_init__(self) -> None:
        self._forms = {}
        for attribute, values in self.values.items():
            for value, forms in values.items():
                for form in forms:
                    if self._forms.setdefault(form.casefold(), (attribute, value)) != (attribute, value):
                        raise ValueError(f"form {form!r} is claimed by {self._forms[form.casefold()]} and "
                                         f"{(attribute, value)}; give every form one value")
        self._longest = max((len(form) for form in self._forms), default=0)
        scripted: dict[tuple[str, str, bool], list[str]] = defaultdict(list)
        for attribute, values in self.values.items():
            for value, forms in values.items():
                for form in forms:
                    scripted[(attribute, value, contains_han(form))].append(form)
        self._scripted = {key: tuple(forms) for key, forms in scripted.items()}

    def occurrences(self, text: str) -> list[Occurrence]:
        """Whole-word occurrences of the vocabulary's forms in ``text``, in text order, none overlapping."""
        cached = self._occurrences_of.get(text)
        if cached is None:
            cached = self._occurrences_of[text] = self._find(text)
        return list(cached)

    def forms(self, attribute: str, value: str, *, han: bool) -> tuple[str, ...]:
        """The forms of ``value`` with (``han``) or without Chinese characters."""
        return self._scripted.get((attribute, value, han), ())

    def values_with_forms(self, attribute: str, scripts: tuple[bool, ...]) -> tuple[str, ...]:
        """Values of ``attribute`` that have a form in each script (with Chinese characters or without)."""
        key = (attribute, scripts)
        if key not in self._eligible:
            self._eligible[key] = tuple(v for v in self.values.get(attribute, {})
                                        if all((attribute, v, han) in self._scripted for han in scripts))
        return self._eligible[key]

    def _find(self, text: str) -> list[Occurrence]:
        cuts = self._boundaries(text)
        found = []
        for k, start in enumerate(cuts):
            for end in cuts[k + 1 :]:
                if end - start > self._longest:
                    break
                hit = self._forms.get(text[start:end].casefold())
                if hit is not None:
                    found.append(Occurrence(start, end, *hit))
        found.sort(key=lambda o: (o.start - o.end, o.start))
        taken = [False] * len(text)
        chosen = []
        for o in found:
            if not any(taken[o.start : o.end]):
                taken[o.start : o.end] = [True] * (o.end - o.start)
                chosen.append(o)
        return sorted(chosen, key=lambda o: o.start)

    def named(self, text: str) -> dict[str, set[str]]:
        """Attribute -> the value names ``text`` mentions as whole words."""
        named: dict[str, set[str]] = defaultdict(set)
        for o in self.occurrences(text):
            named[o.attribute].add(o.value)
        return dict(named)

    def _boundaries(self, text: str) -> list[int]:
        cuts = self._boundaries_of.get(text)
        if cuts is None:
            edges = {0, len(text)}
            for i in range(1, len(text)):
                left, right = text[i - 1], text[i]
                if not (left.isalnum() and right.isalnum()) or bool(_CJK.match(left)) != bool(_CJK.match(right)):
                    edges.add(i)
            for run in _HAN_RUN.finditer(text):
                edges.update(run.start() + start for _, start, _ in self.tokenizer.tokenize(run.group()))
            cuts = self._boundaries_of[text] = sorted(edges)
        return cuts


@cache
def _lexicon_lookup() -> dict[tuple[str, str], str]:
    """(attribute, normalised value name or form) -> canonical lexicon value."""
    table: dict[tuple[str, str], str] = {}
    for attribute, values in ATTRIBUTES.items():
        for value, by_language in values.items():
            for form in (value, *(f for forms in by_language.values() for f in forms)):
                table.setdefault((attribute, normalise_text(form)), value)
    return table


@cache
def _base_dictionary() -> tuple[dict[str, int], int]:
    import jieba

    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    return tokenizer.FREQ, tokenizer.total


def _private_tokenizer(words: set[str]) -> jieba.Tokenizer:
    """A jieba tokenizer of its own (jieba's dictionary copied, ``words`` added), so nothing leaks between
    eval sets or threads through jieba's global dictionary."""
    import jieba

    with _jieba_lock:
        freq, total = _base_dictionary()
    tokenizer = jieba.Tokenizer()
    tokenizer.FREQ, tokenizer.total, tokenizer.initialized = dict(freq), total, True
    for word in sorted(words):  # sorted: a word's suggested frequency depends on the words added before it
        tokenizer.add_word(word)
    return tokenizer


def _is_single_han(form: str) -> bool:
    return len(form) == 1 and bool(_CJK.match(form))


def catalogue_vocabulary(data: EvalSetData, *, skip: frozenset[str] = UNSWAPPED_ATTRIBUTES) -> CatalogueVocabulary:
    """The swap vocabulary of ``data``: its own categories and attribute values, plus lexicon words it uses.

    Values come from the category column and the ``attributes`` frame (except the ``skip`` attributes), each
    with its own string as a form. A value that is a lexicon value of the same attribute (``ATTRIBUTES``; e.g.
    category "phone" or colour "红色") also gets the lexicon's forms of it that occur as whole words in this
    eval set's texts, and lexicon colours, materials and patterns the texts use become values too. Nothing
    else of the lexicon is used (no demo category reaches a user's eval set), nor any single Chinese character
    the eval set does not declare itself: 红 in 红米 or 口红 is no colour. Deterministic and independent of row
    order.
    """
    declared: list[tuple[str, str, str]] = []  # (attribute, value as written, product); category first
    for product, category in zip(data.products["product_id"], data.products["category"], strict=True):
        if not pd.isna(category) and str(category).strip():
            declared.append(("category", str(category).strip(), str(product)))
    attributes = data.attributes[["product_id", "name", "value"]]
    declared += sorted((str(n), str(v).strip(), str(p)) for p, n, v in attributes.itertuples(index=False)
                       if not pd.isna(v) and str(v).strip())
    declared = sorted(declared, key=lambda d: (d[0] != "category", d))
    lexicon = _lexicon_lookup()

    # Every candidate form, casefolded -> (attribute, identity, form as written, declared); a form claimed
    # twice keeps its first claim: declared values (category first), then the lexicon.
    candidates: dict[str, tuple[str, str, str, bool]] = {}
    names: dict[tuple[str, str], str] = {}  # (attribute, identity) -> value name: its smallest written form
    product_keys: dict[str, dict[str, tuple[str, str]]] = defaultdict(dict)
    for attribute, written, product in declared:
        if attribute in skip:
            continue
        key = (attribute, lexicon.get((attribute, normalise_text(written)), normalise_text(written)))
        names.setdefault(key, written)
        product_keys[product][attribute] = key
        candidates.setdefault(written.casefold(), (*key, written, True))
    lexicon_keys = {key for key in names if key[1] in ATTRIBUTES.get(key[0], {})}
    for attribute, value in sorted(lexicon_keys | {(a, v) for a in SWAP_LEXICON for v in ATTRIBUTES[a]}):
        for form in (f for forms in ATTRIBUTES[attribute][value].values() for f in forms):
            if not _is_single_han(form):
                candidates.setdefault(form.casefold(), (attribute, value, form, False))
    words = {run for _, w, _ in declared for run in _HAN_RUN.findall(w) if len(run) > 1}
    words |= {run for *_, form, _ in candidates.values() for run in _HAN_RUN.findall(form) if len(run) > 1}
    tokenizer = _private_tokenizer(words)

    # Keep declared forms, and the lexicon forms that the texts use as whole words.
    everything: dict[str, dict[str, tuple[str, ...]]] = defaultdict(dict)
    for attribute, identity, form, _ in candidates.values():
        everything[attribute][identity] = (*everything[attribute].get(identity, ()), form)
    scan = CatalogueVocabulary(dict(everything), {}, tokenizer)
    kept = {key for key, claim in candidates.items() if claim[3]}
    for text in sorted(set(data.texts["text"].dropna().astype(str))):
        kept.update(text[o.start : o.end].casefold() for o in scan.occurrences(text))
    values: dict[str, dict[str, list[str]]] = defaultdict(dict)
    for key in sorted(kept):
        attribute, identity, form, _ = candidates[key]
        values[attribute].setdefault(names.get((attribute, identity), identity), []).append(form)
    vocabulary = CatalogueVocabulary(
        {a: {v: tuple(sorted(f)) for v, f in sorted(by_value.items())} for a, by_value in sorted(values.items())},
        {p: {a: names[key] for a, key in keys.items()} for p, keys in sorted(product_keys.items())},
        tokenizer,
    )
    vocabulary._boundaries_of.update(scan._boundaries_of)  # same tokenizer, same boundaries
    return vocabulary


@cache
def _tag_index() -> dict[tuple[str, str], int]:
    pairs = [(name, value) for name, values in ATTRIBUTES.items() for value in values]
    return {pair: i for i, pair in enumerate(pairs)}


def tag_names() -> list[str]:
    """Tag names "attribute=value" in vocabulary order (the columns of ``tag_vector``)."""
    return [f"{name}={value}" for name, value in _tag_index()]


def tag_vector(attrs: dict[str, str]) -> np.ndarray:
    """Multi-hot float32 vector over ``tag_names()``; pairs not in the vocabulary (e.g. brand) are ignored."""
    index = _tag_index()
    vec = np.zeros(len(index), dtype=np.float32)
    for name, value in attrs.items():
        i = index.get((name, value))
        if i is not None:
            vec[i] = 1.0
    return vec


def text_tags(text: str, language: str | None = None) -> np.ndarray:
    """Tag vector of the attributes that vocabulary matching finds in ``text``."""
    return tag_vector(find_attributes(text, language))
