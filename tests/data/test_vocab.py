from __future__ import annotations

import numpy as np
import pytest

from workbench.data.vocab import (
    ATTRIBUTES,
    CATEGORIES,
    SwapResult,
    detect_language,
    find_attributes,
    swap_attribute,
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


@pytest.mark.parametrize("text", [EN_TITLE, ZH_TITLE, ZH_TITLE_NO_SPACES])
def test_swap_attribute_changes_exactly_one_attribute(text: str) -> None:
    language = detect_language(text)
    seen = set()
    for seed in range(40):
        swap = swap_attribute(text, np.random.default_rng(seed), language=language)
        assert isinstance(swap, SwapResult)
        seen.add(swap.attribute)
        assert swap.old_value == TRUTH[swap.attribute] != swap.new_value
        assert swap.new_value in ATTRIBUTES[swap.attribute]
        assert find_attributes(swap.text, language) == {**TRUTH, swap.attribute: swap.new_value}
        assert detect_language(swap.text) == language
    assert seen == set(TRUTH)


def test_swap_attribute_respects_attribute_subset_and_rng() -> None:
    swap = swap_attribute(ZH_TITLE, np.random.default_rng(3), attributes=("color",), language="zh")
    assert swap is not None and swap.attribute == "color"
    assert swap.text.replace(" ", "") != ZH_TITLE.replace(" ", "")
    again = swap_attribute(ZH_TITLE, np.random.default_rng(3), attributes=("color",), language="zh")
    assert again == swap
    capitalised = swap_attribute("Crimson mug", np.random.default_rng(0), attributes=("color",))
    assert capitalised is not None and capitalised.text[0].isupper()


def test_swap_attribute_none_and_errors() -> None:
    assert swap_attribute("Lumio, size M", np.random.default_rng(0)) is None
    assert swap_attribute(EN_TITLE, np.random.default_rng(0), attributes=()) is None
    with pytest.raises(ValueError, match="brand"):
        swap_attribute(EN_TITLE, np.random.default_rng(0), attributes=("brand",))


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
