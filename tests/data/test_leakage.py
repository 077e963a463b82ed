"""Leakage control at content level: group-aware splits, user-split checks, near-duplicates, reproducible ids."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from workbench import store
from workbench.cli import main
from workbench.data import evalsets
from workbench.data.grouping import content_groups
from workbench.data.leakage import (
    NEAR_DUPLICATE_MAX_DISTANCE,
    check_split_leakage,
    leakage_issues,
    leaking_pairs,
    near_duplicate_images,
)
from workbench.data.model import EvalSetData
from workbench.data.splits import split_products


def _write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


def _blocks(path: Path, *, seed: int, side: int = 96, fmt: str | None = None, quality: int = 90) -> Path:
    """A picture of 8×8 random colour blocks (smooth enough for a perceptual hash to survive re-encoding)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    image = Image.fromarray(small, "RGB").resize((side, side), Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt, **({"quality": quality} if (fmt or path.suffix[1:]).upper() in ("JPEG", "JPG")
                                    else {}))
    return path


# --- generated splits keep content groups whole --------------------------------------------------------------


def _duplicated_catalogue(n: int = 60) -> EvalSetData:
    """``n`` products in 3 categories; products 2k and 2k+1 share image bytes (k even) or a title (k odd)."""
    products = pd.DataFrame({"product_id": [f"p{i:03d}" for i in range(n)],
                             "category": [("mug", "lamp", "shirt")[i % 3] for i in range(n)]})
    images, texts = [], []
    for i in range(n):
        pair = i // 2
        sha = f"shared-{pair}" if pair % 2 == 0 else f"own-{i}"
        title = f"Title {pair}" if pair % 2 == 1 else f"title of product {i}"
        images.append((f"i{i:03d}", f"p{i:03d}", f"/x/{i}.png", sha, 10, 10))
        texts.append((f"t{i:03d}", f"p{i:03d}", title.upper() if i % 4 == 3 else title, "en", f"h{i}"))
    return EvalSetData(
        products,
        images=pd.DataFrame(images, columns=["image_id", "product_id", "path", "sha256", "width", "height"]),
        texts=pd.DataFrame(texts, columns=["text_id", "product_id", "text", "language", "sha256"]),
    )


def _groups_spanning(assignment: dict[str, str], groups: dict[str, str]) -> int:
    frame = pd.DataFrame({"group": pd.Series(groups), "split": pd.Series(assignment)})
    return int((frame.groupby("group")["split"].nunique() > 1).sum())


def test_content_groups_join_shared_bytes_and_normalised_titles():
    groups = content_groups(_duplicated_catalogue(8))
    assert groups == {"p000": "p000", "p001": "p000", "p002": "p002", "p003": "p002",
                      "p004": "p004", "p005": "p004", "p006": "p006", "p007": "p006"}


def test_split_products_keeps_groups_whole_for_every_seed():
    data = _duplicated_catalogue()
    groups = content_groups(data)
    spans_without = [_groups_spanning(split_products(data.products, seed=s), groups) for s in range(10)]
    assert max(spans_without) > 0  # product-level splits do separate duplicates: the check below can fail
    for seed in range(10):
        assignment = split_products(data.products, seed=seed, groups=groups)
        assert set(assignment) == set(data.products["product_id"])
        assert _groups_spanning(assignment, groups) == 0
        counts = pd.Series(assignment).value_counts()
        assert set(counts.index) == {"train", "val", "test"}
        assert abs(counts["train"] - 36) <= 2  # 60% of 60 products, whole groups of two


def test_split_products_with_groups_is_deterministic_and_order_free():
    data = _duplicated_catalogue()
    groups = content_groups(data)
    shuffled = data.products.sample(frac=1.0, random_state=4).reset_index(drop=True)
    first = split_products(data.products, seed=3, groups=groups)
    assert split_products(shuffled, seed=3, groups=dict(reversed(list(groups.items())))) == first
    assert split_products(data.products, seed=4, groups=groups) != first
    singletons = {p: p for p in data.products["product_id"]}
    assert split_products(data.products, seed=3, groups=singletons) == split_products(data.products, seed=3)
    with pytest.raises(ValueError, match="no entry for 1 product"):
        split_products(data.products, groups={p: p for p in list(singletons)[1:]})


def test_split_products_stratifies_groups_by_category():
    products = pd.DataFrame({"product_id": [f"p{i:03d}" for i in range(90)],
                             "category": ["mug"] * 30 + ["lamp"] * 30 + ["shirt"] * 30})
    groups = {p: f"g{int(p[1:]) // 2}" for p in products["product_id"]}  # pairs within one category
    assignment = split_products(products, seed=0, groups=groups)
    frame = products.assign(split=products["product_id"].map(assignment))
    for _, group in frame.groupby("category"):
        counts = group["split"].value_counts()
        assert 14 <= counts.get("train", 0) <= 22 and counts.get("test", 0) >= 4


def _duplicate_source(root: Path) -> Path:
    """An unlabelled catalogue: reseller copies (same bytes, other ids) and shared titles across products."""
    rows = [["image", "title", "product_id", "category", "color"]]
    for i in range(24):
        category = ("mug", "lamp", "shirt")[i % 3]
        color = ("red", "blue", "green", "black")[i % 4]
        _blocks(root / "img" / f"{i}.png", seed=i)
        rows.append([f"img/{i}.png", f"{color} {category} model {i}", f"p{i:02d}", category, color])
        if i % 3 == 0:  # the same photo under a reseller's product id
            shutil.copy(root / "img" / f"{i}.png", root / "img" / f"{i}-copy.png")
            rows.append([f"img/{i}-copy.png", f"reseller {category} {i}", f"r{i:02d}", category, color])
        if i % 4 == 1:  # the same title under another product
            _blocks(root / "img" / f"{i}-other.png", seed=100 + i)
            rows.append([f"img/{i}-other.png", f"{color.upper()}  {category} model {i}", f"s{i:02d}", category,
                         color])
    rows.append(["img/0.png", "红色 马克杯", "p00", "mug", "red"])
    return _write_csv(root / "items.csv", rows)


def test_generated_splits_leave_no_content_group_across_splits(tmp_path, db):
    source = _duplicate_source(tmp_path / "shop")
    outcome = evalsets.import_eval_set(source, "shop", db=db, seed=1)
    assert outcome.imported and outcome.report.empty
    leakage = outcome.summary["audit"]["leakage"]
    assert leakage["splits"] == "generated"
    assert leakage["shared_images"] == 8 and leakage["shared_titles"] == 6
    assert leakage["shared_groups"] == 12  # products 9 and 21 have both a reseller copy and a shared title
    assert leakage["groups_across_splits"] == 0
    assert leakage["across_splits"] == {"product": 0, "image": 0, "title": 0} and leakage["overlaps"] == []
    with store.connect(db) as con:
        loaded = evalsets.load_eval_set(con, "shop")
    assert check_split_leakage(loaded)["groups_across_splits"] == 0
    assert evalsets.get_eval_set_info("shop", db)["audit"]["leakage"] == leakage
    assert evalsets.leakage_warning("shop", db) is None


# --- user-supplied splits -------------------------------------------------------------------------------------


def _leaky_labelled_source(root: Path) -> Path:
    for name, seed in (("a", 1), ("b", 2), ("c", 3), ("d", 4), ("f", 6), ("g", 7), ("h", 8), ("k", 9)):
        _blocks(root / f"{name}.png", seed=seed)
    shutil.copy(root / "d.png", root / "e.png")  # byte-identical photo under another product
    return _write_csv(root / "pairs.csv", [
        ["image", "text", "product", "label", "split"],
        ["a.png", "Red mug", "p1", "1", "train"],          # 1  product p1 also in test (row 4)
        ["a.png", "Blue shirt", "p1", "0", "train"],       # 2  a negative's text is no title
        ["b.png", "Blue shirt", "p2", "1", "test"],        # 3  clean
        ["c.png", "Red mug large", "p1", "1", "test"],     # 4  product p1
        ["d.png", "Green lamp", "p3", "1", "train"],       # 5  same bytes as row 6
        ["e.png", "Desk lamp", "p4", "1", "val"],          # 6
        ["f.png", "Yellow chair", "p5", "1", "train"],     # 7  same normalised title as row 8
        ["g.png", "yellow  CHAIR", "p6", "1", "test"],     # 8
        ["h.png", "Black pen", "p7", "1", "val"],          # 9  clean
        ["k.png", "White pen", "p8", "1", "val"],          # 10 clean
    ])


def test_strict_import_rejects_user_split_leakage_naming_the_rows(tmp_path, db):
    source = _leaky_labelled_source(tmp_path)
    outcome = evalsets.import_eval_set(source, "leaky", db=db)
    assert not outcome.imported and outcome.name is None
    leaks = outcome.report[outcome.report["code"] == "split_leakage"]
    assert set(leaks["severity"]) == {"error"} and set(leaks["field"]) == {"split"}
    assert sorted(leaks["row"]) == [1, 2, 4, 5, 6, 7, 8] and outcome.n_bad_rows == 7
    message = dict(zip(leaks["row"], leaks["message"], strict=True))
    assert "product 'p1' is also in train: rows 1, 2" in message[4]
    assert "product 'p1' is also in test: row 4" in message[1]
    assert "image bytes (SHA-256)" in message[5] and "val: row 6" in message[5]
    assert "normalised title 'yellow chair' is also in test: row 8" in message[7]
    assert evalsets.list_eval_sets(db).empty


def test_lenient_import_keeps_leaky_rows_with_warnings_and_stores_the_leakage(tmp_path, db, capsys):
    source = _leaky_labelled_source(tmp_path)
    outcome = evalsets.import_eval_set(source, "leaky", db=db, strict=False)
    assert outcome.imported and outcome.n_bad_rows == 0
    leaks = outcome.report[outcome.report["code"] == "split_leakage"]
    assert set(leaks["severity"]) == {"warning"} and sorted(leaks["row"]) == [1, 2, 4, 5, 6, 7, 8]
    leakage = evalsets.get_eval_set_info("leaky", db)["audit"]["leakage"]
    assert leakage["splits"] == "supplied"
    assert leakage["content_groups"] == 6 and leakage["shared_groups"] == 2
    assert leakage["shared_images"] == 1 and leakage["shared_titles"] == 1
    assert leakage["groups_across_splits"] == 3
    assert leakage["across_splits"] == {"product": 1, "image": 1, "title": 1}
    assert [o["kind"] for o in leakage["overlaps"]] == ["product", "image", "title"]
    assert (leakage["overlaps"][0]["key"], leakage["overlaps"][2]["key"]) == ("p1", "yellow chair")
    assert leakage["overlaps"][0]["n_pairs"] == {"train": 2, "test": 1}
    warning = evalsets.leakage_warning("leaky", db)
    assert warning is not None and "3 content group(s)" in warning and "1 product, 1 image, 1 title" in warning
    assert main(["--db", str(db), "evalset", "show", "leaky"]) == 0
    out = capsys.readouterr().out
    assert "leakage (supplied splits): 6 content groups, 2 of several products" in out
    assert "3 groups across splits" in out and "WARNING: Eval set 'leaky'" in out
    assert "product 'p1': train 2, test 1 pairs" in out


def test_clean_user_splits_import_without_leakage(tmp_path, db):
    for name, seed in (("a", 1), ("b", 2), ("c", 3)):
        _blocks(tmp_path / f"{name}.png", seed=seed)
    source = _write_csv(tmp_path / "pairs.csv", [
        ["image", "text", "product", "label", "split"],
        ["a.png", "Red mug", "p1", "1", "train"], ["a.png", "Blue vase", "p1", "0", "train"],
        ["b.png", "Blue vase", "p2", "1", "val"], ["c.png", "Green lamp", "p3", "1", "test"],
    ])
    outcome = evalsets.import_eval_set(source, "clean", db=db)
    assert outcome.imported and outcome.report.empty
    assert outcome.summary["audit"]["leakage"]["groups_across_splits"] == 0
    assert evalsets.leakage_warning("clean", db) is None


def test_leakage_issues_merge_kinds_per_row():
    data = EvalSetData(
        pd.DataFrame({"product_id": ["p1", "p2"], "category": ["mug", "mug"]}),
        images=pd.DataFrame({"image_id": ["i1", "i2"], "product_id": ["p1", "p2"], "path": ["x", "y"],
                             "sha256": ["same", "same"], "width": [1, 1], "height": [1, 1]}),
        texts=pd.DataFrame({"text_id": ["t1", "t2"], "product_id": ["p1", "p2"], "text": ["Mug", "mug "],
                            "language": ["en", "en"], "sha256": ["a", "b"]}),
        pairs=pd.DataFrame({"pair_id": ["x1", "x2"], "image_id": ["i1", "i2"], "text_id": ["t1", "t2"],
                            "label": [1, 1], "split": ["train", "test"], "pair_kind": ["labelled"] * 2,
                            "swapped_attribute": [None, None]}),
    )
    leaks = leaking_pairs(data)
    assert sorted(set(zip(leaks["kind"], leaks["key"], strict=True))) == [("image", "same"), ("title", "mug")]
    issues = leakage_issues(leaks, {"x1": 3, "x2": 9}, severity="warning")
    assert [(i.row, i.severity) for i in issues] == [(3, "warning"), (9, "warning")]
    assert "image bytes (SHA-256) 'same' is also in test: row 9; normalised title 'mug'" in issues[0].message
    with pytest.raises(ValueError, match="no split"):
        leaking_pairs(EvalSetData(data.products, images=data.images, texts=data.texts,
                                  pairs=data.pairs.assign(split=[None, "test"])))


# --- near-duplicates (reported, not merged) ------------------------------------------------------------------


def test_near_duplicate_images_are_reported_with_their_threshold(tmp_path):
    a = _blocks(tmp_path / "a.png", seed=1)
    _blocks(tmp_path / "a.jpg", seed=1, fmt="JPEG", quality=80)       # re-encoded: other bytes
    _blocks(tmp_path / "a-small.png", seed=1, side=80)                 # resized
    _blocks(tmp_path / "b.png", seed=2)                                # another photo
    shutil.copy(a, tmp_path / "a0.png")                                # byte-identical: a content group already
    names = ["a0.png", "a.jpg", "a-small.png", "b.png", "a.png"]
    splits = ["train", "test", "train", "test", "train"]
    images = pd.DataFrame({"image_id": names, "product_id": [f"p{i}" for i in range(5)],
                           "path": [str(tmp_path / n) for n in names],
                           "sha256": [hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in names],
                           "width": 1, "height": 1})
    pairs = pd.DataFrame({"pair_id": names, "image_id": names, "text_id": names, "label": 1, "split": splits,
                          "pair_kind": "positive", "swapped_attribute": None})
    data = EvalSetData(pd.DataFrame({"product_id": [f"p{i}" for i in range(5)], "category": "x"}),
                       images=images, pairs=pairs)
    report = near_duplicate_images(data)
    assert f"<= {NEAR_DUPLICATE_MAX_DISTANCE}" in report["method"] and "not merged" in report["method"]
    assert report["n_images"] == 4 and report["n_unreadable"] == 0
    found = {frozenset(p["images"]) for p in report["examples"]}
    assert report["pairs"] == 3
    assert found == {frozenset(pair) for pair in (("a.png", "a.jpg"), ("a.png", "a-small.png"),
                                                  ("a.jpg", "a-small.png"))}  # the smallest id of equal bytes
    assert report["across_splits"] == 2  # a.jpg (test) with a.png and a-small.png (train)
    assert near_duplicate_images(data, max_distance=0)["pairs"] <= report["pairs"]
    with pytest.raises(ValueError, match="between 0 and 64"):
        near_duplicate_images(data, max_distance=65)


def test_cli_import_with_near_duplicates_stores_the_report(tmp_path, capsys):
    root = tmp_path / "shop"
    _blocks(root / "a.png", seed=1)
    _blocks(root / "a.jpg", seed=1, fmt="JPEG", quality=85)
    _blocks(root / "b.png", seed=2)
    source = _write_csv(root / "items.csv", [["image", "title", "product_id"], ["a.png", "red mug", "p1"],
                                             ["a.jpg", "red mug, reseller", "p2"], ["b.png", "blue lamp", "p3"]])
    db = str(tmp_path / "wb.duckdb")
    assert main(["--db", db, "evalset", "import", str(source), "--name", "s", "--near-duplicates"]) == 0
    near = evalsets.get_eval_set_info("s", db)["audit"]["leakage"]["near_duplicates"]
    assert near["pairs"] == 1 and sorted(near["examples"][0]["products"]) == ["p1", "p2"]
    capsys.readouterr()
    assert main(["--db", db, "evalset", "show", "s"]) == 0
    assert "near-duplicate images (pHash" in capsys.readouterr().out


# --- reproducible wherever the files live --------------------------------------------------------------------


def _tables(db: Path, name: str) -> dict[str, pd.DataFrame]:
    with store.connect(db) as con:
        data = evalsets.load_eval_set(con, name)
    return {"products": data.products, "attributes": data.attributes, "images": data.images.drop(columns="path"),
            "texts": data.texts, "pairs": data.pairs}


def test_same_files_in_two_folders_give_identical_eval_sets(tmp_path, db):
    first = tmp_path / "one" / "shop"
    _duplicate_source(first)
    second = tmp_path / "elsewhere" / "deeper" / "shop"
    shutil.copytree(first, second)
    a = evalsets.import_eval_set(first / "items.csv", "a", db=db, seed=5)
    b = evalsets.import_eval_set(second / "items.csv", "b", db=db, seed=5)
    assert a.summary["content_hash"] == b.summary["content_hash"]
    assert a.summary["audit"] == b.summary["audit"]
    one, two = _tables(db, "a"), _tables(db, "b")
    for table in one:
        pd.testing.assert_frame_equal(one[table], two[table], obj=table)
    assert set(one["pairs"]["pair_kind"]) >= {"positive", "random", "hard"} and len(one["pairs"]) > 60
    with store.connect(db) as con:
        paths = [r[0] for r in con.execute("SELECT path FROM images WHERE eval_set = 'b'").fetchall()]
    assert all(str(second) in p for p in paths)


# --- audit storage ---------------------------------------------------------------------------------------------


def test_audit_lines_show_negatives_and_leakage():
    audit = {"negatives": {"by_kind": {"random": 10, "hard": 9, "attribute": 4},
                           "swaps_by_attribute": {"color": 3, "category": 1},
                           "discarded": {"equals_positive": 2, "no_change": 1}},
             "leakage": {"splits": "generated", "content_groups": 5, "shared_groups": 1, "shared_images": 1,
                         "shared_titles": 0, "groups_across_splits": 0,
                         "across_splits": {"product": 0, "image": 0, "title": 0}, "overlaps": []}}
    lines = evalsets.audit_lines("x", audit)
    assert lines[:3] == ["negatives by kind: random 10, hard 9, attribute 4",
                         "swaps by attribute: color 3, category 1",
                         "discarded candidates: equals_positive 2, no_change 1"]
    assert lines[3].startswith("leakage (generated splits): 5 content groups, 1 of several products")
    assert not any(line.startswith("WARNING") for line in lines)
    assert "predates" in evalsets.audit_lines("x", {})[0]


def test_eval_sets_from_before_the_audit_migrate_with_an_empty_audit(tmp_path):
    path = tmp_path / "old.duckdb"
    import duckdb

    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for version in (1, 2):
        con.execute(store.MIGRATIONS[version - 1])
        con.execute("INSERT INTO schema_version VALUES (?)", [version])
    con.execute("INSERT INTO eval_sets VALUES ('old', now(), 's', 'csv', 'h', 0, '{}', 1, 1, 1, 1)")
    con.close()
    info = evalsets.get_eval_set_info("old", path)
    assert info["audit"] == {} and evalsets.leakage_warning("old", path) is None
    with store.connect(path) as con:
        assert store.schema_version(con) == store.SCHEMA_VERSION
        columns = {r[0] for r in con.execute("DESCRIBE eval_sets").fetchall()}
    assert "audit" in columns


# --- the warning reaches Compare and the reports -------------------------------------------------------------


@pytest.mark.slow
def test_compare_page_and_reports_warn_about_a_leaky_eval_set(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from workbench.config import config_from_dict
    from workbench.reports import build_report_data, render_report
    from workbench.run import runner

    db = tmp_path / "wb.duckdb"
    evalsets.create_catalog_eval_set("shop", db=db, n_products=24, seed=0)
    assert evalsets.leakage_warning("shop", db) is None
    leakage = {**evalsets.get_eval_set_info("shop", db)["audit"]["leakage"], "splits": "supplied",
               "groups_across_splits": 2, "across_splits": {"product": 2, "image": 0, "title": 1}}
    with store.connect(db) as con:  # what a lenient import of leaky user splits stores
        con.execute("UPDATE eval_sets SET audit = ? WHERE name = 'shop'", [json.dumps({"leakage": leakage})])
    warning = evalsets.leakage_warning("shop", db)
    assert warning is not None and "2 content group(s)" in warning and "2 products, 1 title" in warning
    config = config_from_dict({"name": "kw", "image_encoder": {"type": "keyword_image"},
                               "text_encoder": {"type": "keyword_text"}, "fusion": {"type": "cosine"}})
    run_id = runner.run(config, "shop", db=db, device="cpu")
    data = build_report_data([run_id], db=db, projection=None)
    assert data.eval_sets["shop"]["leakage_warning"] == warning
    html_text = render_report(data, "html").content.decode("utf-8")
    assert '<p class="warning" role="alert">' in html_text and "2 content group(s)" in html_text
    markdown = render_report(data, "md").content.decode("utf-8")
    assert "> **Warning:** Eval set" in markdown and "content leakage" in markdown

    monkeypatch.setenv("WORKBENCH_DB", str(db))
    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)
    at = AppTest.from_file(str(root / "pages" / "4_Compare.py"), default_timeout=90).run()
    assert not at.exception
    assert any("content leakage" in w.value and "shop" in w.value for w in at.warning)
