from __future__ import annotations

import pandas as pd
import pytest

from workbench import store
from workbench.data import evalsets
from workbench.data.catalog import generate_catalog
from workbench.data.model import EvalSetData
from workbench.data.splits import make_pairs, split_products
from workbench.data.vocab import find_attributes


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    return generate_catalog(tmp_path_factory.mktemp("cat"), n_products=60, seed=1)


def _data(parts) -> EvalSetData:
    return EvalSetData(parts.products, parts.attributes, parts.images, parts.texts)


def test_split_is_by_product_stratified_and_seeded(parts):
    a = split_products(parts.products, seed=5)
    assert a == split_products(parts.products, seed=5)
    assert a != split_products(parts.products, seed=6)
    assert set(a) == set(parts.products["product_id"])
    frame = parts.products.assign(split=parts.products["product_id"].map(a))
    for _, group in frame.groupby("category"):  # every category with >= 3 products reaches train
        if len(group) >= 3:
            assert "train" in set(group["split"])
    with pytest.raises(ValueError, match="sum"):
        split_products(parts.products, fractions=(0.5, 0.5, 0.5))


def test_pairs_never_leak_products_across_splits(parts):
    paired = make_pairs(_data(parts), seed=2)
    pairs = paired.pairs
    image_product = dict(zip(paired.images["image_id"], paired.images["product_id"], strict=True))
    text_product = dict(zip(paired.texts["text_id"], paired.texts["product_id"], strict=True))
    products_by_split: dict[str, set] = {}
    for row in pairs.itertuples():
        products_by_split.setdefault(row.split, set()).add(image_product[row.image_id])
        if text_product[row.text_id] is not None and not pd.isna(text_product[row.text_id]):
            products_by_split[row.split].add(text_product[row.text_id])
    splits = list(products_by_split)
    for i, a in enumerate(splits):
        for b in splits[i + 1 :]:
            assert not products_by_split[a] & products_by_split[b], (a, b)


def test_negative_labels_and_kinds_are_correct(parts):
    paired = make_pairs(_data(parts), seed=2)
    pairs = paired.pairs
    image_product = dict(zip(paired.images["image_id"], paired.images["product_id"], strict=True))
    texts = paired.texts.set_index("text_id")
    category = dict(zip(parts.products["product_id"], parts.products["category"], strict=True))
    assert set(pairs["pair_kind"]) == {"positive", "random", "hard", "attribute"}
    for row in pairs.itertuples():
        text_product = texts.at[row.text_id, "product_id"]
        if row.pair_kind == "positive":
            assert row.label == 1 and text_product == image_product[row.image_id]
        else:
            assert row.label == 0
            assert text_product != image_product[row.image_id]
        if row.pair_kind == "hard":
            assert category[text_product] == category[image_product[row.image_id]]
    assert pairs["pair_id"].is_unique


def test_attribute_swaps_change_the_attribute_in_both_languages(parts):
    paired = make_pairs(_data(parts), seed=2)
    swaps = paired.pairs[paired.pairs["pair_kind"] == "attribute"]
    texts = paired.texts.set_index("text_id")
    attrs = parts.attributes.pivot(index="product_id", columns="name", values="value")
    image_product = dict(zip(paired.images["image_id"], paired.images["product_id"], strict=True))
    languages = set()
    for row in swaps.itertuples():
        text = texts.at[row.text_id, "text"]
        language = texts.at[row.text_id, "language"]
        languages.add(language)
        found = find_attributes(text, language)
        product = image_product[row.image_id]
        truth = attrs.loc[product].to_dict()
        truth["category"] = parts.products.set_index("product_id").at[product, "category"]
        attribute = row.swapped_attribute
        assert attribute in found
        assert found[attribute] != truth[attribute], (text, attribute)
    assert {"en", "zh"} <= languages


def test_make_pairs_is_deterministic(parts):
    a = make_pairs(_data(parts), seed=9).pairs
    b = make_pairs(_data(parts), seed=9).pairs
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(ValueError, match="Available"):
        make_pairs(_data(parts), negatives=("nonsense",))


def test_labelled_sources_keep_labels_and_splits(parts):
    data = _data(parts)
    image = data.images.iloc[0]
    text = data.texts.iloc[0]
    data.pairs = pd.DataFrame([
        {"pair_id": "a", "image_id": image.image_id, "text_id": text.text_id, "label": 0, "split": "val",
         "pair_kind": "labelled", "swapped_attribute": None},
        {"pair_id": "b", "image_id": image.image_id, "text_id": text.text_id, "label": 1, "split": None,
         "pair_kind": "labelled", "swapped_attribute": None},
    ])
    pairs = make_pairs(data, seed=0).pairs.set_index("pair_id")
    assert pairs.at["a", "split"] == "val" and pairs.at["a", "label"] == 0
    assert pairs.at["b", "split"] == split_products(parts.products, seed=0)[image.product_id]


def test_store_list_show_delete_roundtrip(db, parts):
    paired = make_pairs(_data(parts), seed=0)
    with store.connect(db) as con:
        summary = evalsets.store_eval_set(con, "cat", paired, seed=0, source="test", fmt="catalog")
        with pytest.raises(evalsets.EvalSetError, match="already exists"):
            evalsets.store_eval_set(con, "cat", paired, seed=0, source="test", fmt="catalog")
        loaded = evalsets.load_eval_set(con, "cat")
    assert summary["n_pairs"] == len(paired.pairs) == len(loaded.pairs)
    assert evalsets.content_hash(loaded) == summary["content_hash"]
    assert list(evalsets.list_eval_sets(db)["name"]) == ["cat"]
    info = evalsets.get_eval_set_info("cat", db)
    assert info["pairs_by_split"]["n"].sum() == len(paired.pairs)
    assert info["audit"] == summary["audit"] and info["audit"]["negatives"] == paired.audit["negatives"]
    assert info["audit"]["leakage"]["groups_across_splits"] == 0  # computed on store when the caller did not
    evalsets.delete_eval_set("cat", db)
    assert evalsets.list_eval_sets(db).empty
    with pytest.raises(evalsets.EvalSetError, match="not found"):
        evalsets.get_eval_set_info("cat", db)


def test_store_is_atomic_when_interrupted(db, parts, monkeypatch):
    paired = make_pairs(_data(parts), seed=0)
    real_insert = store.insert_frame

    def interrupted(con, table, frame):
        if table == "texts":  # products and images were written already inside the transaction
            raise KeyboardInterrupt
        real_insert(con, table, frame)

    monkeypatch.setattr(store, "insert_frame", interrupted)
    with store.connect(db) as con:
        with pytest.raises(KeyboardInterrupt):
            evalsets.store_eval_set(con, "cat", paired, seed=0, source="test", fmt="catalog")
        for table in ("eval_sets", "products", "images", "texts", "pairs"):
            assert con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, table


def test_demo_eval_set_is_created_once(db):
    name = evalsets.ensure_demo_eval_set(db=db, n_products=24, seed=0)
    info = evalsets.get_eval_set_info(name, db)
    first = info["content_hash"]
    assert info["audit"]["leakage"]["splits"] == "generated" and info["audit"]["leakage"]["groups_across_splits"] == 0
    assert evalsets.ensure_demo_eval_set(db=db, n_products=24, seed=0) == name
    assert len(evalsets.list_eval_sets(db)) == 1
    assert evalsets.get_eval_set_info(name, db)["content_hash"] == first
