"""AppTests of the detail view, the tag filters and the selection actions: opened from a Mismatches card and from
the Eval sets gallery, side-by-side run decisions, marking from the dialog, tag edits, bulk tagging from a filter,
saved views reopened, and the lasso table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from streamlit.testing.v1 import AppTest

from workbench.data.tags import get_view, product_tags, tag_products, tagged_products
from workbench.evaluation.label_errors import list_label_errors
from workbench.evaluation.mismatches import mismatches

ROOT = Path(__file__).resolve().parents[2]
MISMATCHES = ROOT / "pages" / "6_Mismatches.py"
EVAL_SETS = ROOT / "pages" / "1_Eval_sets.py"


def _mismatches_page(app_env) -> AppTest:
    at = AppTest.from_file(str(MISMATCHES), default_timeout=120).run()
    at.selectbox(key="mismatch_run").set_value(app_env.kwc_run).run()
    at.radio(key="mismatch_kind").set_value("hardest_negative").run()
    assert not at.exception
    return at


def test_detail_view_from_a_mismatch_card_shows_runs_side_by_side_marks_and_tags(app_env):
    at = _mismatches_page(app_env)
    first = mismatches(app_env.kwc_run, db=app_env.path, kind="hardest_negative", limit=1).iloc[0]
    assert not [m for m in at.markdown if m.value.startswith("**Product ")]  # closed until asked
    at.button(key=f"mismatch_detail_{first['pair_id']}").click().run()
    assert not at.exception
    assert at.session_state["detail_item"] == [app_env.eval_set, first["image_product"]]
    assert any(m.value.startswith(f"**Product {first['image_product']}**") for m in at.markdown)

    at.multiselect(key="detail_runs").set_value([app_env.kwc_run, app_env.kw_run]).run()
    table = next(d.value for d in at.dataframe if "pair" in d.value.columns and "swap" in d.value.columns)
    runs = at.session_state["detail_runs"]
    assert runs == [app_env.kwc_run, app_env.kw_run]
    decisions = [c for c in table.columns if c.endswith(" · decision")]
    assert len(decisions) == 2 and len([c for c in table.columns if c.endswith(" · p(match)")]) == 2
    row = table.set_index("pair").loc[first["pair_id"]]
    assert row["label"] == "non-match" and row["kind"] == first["pair_kind"]
    score_column = next(c for c in table.columns if c.endswith(" · score") and "kwc" in c)
    assert abs(row[score_column] - first["score"]) < 1e-9
    swaps = table[table["kind"] == "attribute"]
    assert (swaps["swap"].str.contains("→")).all() and (table.loc[table["kind"] != "attribute", "swap"] == "").all()

    at.selectbox(key="detail_pair").set_value(first["pair_id"]).run()
    at.button(key="detail_mark").click().run()
    assert not at.exception
    assert list_label_errors(app_env.eval_set, db=app_env.path)["pair_id"].tolist() == [first["pair_id"]]
    assert at.button(key="detail_unmark")

    tags_key = f"detail_tags_{app_env.eval_set}_{first['image_product']}"
    at.multiselect(key=tags_key).set_value(["needs review"]).run()
    assert not at.exception
    assert product_tags(app_env.eval_set, [first["image_product"]], db=app_env.path) == {
        first["image_product"]: ["needs review"]}
    at.toggle(key="detail_similar").set_value(True).run()  # nearest products in the chosen run's joint space
    assert not at.exception
    assert any(c.value.startswith("Nearest to image ") for c in at.caption)
    assert [b for b in at.button if (b.key or "").startswith("detail_open_")]
    at.button(key="detail_close").click().run()
    assert at.session_state["detail_item"] is None
    assert not [m for m in at.markdown if m.value.startswith("**Product ")]


def test_mismatches_filter_by_tag_and_bulk_tag_every_filtered_pair(app_env):
    every = mismatches(app_env.kwc_run, db=app_env.path, kind="hardest_negative", limit=10_000)
    chosen = sorted(set(every["image_product"]))[:2]
    tag_products(app_env.eval_set, chosen, "suspect", db=app_env.path)
    at = _mismatches_page(app_env)
    at.selectbox(key="mismatch_tag").set_value("suspect").run()
    assert not at.exception
    shown = {b.key.removeprefix("mismatch_detail_") for b in at.button if (b.key or "").startswith("mismatch_detail_")}
    expected = every.loc[every["image_product"].isin(chosen), "pair_id"].head(12)
    assert shown == set(expected)

    at.selectbox(key="mismatch_tag").set_value(None).run()
    at.selectbox(key="mismatch_pair_kind").set_value("attribute").run()
    at.text_input(key="mismatch_selection_tag").input("swap-hard").run()
    at.button(key="mismatch_selection_tag_add").click().run()
    assert not at.exception
    attribute = every.loc[every["pair_kind"] == "attribute", "image_product"]
    assert tagged_products(app_env.eval_set, "swap-hard", db=app_env.path) == sorted(set(attribute))
    assert any(f"added to {attribute.nunique()} product(s)" in i.value for i in at.info)

    at.text_input(key="mismatch_selection_tag").input("a,b").run()
    at.button(key="mismatch_selection_tag_add").click().run()
    assert any("must not contain a comma" in e.value for e in at.error)  # shown, not a traceback


def test_gallery_tag_filter_saved_view_and_detail_button(app_env):
    db, name = app_env.path, app_env.eval_set
    at = AppTest.from_file(str(EVAL_SETS), default_timeout=120).run()
    assert not at.exception
    at.selectbox(key="evalsets_f_label").set_value("match").run()
    at.selectbox(key="evalsets_f_split").set_value("test").run()
    at.text_input(key="evalsets_selection_tag").input("test-match").run()
    at.button(key="evalsets_selection_tag_add").click().run()
    assert not at.exception
    from workbench.data.evalsets import query_pairs

    frame, total = query_pairs(db, name, split="test", label=1, limit=10_000)
    assert tagged_products(name, "test-match", db=db) == sorted(set(frame["product_id"]))

    at.text_input(key="evalsets_selection_view_name").input("test matches").run()
    at.button(key="evalsets_selection_view_save").click().run()
    assert not at.exception
    assert get_view(name, "test matches", db=db).filters == {"split": "test", "label": 1}

    at.selectbox(key="evalsets_f_label").set_value("all").run()
    at.selectbox(key="evalsets_f_split").set_value("all").run()
    at.selectbox(key="evalsets_f_view").set_value("test matches").run()
    assert not at.exception
    assert at.selectbox(key="evalsets_f_split").value == "test" and at.selectbox(key="evalsets_f_label").value == \
        "match"
    assert any(c.value.startswith(f"{total:,} pairs match") for c in at.caption)

    at.selectbox(key="evalsets_f_view").set_value(None).run()
    at.selectbox(key="evalsets_f_tag").set_value("test-match").run()
    at.selectbox(key="evalsets_f_label").set_value("all").run()
    at.selectbox(key="evalsets_f_split").set_value("all").run()
    tagged_pairs = query_pairs(db, name, tag="test-match", limit=10_000)[1]
    assert any(c.value.startswith(f"{tagged_pairs:,} pairs match") for c in at.caption)
    detail = next(b for b in at.button if (b.key or "").startswith("evalsets_detail_"))
    detail.click().run()
    assert not at.exception
    product = at.session_state["detail_item"][1]
    assert product in tagged_products(name, "test-match", db=db)
    assert any(m.value.startswith(f"**Product {product}**") for m in at.markdown)


def test_lasso_points_table_has_thumbnails_for_images_and_texts_for_texts(app_env):
    from workbench.data.evalsets import query_pairs
    from workbench.ui.selection import points_table

    pairs = query_pairs(app_env.path, app_env.eval_set, label=1, limit=1)[0].iloc[0]
    points = pd.DataFrame({"item_id": ["i1", "t1"], "modality": ["image", "text"], "product_id": ["p", "p"],
                           "category": ["c", "c"], "label_text": [None, "a red lamp"],
                           "image_path": [pairs["path"], None]})
    table = points_table(points)
    assert table["thumbnail"].iloc[0].startswith("data:image/jpeg;base64,") and pd.isna(table["thumbnail"].iloc[1])
    assert table["text"].tolist()[1] == "a red lamp" and table["text"].isna().tolist()[0]
