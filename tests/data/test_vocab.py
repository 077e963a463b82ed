from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.data.model import EvalSetData
from workbench.data.vocab import (
    ATTRIBUTES,
    CATEGORIES,
    catalogue_vocabulary,
    detect_language,
    find_attributes,
    tag_names,
    tag_vector,
    text_tags,
)

EN_TITLE = "Lumio crimson cotton striped T-shirt, size M"
ZH_TITLE = "露米奥 红色 纯棉 条纹 T恤 M码"
ZH_TITLE_NO_SPACES = "露米奥红色纯棉条纹T恤 M码"
TRUTH = {"color": "red", "material": "cotton", "pattern": "striped", "category": "tshirt"}


def test_vocabulary_covers_required_attributes() -> None:
    assert CATEGORIES == [
        "tshirt", "mug", "sneaker", "handbag", "phone", "watch",
        "lamp", "backpack", "bottle", "chair", "hat", "umbrella",
    ]  # fmt: skip
    assert list(ATTRIBUTES["category"]) == CATEGORIES
    assert len(ATTRIBUTES["color"]) >= 12
    assert len(ATTRIBUTES["material"]) >= 6
    assert len(ATTRIBUTES["pattern"]) >= 6
    for values in ATTRIBUTES.values():
        for forms in values.values():
            assert forms["en"] and forms["zh"]


def test_every_surface_form_maps_back_to_its_value() -> None:
    # Also proves no form is claimed by two values and longest-match keeps multi-word forms whole.
    for attribute, values in ATTRIBUTES.items():
        for value, by_language in values.items():
            for language, forms in by_language.items():
                for form in forms:
                    assert find_attributes(form, language) == {attribute: value}, form


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("navy blue tee", {"color": "navy", "category": "tshirt"}),
        ("solid wood dining chair", {"material": "wood", "category": "chair"}),
        ("sky blue polka-dot mug", {"color": "blue", "pattern": "dotted", "category": "mug"}),
        ("深蓝色 T恤", {"color": "navy", "category": "tshirt"}),
        ("粉红色 雨伞", {"color": "pink", "category": "umbrella"}),
        ("蓝绿色保温杯", {"color": "teal", "category": "bottle"}),
        ("米白色 帆布 背包", {"color": "beige", "material": "canvas", "category": "backpack"}),
    ],
)
def test_find_attributes_prefers_longest_match(text: str, expected: dict[str, str]) -> None:
    assert find_attributes(text) == expected


def test_find_attributes_english_word_boundaries_and_case() -> None:
    assert find_attributes("Redwood glasses with large capacity") == {}
    assert find_attributes("RED MUG") == {"color": "red", "category": "mug"}
    assert find_attributes(EN_TITLE) == TRUTH
    assert find_attributes(ZH_TITLE) == TRUTH
    assert find_attributes(ZH_TITLE_NO_SPACES) == TRUTH


def test_find_attributes_language_filter() -> None:
    mixed = "蓝色 mug"
    assert find_attributes(mixed, "zh") == {"color": "blue"}
    assert find_attributes(mixed, "en") == {"category": "mug"}
    assert find_attributes(mixed, "zh-CN") == {"color": "blue"}
    # Languages without a vocabulary of their own (imported data) are matched with every form.
    assert find_attributes(mixed, "de") == find_attributes(mixed) == {"color": "blue", "category": "mug"}


@pytest.mark.parametrize(
    ("text", "language"),
    [(EN_TITLE, "en"), (ZH_TITLE, "zh"), ("Lumio 红色 T恤", "zh"), ("red mug 红", "en"), ("", "en")],
)
def test_detect_language(text: str, language: str) -> None:
    assert detect_language(text) == language


def test_tag_vector_and_text_tags() -> None:
    names = tag_names()
    assert len(names) == len(set(names)) == sum(len(v) for v in ATTRIBUTES.values())
    assert names[0] == f"color={next(iter(ATTRIBUTES['color']))}"
    vec = tag_vector({**TRUTH, "brand": "Lumio", "color": "red"})
    assert vec.shape == (len(names),) and vec.dtype == np.float32
    assert sorted(names[i] for i in np.flatnonzero(vec)) == sorted(f"{k}={v}" for k, v in TRUTH.items())
    assert tag_vector({"color": "not-a-colour"}).sum() == 0
    np.testing.assert_array_equal(text_tags(EN_TITLE), tag_vector(TRUTH))
    np.testing.assert_array_equal(text_tags(EN_TITLE, "en"), text_tags(ZH_TITLE, "zh"))


# --- the swap vocabulary of one eval set --------------------------------------------------------------------


def _catalogue(rows: list[tuple[str, str | None, dict[str, str], list[str]]]) -> EvalSetData:
    """(product, category, attributes, titles) rows as an eval set without images."""
    products = pd.DataFrame([(p, c) for p, c, _, _ in rows], columns=["product_id", "category"])
    attributes = pd.DataFrame([(p, n, v) for p, _, attrs, _ in rows for n, v in attrs.items()],
                              columns=["product_id", "name", "value"])
    texts = pd.DataFrame([(f"{p}-t{k}", p, title, detect_language(title), "-")
                          for p, _, _, titles in rows for k, title in enumerate(titles)],
                         columns=["text_id", "product_id", "text", "language", "sha256"])
    return EvalSetData(products, attributes, texts=texts)


PHONE_SHOP = [
    ("p1", "手机", {"color": "曜石黑", "brand": "小米"}, ["小米 红米Note13 曜石黑 5G手机", "小米红米Note13曜石黑手机"]),
    ("p2", "手机", {"color": "冰川蓝", "brand": "华为"}, ["华为 Mate60 冰川蓝 手机 送手机壳"]),
    ("p3", "平板", {"color": "星光银"}, ["华为 MatePad 星光银 平板"]),
    ("p4", "口红", {"color": "红"}, ["花西子 雕花口红 红", "Florasis carved lipstick, red"]),
    ("p5", "口红", {}, ["完美日记 口红 红色 丝绒"]),
]


def _words(vocabulary, text: str) -> list[tuple[str, str, str]]:
    return [(text[o.start : o.end], o.attribute, o.value) for o in vocabulary.occurrences(text)]


def test_catalogue_vocabulary_comes_from_the_eval_set() -> None:
    vocabulary = catalogue_vocabulary(_catalogue(PHONE_SHOP))
    assert vocabulary.values["category"] == {"口红": ("口红",), "平板": ("平板",), "手机": ("手机",)}
    # Declared colours as written; the declared 红 is the lexicon's red, so it also gets the lexicon's forms of red
    # that the titles use ("red", 红色). Single lexicon characters are never forms unless declared.
    assert vocabulary.values["color"] == {
        "冰川蓝": ("冰川蓝",), "星光银": ("星光银",), "曜石黑": ("曜石黑",), "红": ("red", "红", "红色"),
    }  # fmt: skip
    assert "brand" not in vocabulary.values  # unswapped: a brand swap is invisible in most photos
    assert vocabulary.product_values["p1"] == {"category": "手机", "color": "曜石黑"}
    assert vocabulary.product_values["p5"] == {"category": "口红"}
    demo_words = {f.casefold() for v in ATTRIBUTES["category"].values() for forms in v.values() for f in forms}
    forms = {f.casefold() for values in vocabulary.values.values() for fs in values.values() for f in fs}
    assert not forms & (demo_words - {"手机"}), "a demo category word reached a user's eval set"


def test_catalogue_vocabulary_matches_whole_chinese_words() -> None:
    vocabulary = catalogue_vocabulary(_catalogue(PHONE_SHOP))
    # 红米 is a phone line, 口红 a lipstick: neither holds a colour; 曜石黑 is one word (the private dictionary)
    phone = [("曜石黑", "color", "曜石黑"), ("手机", "category", "手机")]
    assert _words(vocabulary, "小米 红米Note13 曜石黑 5G手机") == phone
    assert _words(vocabulary, "小米红米Note13曜石黑手机") == phone
    assert _words(vocabulary, "花西子 雕花口红 红") == [("口红", "category", "口红"), ("红", "color", "红")]
    assert _words(vocabulary, "完美日记 口红 红色 丝绒") == [("口红", "category", "口红"), ("红色", "color", "红")]
    assert [w for w, _, _ in _words(vocabulary, "华为 Mate60 冰川蓝 手机 送手机壳")] == ["冰川蓝", "手机", "手机"]
    assert vocabulary.named("花西子 雕花口红") == {"category": {"口红"}}


def test_catalogue_vocabulary_matches_english_at_word_boundaries() -> None:
    shop = _catalogue([
        ("a", "Mug", {"color": "navy"}, ["Redwood navy blue ceramic mug", "Navy Blue MUG"]),
        ("b", "Mug", {"color": "red"}, ["Red mug, crimson glaze"]),
    ])  # fmt: skip
    vocabulary = catalogue_vocabulary(shop)
    assert vocabulary.values["color"] == {"navy": ("navy", "navy blue"), "red": ("crimson", "red")}
    assert vocabulary.values["category"] == {"Mug": ("Mug",)} and vocabulary.values["material"] == {
        "ceramic": ("ceramic",)}
    assert _words(vocabulary, "Redwood navy blue ceramic mug") == [
        ("navy blue", "color", "navy"), ("ceramic", "material", "ceramic"), ("mug", "category", "Mug")]
    assert _words(vocabulary, "Red mug, crimson glaze") == [("Red", "color", "red"), ("mug", "category", "Mug"),
                                                            ("crimson", "color", "red")]


def test_catalogue_vocabulary_is_independent_of_row_order_and_private() -> None:
    data = _catalogue(PHONE_SHOP)
    shuffled = EvalSetData(data.products.iloc[::-1], data.attributes.iloc[::-1], texts=data.texts.iloc[::-1])
    a, b = catalogue_vocabulary(data), catalogue_vocabulary(shuffled)
    assert (a.values, a.product_values) == (b.values, b.product_values)
    # Each eval set has its own jieba dictionary: one catalogue's words do not change another's segmentation.
    other = catalogue_vocabulary(_catalogue([("x", "Mug", {}, ["Lumio mug"])]))
    assert "曜石黑" in a.tokenizer.FREQ and "曜石黑" not in other.tokenizer.FREQ
