"""Bilingual (English/Chinese) product attribute vocabulary.

One table serves the synthetic catalogue (titles), attribute-swap negatives and the fusion heads' multi-hot
tag vectors, so a word the catalogue writes is always a word the matcher can find. Every surface form belongs
to exactly one canonical value; matching takes the longest form first, so "navy blue" is navy (not blue) and
"solid wood" is a material (not the solid pattern).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import numpy as np

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
class SwapResult:
    """A text with one attribute surface form replaced by a form of another value of that attribute."""

    text: str
    attribute: str
    old_value: str
    new_value: str


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


def _match_case(form: str, old: str) -> str:
    return form[0].upper() + form[1:] if old[:1].isupper() and form[:1].islower() else form


def swap_attribute(
    text: str,
    rng: np.random.Generator,
    *,
    attributes: tuple[str, ...] = ("color", "material", "pattern", "category"),
    language: str | None = None,
) -> SwapResult | None:
    """Replace one attribute word by a word of another value of the same attribute, in the same language.

    Candidates are tried in random order; a swap is kept only if matching the new text finds the new value and
    leaves the other attributes unchanged. Returns None when the text has nothing swappable.
    """
    unknown = [a for a in attributes if a not in ATTRIBUTES]
    if unknown:
        raise ValueError(f"unknown attributes {unknown}; expected a subset of {list(ATTRIBUTES)}")
    before = find_attributes(text, language)
    matches = [m for m in _find_matches(text, language) if m.attribute in attributes]
    for i in rng.permutation(len(matches)):
        m = matches[i]
        others = [v for v in ATTRIBUTES[m.attribute] if v != m.value]
        for j in rng.permutation(len(others)):
            new_value = others[j]
            forms = ATTRIBUTES[m.attribute][new_value][m.language]
            form = _match_case(forms[int(rng.integers(len(forms)))], text[m.start : m.end])
            new_text = text[: m.start] + form + text[m.end :]
            if find_attributes(new_text, language) == {**before, m.attribute: new_value}:
                return SwapResult(new_text, m.attribute, m.value, new_value)
    return None


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
