"""Tags, saved views and selection exports on a real DuckDB file: bulk tagging is idempotent and validated, views
round-trip, the gallery filters by tag and by a view's products, exports hold every image and text, and deleting
the eval set removes its tags and views."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from workbench import store
from workbench.data.evalsets import create_catalog_eval_set, delete_eval_set, query_pairs
from workbench.data.tags import (
    SELECTION_COLUMNS,
    check_tag,
    delete_view,
    export_selection,
    get_view,
    list_tags,
    list_views,
    product_tags,
    save_view,
    selection_items,
    set_product_tags,
    tag_products,
    tagged_products,
    untag_products,
)


@pytest.fixture
def tags_db(tmp_path):
    path = tmp_path / "wb.duckdb"
    create_catalog_eval_set("tiny", db=path, n_products=8, seed=2)
    with store.connect(path) as con:
        products = [r[0] for r in con.execute("SELECT product_id FROM products WHERE eval_set = 'tiny' "
                                              "ORDER BY product_id").fetchall()]
    return path, products


def test_bulk_tagging_counts_only_new_tags_and_untagging_counts_removed(tags_db):
    db, products = tags_db
    assert tag_products("tiny", [products[0], products[1], products[1]], "blurry", db=db) == 2
    assert tag_products("tiny", products[:3], " blurry ", db=db) == 1  # stripped; two already had it
    assert tagged_products("tiny", "blurry", db=db) == products[:3]
    assert list_tags("tiny", db=db).to_dict("records") == [{"tag": "blurry", "n_products": 3}]
    assert untag_products("tiny", [products[0], products[5]], "blurry", db=db) == 1
    assert tagged_products("tiny", "blurry", db=db) == products[1:3]
    assert product_tags("tiny", [products[1], products[7]], db=db) == {products[1]: ["blurry"], products[7]: []}


def test_set_product_tags_replaces_the_products_tags_only(tags_db):
    db, products = tags_db
    tag_products("tiny", products[:2], "old", db=db)
    assert set_product_tags("tiny", products[0], ["new", "b", "new"], db=db) == ["b", "new"]
    assert product_tags("tiny", products[:2], db=db) == {products[0]: ["b", "new"], products[1]: ["old"]}
    assert set_product_tags("tiny", products[0], [], db=db) == []
    assert product_tags("tiny", [products[0]], db=db) == {products[0]: []}


@pytest.mark.parametrize("bad", ["", "   ", "a,b", "x" * 65, "bad\ttab", None])
def test_bad_tags_are_refused_with_the_value(bad):
    with pytest.raises(ValueError, match="tag"):
        check_tag(bad)


def test_unknown_products_eval_sets_and_empty_selections_are_clear_errors(tags_db):
    db, products = tags_db
    with pytest.raises(KeyError, match=r"1 product id\(s\) not in eval set 'tiny': \['nope'\]"):
        tag_products("tiny", [products[0], "nope"], "t", db=db)
    assert tagged_products("tiny", "t", db=db) == []  # nothing written when one id is bad
    with pytest.raises(KeyError, match="Eval set 'other' not found"):
        tag_products("other", products[:1], "t", db=db)
    with pytest.raises(ValueError, match="No products given"):
        tag_products("tiny", [], "t", db=db)


def test_gallery_filters_by_tag_and_by_a_views_products(tags_db):
    db, products = tags_db
    tag_products("tiny", [products[2]], "check", db=db)
    frame, total = query_pairs(db, "tiny", tag="check", limit=1000)
    assert total == len(frame) > 0 and set(frame["product_id"]) == {products[2]}
    _, everything = query_pairs(db, "tiny", limit=1000)
    assert everything > total
    frame, total = query_pairs(db, "tiny", products=products[:2], label=1, limit=1000)
    assert set(frame["product_id"]) == set(products[:2]) and (frame["label"] == 1).all()
    assert query_pairs(db, "tiny", tag="nobody-has-it")[1] == 0


def test_views_round_trip_refuse_duplicates_and_delete(tags_db):
    db, products = tags_db
    view = save_view("tiny", "blurry test", filters={"split": "test", "tag": "blurry", "search": "", "label": None},
                     db=db)
    assert view.filters == {"split": "test", "tag": "blurry"} and view.products is None
    picked = save_view("tiny", "picked", products=[products[3], products[1]], db=db)
    assert picked.products == (products[1], products[3])
    assert get_view("tiny", "picked", db=db).products == (products[1], products[3])
    assert get_view("tiny", "blurry test", db=db).filters == {"split": "test", "tag": "blurry"}
    listed = list_views("tiny", db=db)
    assert listed["name"].tolist() == ["blurry test", "picked"]
    assert listed["n_products"].tolist()[1] == 2 and listed["filters"].tolist()[0] == "split=test, tag=blurry"
    with pytest.raises(ValueError, match="already exists"):
        save_view("tiny", "picked", products=products[:1], db=db)
    assert save_view("tiny", "picked", products=products[:1], replace=True, db=db).products == (products[0],)
    delete_view("tiny", "picked", db=db)
    with pytest.raises(KeyError, match="No view named 'picked'"):
        get_view("tiny", "picked", db=db)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"filters": {"colour": "red"}}, "Unknown view filter"),
    ({"filters": {"split": ["a"]}}, "text, whole numbers or None"),
    ({}, "needs a filter or a selection"),
])
def test_bad_views_are_refused(tags_db, kwargs, message):
    db, _ = tags_db
    with pytest.raises(ValueError, match=message):
        save_view("tiny", "v", db=db, **kwargs)


def test_selection_export_has_every_image_and_text_with_tags_in_csv_and_parquet(tags_db):
    db, products = tags_db
    tag_products("tiny", [products[0]], "b", db=db)
    tag_products("tiny", [products[0]], "a", db=db)
    items = selection_items("tiny", [products[1], products[0]], db=db)
    assert list(items.columns) == list(SELECTION_COLUMNS)
    with store.connect(db) as con:
        expected = con.execute("SELECT (SELECT count(*) FROM images WHERE list_contains(?, product_id) AND "
                               "eval_set = 'tiny') + (SELECT count(*) FROM texts WHERE list_contains(?, product_id) "
                               "AND eval_set = 'tiny')", [products[:2], products[:2]]).fetchone()[0]
    assert len(items) == expected and set(items["modality"]) == {"image", "text"}
    assert set(items.loc[items["product_id"] == products[0], "tags"]) == {"a,b"}
    assert set(items.loc[items["product_id"] == products[1], "tags"]) == {""}
    assert items["image_path"].notna().eq(items["modality"] == "image").all()
    from_csv = pd.read_csv(io.BytesIO(export_selection(items, "csv")), keep_default_na=False)
    assert from_csv["item_id"].tolist() == items["item_id"].tolist()
    from_parquet = pd.read_parquet(io.BytesIO(export_selection(items, "parquet")))
    pd.testing.assert_frame_equal(from_parquet, items)
    with pytest.raises(ValueError, match=r"format='xlsx' is not supported; allowed: \['csv', 'parquet'\]"):
        export_selection(items, "xlsx")


def test_deleting_the_eval_set_deletes_its_tags_and_views(tags_db):
    db, products = tags_db
    tag_products("tiny", products[:2], "t", db=db)
    save_view("tiny", "v", products=products[:2], db=db)
    delete_eval_set("tiny", db)
    with store.connect(db) as con:
        assert con.execute("SELECT count(*) FROM item_tags").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM saved_views").fetchone()[0] == 0


def test_view_products_follow_the_filter_within_the_selection(tags_db):
    from workbench.data.tags import filter_products, view_products

    db, products = tags_db
    tag_products("tiny", products[1:4], "t", db=db)
    assert filter_products("tiny", {"tag": "t"}, db=db) == products[1:4]
    save_view("tiny", "tagged", filters={"tag": "t"}, db=db)
    save_view("tiny", "some", products=products[:3], db=db)
    assert view_products("tiny", "tagged", db=db) == products[1:4]
    tag_products("tiny", [products[6]], "t", db=db)  # a filter view follows the data
    assert view_products("tiny", "tagged", db=db) == [*products[1:4], products[6]]
    assert view_products("tiny", "some", db=db) == products[:3]


def test_cli_tags_add_list_export_and_remove(tags_db, tmp_path, capsys):
    import json

    from workbench.cli import main

    db, products = tags_db
    base = ["--db", str(db), "tags"]
    assert main([*base, "add", "tiny", "--tag", "odd", "--product", products[0], "--product", products[2]]) == 0
    assert "tagged 2 of 2 product(s)" in capsys.readouterr().out
    assert main([*base, "list", "tiny", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"tags": [{"tag": "odd", "n_products": 2}], "views": []}
    out = tmp_path / "odd.parquet"
    assert main([*base, "export", "tiny", "--tag", "odd", "--out", str(out)]) == 0
    assert set(pd.read_parquet(out)["product_id"]) == {products[0], products[2]}
    save_view("tiny", "first", products=[products[0]], db=db)
    csv = tmp_path / "first.csv"
    assert main([*base, "export", "tiny", "--view", "first", "--out", str(csv)]) == 0
    assert set(pd.read_csv(csv)["product_id"]) == {products[0]}
    assert main([*base, "export", "tiny", "--tag", "odd", "--out", str(tmp_path / "x.xlsx")]) == 2
    assert "format='xlsx' is not supported" in capsys.readouterr().err
    assert main([*base, "add", "tiny", "--tag", "odd"]) == 2
    assert main([*base, "remove", "tiny", "--tag", "odd", "--product", products[0]]) == 0
    assert tagged_products("tiny", "odd", db=db) == [products[2]]
