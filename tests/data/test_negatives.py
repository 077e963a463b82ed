from __future__ import annotations

import hashlib

import pandas as pd
import pytest

from workbench import store
from workbench.data import evalsets
from workbench.data.catalog import generate_catalog
from workbench.data.grouping import content_groups, normalise_text
from workbench.data.model import PAIR_COLUMNS, EvalSetData
from workbench.data.negatives import NEGATIVE_KINDS
from workbench.data.splits import make_pairs
from workbench.data.vocab import ATTRIBUTES, catalogue_vocabulary, detect_language

ALL_TRAIN = (1.0, 0.0, 0.0)  # one split, so every product can serve as another's negative

# (product, category, attributes, title templates, image seed): {category} and {color} mark the product's own
# words, so the expected text of any swap is the template filled with the new value.
CN_SHOP = [
    ("lip1", "彩妆", {"color": "红"}, ["花西子 雕花口红 {color}"], 1),
    ("lip2", "彩妆", {"color": "米白"}, ["完美日记 丝绒口红 {color}"], 2),
    ("ph1", "手机", {"color": "曜石黑"}, ["小米 {category} 红米Note13 {color} 5G{category}"], 3),
    ("ph2", "手机", {"color": "红"}, ["小米 红米Note13 {color} {category}"], 4),
    ("pad", "平板", {"color": "星光银"}, ["华为 MatePad {color} {category}"], 5),
    ("case", "手机壳", {"color": "透明"}, ["{color} {category} 适用 曜石黑 手机"], 6),  # names a phone's colour
    ("buds", "耳机", {}, ["黑科技降噪{category} {color}"], 7),  # 黑 (black tech) is no colour; 白色 is
]
CN_WRITTEN = {"ph2": {"category": "手机", "color": "红色"}, "buds": {"category": "耳机", "color": "白色"}}
CN_TRUTH = {"buds": {"category": "耳机", "color": "white"}}  # white: the lexicon's, as 白色 is in a title
EN_SHOP = [
    ("m1", "Mug", {"color": "red"}, ["Redwood {Color} {category}, {color} glaze"], 1),
    ("m2", "Mug", {"color": "navy"}, ["Lumio {color} {category}"], 2),
    ("v1", "Vase", {"color": "green"}, ["Tall {color} {category}"], 3),
]
EN_WRITTEN = {"m1": {"color": "red", "category": "mug"}, "m2": {"color": "navy blue", "category": "mug"},
              "v1": {"color": "green", "category": "vase"}}


def _fill(template: str, category: str, color: str) -> str:
    return template.format(category=category, color=color, Color=color[:1].upper() + color[1:])


def _shop(make_image, rows, written: dict[str, dict[str, str]] | None = None) -> EvalSetData:
    """An eval set with one real image per product (same seed: byte-identical) and titles from templates."""
    products, attributes, images, texts = [], [], [], []
    for product, category, attrs, templates, seed in rows:
        products.append((product, category))
        attributes += [(product, name, value) for name, value in attrs.items()]
        path = make_image(f"img/{product}.png", size=(12, 10), seed=seed)
        images.append((f"{product}-i", product, str(path), hashlib.sha256(path.read_bytes()).hexdigest(), 12, 10))
        words = (written or {}).get(product, {"category": category, "color": attrs.get("color", "")})
        for k, template in enumerate(templates):
            title = _fill(template, words["category"], words["color"])
            texts.append((f"{product}-t{k}", product, title, detect_language(title), "-"))
    return EvalSetData(
        pd.DataFrame(products, columns=["product_id", "category"]),
        pd.DataFrame(attributes, columns=["product_id", "name", "value"]),
        pd.DataFrame(images, columns=["image_id", "product_id", "path", "sha256", "width", "height"]),
        pd.DataFrame(texts, columns=["text_id", "product_id", "text", "language", "sha256"]),
    )


def _attribute_negatives(paired: EvalSetData) -> pd.DataFrame:
    texts = paired.texts.set_index("text_id")["text"]
    image_product = paired.images.set_index("image_id")["product_id"]
    swaps = paired.pairs[paired.pairs["pair_kind"] == "attribute"]
    return swaps.assign(text=swaps["text_id"].map(texts), product=swaps["image_id"].map(image_product))


def test_chinese_swaps_replace_whole_words_everywhere(make_image) -> None:
    data = _shop(make_image, CN_SHOP, CN_WRITTEN)
    vocabulary = catalogue_vocabulary(data)
    assert vocabulary.values["color"]["红"] == ("红", "红色")  # the lexicon's 红色 (used in a title) is 红
    rows = {product: (category, attrs, templates[0]) for product, category, attrs, templates, _ in CN_SHOP}
    swapped: dict[str, set[str]] = {}
    for seed in range(8):
        negatives = _attribute_negatives(make_pairs(data, seed=seed, fractions=ALL_TRAIN))
        assert len(negatives) == len(CN_SHOP)
        for row in negatives.itertuples():
            category, attrs, template = rows[row.product]
            truth = CN_TRUTH.get(row.product, {"category": category, **attrs})
            assert row.swap_from == truth[row.swapped_attribute] != row.swap_to
            written = CN_WRITTEN.get(row.product, {"category": category, **attrs})
            forms = vocabulary.values[row.swapped_attribute][row.swap_to]
            # whole words, every occurrence: 口红 never becomes 口米白, 红米 stays, both 手机 change
            assert row.text in {_fill(template, **{**written, row.swapped_attribute: form}) for form in forms}, row
            swapped.setdefault(row.product, set()).add(row.swapped_attribute)
    # the lipsticks' category (彩妆) is in no title: only their colour can change
    assert swapped == {"lip1": {"color"}, "lip2": {"color"}, **{p: {"category", "color"} for p, *_ in CN_SHOP[2:]}}


def test_english_swaps_respect_word_boundaries_and_case(make_image) -> None:
    data = _shop(make_image, EN_SHOP, EN_WRITTEN)
    vocabulary = catalogue_vocabulary(data)
    assert vocabulary.values["color"]["navy"] == ("navy", "navy blue")
    templates = {product: templates[0] for product, _, _, templates, _ in EN_SHOP}
    seen = set()
    for seed in range(8):
        for row in _attribute_negatives(make_pairs(data, seed=seed, fractions=ALL_TRAIN)).itertuples():
            written = EN_WRITTEN[row.product]
            forms = vocabulary.values[row.swapped_attribute][row.swap_to]
            expected = {_fill(templates[row.product], **{**written, row.swapped_attribute: form}) for form in forms}
            assert row.text in expected, row  # "Redwood" intact, "Red"/"red" both swapped, "navy blue" whole
            seen.add((row.product, row.swapped_attribute))
    assert {("m1", "color"), ("m2", "color"), ("m1", "category")} <= seen


def test_a_swap_that_fuses_with_its_neighbour_is_discarded(make_image) -> None:
    rows = [
        ("a", "Mug", {"color": "red"}, ["Lumio red blue mug"], 1),  # red -> navy reads "navy blue": blue is lost
        ("b", "Lamp", {"color": "navy"}, ["Halden navy blue lamp"], 2),
    ]
    data = _shop(make_image, rows)
    inexact = 0
    for seed in range(10):
        paired = make_pairs(data, seed=seed, fractions=ALL_TRAIN, negatives=("attribute",))
        texts = set(_attribute_negatives(paired)["text"])
        assert "Lumio navy blue mug" not in texts
        inexact += paired.audit["negatives"]["discarded"].get("inexact_swap", 0)
    assert inexact > 0


def test_no_negative_is_a_match_and_no_pair_is_stored_twice(make_image) -> None:
    rows = [
        ("a", None, {"color": "red"}, ["Lumio {color} mug"], 1),
        ("b", None, {"color": "blue"}, ["Lumio {color} mug"], 1),  # a reseller's copy of a's photo
        ("c", "Vase", {}, ["Nordvik {category}"], 3),
        ("d", "Vase", {}, ["NORDVIK  vase"], 4),  # c's title, written differently
        ("x", "Lamp", {}, ["Halden lamp", "Halden desk lamp", "Halden lamp for bedroom"], 5),
        ("y", "Lamp", {}, ["Corvo lamp"], 6),
    ]
    data = _shop(make_image, rows)
    groups = content_groups(data)
    assert groups["a"] == groups["b"] and groups["c"] == groups["d"]
    group_texts: dict[str, set[str]] = {}
    for product, text in zip(data.texts["product_id"], data.texts["text"], strict=True):
        group_texts.setdefault(groups[product], set()).add(normalise_text(text))
    for seed in range(10):
        paired = make_pairs(data, seed=seed, fractions=ALL_TRAIN)
        pairs = paired.pairs.merge(paired.texts[["text_id", "text"]], on="text_id")
        pairs["group"] = pairs["image_id"].map(paired.images.set_index("image_id")["product_id"]).map(groups)
        pairs["normalised"] = pairs["text"].map(normalise_text)
        negatives = pairs[pairs["label"] == 0]
        assert not [n for g, n in zip(negatives["group"], negatives["normalised"], strict=True) if n in group_texts[g]]
        assert not pairs.duplicated(["image_id", "normalised"]).any()
        discarded = paired.audit["negatives"]["discarded"]
        # a's only swap (red -> blue) gives b's title, and b's gives a's; x's three titles share one hard text
        assert discarded["equals_positive"] == 2 and discarded["duplicate"] >= 2


def test_audit_counts_negatives_swaps_and_discards(make_image) -> None:
    rows = [
        ("p1", "手机", {"color": "曜石黑"}, ["小米 红米Note13 {color} 5G{category}"], 1),
        ("p2", "手机", {"color": "冰川蓝"}, ["华为 Mate60 {color} {category}"], 2),
        ("p3", None, {}, ["USB-C 数据线 1米"], 3),
    ]
    paired = make_pairs(_shop(make_image, rows, {"p3": {"category": "", "color": ""}}), seed=0,
                        fractions=ALL_TRAIN)
    audit = paired.audit["negatives"]
    assert audit == {
        "by_kind": {"attribute": 2, "hard": 2, "random": 3},
        "swaps_by_attribute": {"color": 2},  # one category only: nothing to swap it with
        "discarded": {"no_category": 1, "nothing_to_swap": 1},  # p3: no category, no vocabulary word
        "vocabulary": {"category": 1, "color": 2},
    }
    negatives = paired.pairs[paired.pairs["label"] == 0]
    assert negatives["pair_kind"].value_counts().to_dict() == {"random": 3, "hard": 2, "attribute": 2}
    swaps = negatives[negatives["pair_kind"] == "attribute"]
    expected = [("冰川蓝", "曜石黑"), ("曜石黑", "冰川蓝")]
    assert sorted(zip(swaps["swap_from"], swaps["swap_to"], strict=True)) == expected
    others = paired.pairs[paired.pairs["pair_kind"] != "attribute"]
    for column in ("swapped_attribute", "swap_from", "swap_to"):
        assert others[column].map(lambda v: v is None).all(), column  # None, never NaN or "nan"


def test_user_catalogue_never_receives_demo_vocabulary(make_image) -> None:
    data = _shop(make_image, CN_SHOP, CN_WRITTEN)
    shop_words = " ".join([*data.texts["text"], *data.products["category"], *data.attributes["value"]])
    vocabulary = catalogue_vocabulary(data)
    assert all(form in shop_words for values in vocabulary.values.values() for forms in values.values()
               for form in forms)
    demo_forms = {f for value in ATTRIBUTES["category"].values() for forms in value.values() for f in forms
                  if len(f) > 1 and f not in shop_words}
    for seed in range(5):
        paired = make_pairs(data, seed=seed, fractions=ALL_TRAIN)
        new_texts = paired.texts[paired.texts["product_id"].isna()]["text"]
        assert not [(t, f) for t in new_texts for f in demo_forms if f in t]
        for row in _attribute_negatives(paired).itertuples():
            assert row.swap_to in vocabulary.values[row.swapped_attribute]


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    parts = generate_catalog(tmp_path_factory.mktemp("cat"), n_products=60, seed=1)
    return EvalSetData(parts.products, parts.attributes, parts.images, parts.texts)


def test_demo_catalogue_keeps_its_four_swap_kinds(catalogue) -> None:
    paired = make_pairs(catalogue, seed=2)
    swaps = _attribute_negatives(paired)
    assert set(swaps["swapped_attribute"]) == {"category", "color", "material", "pattern"}
    truth = catalogue.attributes.pivot(index="product_id", columns="name", values="value")
    truth["category"] = catalogue.products.set_index("product_id")["category"]
    for row in swaps.itertuples():
        assert row.swap_from == truth.at[row.product, row.swapped_attribute]
        assert row.swap_to in ATTRIBUTES[row.swapped_attribute] and row.swap_to != row.swap_from
    languages = set(paired.texts.set_index("text_id").loc[swaps["text_id"], "language"])
    assert languages == {"en", "zh"}
    audit = paired.audit["negatives"]
    assert audit["swaps_by_attribute"] == swaps["swapped_attribute"].value_counts().sort_index().to_dict()
    kinds = paired.pairs.loc[paired.pairs["label"] == 0, "pair_kind"].value_counts().sort_index().to_dict()
    assert audit["by_kind"] == kinds and set(kinds) == set(NEGATIVE_KINDS)


def test_pairs_depend_on_content_and_seed_not_row_order(catalogue) -> None:
    shuffled = EvalSetData(*(frame.sample(frac=1.0, random_state=7) for frame in
                             (catalogue.products, catalogue.attributes, catalogue.images, catalogue.texts)))
    a, b = make_pairs(catalogue, seed=4), make_pairs(shuffled, seed=4)

    def ordered(frame: pd.DataFrame, key: str) -> pd.DataFrame:
        return frame.sort_values(key).reset_index(drop=True)

    pd.testing.assert_frame_equal(ordered(a.pairs, "pair_id"), ordered(b.pairs, "pair_id"))
    pd.testing.assert_frame_equal(ordered(a.texts, "text_id"), ordered(b.texts, "text_id"))
    assert a.audit == b.audit
    assert set(make_pairs(catalogue, seed=5).pairs["pair_id"]) != set(a.pairs["pair_id"])


def test_swap_columns_survive_the_store(db, make_image) -> None:
    paired = make_pairs(_shop(make_image, CN_SHOP, CN_WRITTEN), seed=0, fractions=(0.6, 0.2, 0.2))
    with store.connect(db) as con:
        evalsets.store_eval_set(con, "shop", paired, seed=0, source="test", fmt="csv")
        loaded = evalsets.load_eval_set(con, "shop")
        stored = con.execute("SELECT pair_kind, swap_from IS NULL AS missing, swap_from = 'nan' AS nan_string "
                             "FROM pairs WHERE eval_set = ?", ["shop"]).df()
    assert tuple(loaded.pairs.columns) == PAIR_COLUMNS

    def swaps(pairs: pd.DataFrame) -> dict[str, tuple]:
        columns = ["pair_id", "swapped_attribute", "swap_from", "swap_to"]
        return {pid: tuple(None if pd.isna(v) else v for v in rest) for pid, *rest in pairs[columns].itertuples(
            index=False)}

    assert swaps(loaded.pairs) == swaps(paired.pairs)
    assert sum(v[1] is not None for v in swaps(loaded.pairs).values()) == len(CN_SHOP)
    assert (stored["missing"] == (stored["pair_kind"] != "attribute")).all() and not stored["nan_string"].any()


def test_labelled_sources_get_swap_columns_and_an_audit(make_image) -> None:
    data = _shop(make_image, EN_SHOP, EN_WRITTEN)
    data.pairs = pd.DataFrame([
        {"pair_id": "a", "image_id": "m1-i", "text_id": "m2-t0", "label": 0, "split": "test", "pair_kind": "labelled",
         "swapped_attribute": None},
        {"pair_id": "b", "image_id": "m1-i", "text_id": "m1-t0", "label": 1, "split": None, "pair_kind": "labelled",
         "swapped_attribute": None},
    ])
    paired = make_pairs(data, seed=0)
    assert tuple(paired.pairs.columns) == PAIR_COLUMNS
    assert paired.pairs["swap_from"].map(lambda v: v is None).all()
    assert paired.audit["negatives"] == {"by_kind": {"labelled": 1}, "swaps_by_attribute": {}, "discarded": {}}
