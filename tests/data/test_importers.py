from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from workbench.data import importers
from workbench.data.images import ImageCache
from workbench.data.importers import FIELDS, ImportResult, guess_mapping, read_source
from workbench.data.model import IMAGE_COLUMNS, PAIR_COLUMNS, PRODUCT_COLUMNS, TEXT_COLUMNS

if TYPE_CHECKING:
    from tests.data.conftest import LocalServer, MakeImage


def _write_csv(path: Path, rows: list[list[str]], *, sep: str = ",", encoding: str = "utf-8") -> Path:
    with path.open("w", encoding=encoding, newline="") as fh:
        csv.writer(fh, delimiter=sep).writerows(rows)
    return path


def _codes(result: ImportResult) -> dict[int, set[str]]:
    codes: dict[int, set[str]] = {}
    for issue in result.report.issues:
        codes.setdefault(issue.row, set()).add(issue.code)
    return codes


def _image_id(path: Path, root: Path) -> str:
    """Image ids hash the path relative to the image root, so they do not depend on where the files live."""
    return hashlib.sha256(path.resolve().relative_to(root.resolve()).as_posix().encode()).hexdigest()[:16]


# --- mapping ---------------------------------------------------------------------------------------------


def test_guess_mapping_synonyms() -> None:
    columns = [
        "img",
        "Title",
        "SKU",
        "Category",
        "is_match",
        "Split",
        "lang",
        "colour",
        "attr_pattern",
        "pair_id",
    ]
    assert guess_mapping(columns) == {
        "image": "img",
        "text": "Title",
        "product": "SKU",
        "category": "Category",
        "label": "is_match",
        "split": "Split",
        "language": "lang",
        "id": "pair_id",
        "attr.color": "colour",
        "attr.pattern": "attr_pattern",
    }
    assert guess_mapping(["image_url", "caption", "item_id"]) == {
        "image": "image_url",
        "text": "caption",
        "product": "item_id",
    }
    assert guess_mapping(["图片", "标题", "类目", "description", "image path"]) == {
        "image": "image path",
        "text": "description",
        "category": "类目",
    }
    assert set(FIELDS) >= {"image", "text", "product", "category", "label", "split", "language"}


def test_user_mapping_overrides_guesses(make_image: MakeImage, tmp_path: Path) -> None:
    make_image("a.jpg")
    src = _write_csv(
        tmp_path / "s.csv",
        [["pic", "title", "words", "colour", "category"], ["a.jpg", "x", "red mug", "red", "mug"]],
    )
    result = read_source(
        src, mapping={"image": "pic", "text": "words", "attr.shade": "colour", "category": None}
    )
    assert result.report.ok, result.report.summary()
    assert result.data.texts["text"].tolist() == ["red mug"]
    assert result.data.attributes.to_dict("records") == [
        {"product_id": "row-00001", "name": "shade", "value": "red"}
    ]
    assert result.data.products.to_dict("records") == [{"product_id": "row-00001", "category": None}]


def test_mapped_column_missing(make_image: MakeImage, tmp_path: Path) -> None:
    make_image("a.jpg")
    src = _write_csv(tmp_path / "s.csv", [["image", "text"], ["a.jpg", "red mug"]])
    result = read_source(src, mapping={"attr.color": "colour"})
    [issue] = result.report.issues
    assert (issue.row, issue.field, issue.code) == (0, "attr.color", "missing_column")
    assert "'colour'" in issue.message and "['image', 'text']" in issue.message
    assert len(result.data.images) == 1 and not result.report.ok

    no_image = read_source(src, mapping={"image": "picture"})
    assert [i.code for i in no_image.report.issues] == ["missing_column"]
    assert no_image.bad_rows == {1} and no_image.data.images.empty


def test_required_column_not_found(tmp_path: Path) -> None:
    src = _write_csv(tmp_path / "s.csv", [["foo", "text"], ["a.jpg", "red mug"], ["b.jpg", "blue mug"]])
    result = read_source(src)
    [issue] = result.report.issues
    assert (
        issue.code == "missing_column"
        and issue.field == "image"
        and "mapping={'image': COLUMN}" in issue.message
    )
    assert result.bad_rows == {1, 2}


def test_unknown_field_in_mapping(tmp_path: Path) -> None:
    src = _write_csv(tmp_path / "s.csv", [["image", "text"], ["a.jpg", "x"]])
    with pytest.raises(ValueError, match="unknown field 'imgae'"):
        read_source(src, mapping={"imgae": "image"})


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="source not found"):
        read_source(tmp_path / "nope.csv")


# --- formats ------------------------------------------------------------------------------------------------


def test_csv_unlabelled(make_image: MakeImage, tmp_path: Path) -> None:
    a, b = make_image("img/a.jpg", size=(64, 48)), make_image("img/b.png", size=(20, 30))
    src = _write_csv(
        tmp_path / "cat.csv",
        [
            ["image", "title", "product_id", "category", "color"],
            ["img/a.jpg", "Red ceramic mug", "p1", "mug", "red"],
            ["img/a.jpg", "红色陶瓷马克杯", "p1", "mug", "red"],
            ["img/b.png", "Blue cotton T-shirt", "p2", "tshirt", "blue"],
            ["img/b.png", "蓝色 T-shirt 纯棉", "", "", ""],
        ],
    )
    calls: list[tuple[int, int]] = []
    result = read_source(src, progress=lambda done, total: calls.append((done, total)))
    assert result.report.ok and result.bad_rows == set() and result.report.n_rows == 4
    data = result.data
    assert data.pairs is None
    assert tuple(data.images.columns) == IMAGE_COLUMNS and tuple(data.texts.columns) == TEXT_COLUMNS
    assert tuple(data.products.columns) == PRODUCT_COLUMNS
    images = data.images.set_index("image_id")
    assert images.loc[_image_id(a, tmp_path)].to_dict() == {
        "product_id": "p1",
        "path": str(a.resolve()),
        "sha256": hashlib.sha256(a.read_bytes()).hexdigest(),
        "width": 64,
        "height": 48,
    }
    assert images.loc[_image_id(b, tmp_path), "product_id"] == "p2"
    assert data.products.to_dict("records") == [
        {"product_id": "p1", "category": "mug"},
        {"product_id": "p2", "category": "tshirt"},
    ]
    assert data.attributes.to_dict("records") == [
        {"product_id": "p1", "name": "color", "value": "red"},
        {"product_id": "p2", "name": "color", "value": "blue"},
    ]
    texts = data.texts.set_index("text")
    assert texts["language"].to_dict() == {
        "Red ceramic mug": "en",
        "红色陶瓷马克杯": "zh",
        "Blue cotton T-shirt": "en",
        "蓝色 T-shirt 纯棉": "zh",
    }
    assert texts.loc["蓝色 T-shirt 纯棉", "product_id"] == "p2"  # an empty product cell inherits the image's
    assert texts.loc["红色陶瓷马克杯", "sha256"] == hashlib.sha256("红色陶瓷马克杯".encode()).hexdigest()
    assert calls[-1] == (2, 2) and len(calls) == 2


def test_ids_are_stable(make_image: MakeImage, tmp_path: Path) -> None:
    make_image("a.jpg")
    src = _write_csv(tmp_path / "s.csv", [["image", "text"], ["a.jpg", "red mug"]])
    first, second = read_source(src).data, read_source(src).data
    assert first.images["image_id"].tolist() == second.images["image_id"].tolist()
    assert first.texts["text_id"].tolist() == second.texts["text_id"].tolist()


def test_default_product_is_per_image(make_image: MakeImage, tmp_path: Path) -> None:
    make_image("a.jpg")
    make_image("b.jpg", seed=1)
    src = _write_csv(
        tmp_path / "s.csv", [["image", "text"], ["a.jpg", "mug"], ["b.jpg", "cup"], ["a.jpg", "red mug"]]
    )
    data = read_source(src).data
    assert data.products["product_id"].tolist() == ["row-00001", "row-00002"]
    assert data.texts["product_id"].tolist() == ["row-00001", "row-00002", "row-00001"]


def test_tsv_labelled_pairs(make_image: MakeImage, tmp_path: Path) -> None:
    a, b = make_image("a.jpg"), make_image("b.jpg", seed=1)
    src = _write_csv(
        tmp_path / "pairs.tsv",
        [
            ["image", "text", "product", "label", "split"],
            ["a.jpg", "red mug, 350 ml", "p1", "1", "train"],
            ["a.jpg", "blue shirt", "p1", "0", "Validation"],
            ["b.jpg", "blue shirt", "p2", "true", "test"],
            ["b.jpg", "red mug, 350 ml", "p2", "no", "test"],
        ],
        sep="\t",
    )
    result = read_source(src)
    assert result.report.ok, result.report.summary()
    pairs = result.data.pairs
    assert pairs is not None and tuple(pairs.columns) == PAIR_COLUMNS
    assert pairs["label"].tolist() == [1, 0, 1, 0] and pairs["label"].dtype == np.int64
    assert pairs["split"].tolist() == ["train", "val", "test", "test"]
    assert set(pairs["pair_kind"]) == {"labelled"} and pairs["swapped_attribute"].isna().all()
    assert pairs["pair_id"].is_unique
    texts = result.data.texts
    by_id = texts.set_index("text_id")
    products = [by_id.loc[t, "product_id"] for t in pairs["text_id"]]
    assert products == ["p1", None, "p2", None]  # negatives' texts belong to no product
    ids = [_image_id(a, tmp_path), _image_id(b, tmp_path)]
    assert pairs["image_id"].tolist() == [ids[0], ids[0], ids[1], ids[1]]
    assert len(texts) == 4  # (p1, red mug), (None, blue shirt), (p2, blue shirt), (None, red mug)
    assert (pairs["text_id"].iloc[1], pairs["text_id"].iloc[3]) != (
        pairs["text_id"].iloc[2],
        pairs["text_id"].iloc[0],
    )


def test_split_without_label_is_ignored_with_a_warning(make_image: MakeImage, tmp_path: Path) -> None:
    make_image("a.jpg")
    src = _write_csv(tmp_path / "s.csv", [["image", "text", "split"], ["a.jpg", "mug", "train"]])
    result = read_source(src)
    assert result.report.ok and [i.code for i in result.report.warnings] == ["ignored_column"]
    assert result.data.pairs is None


def test_jsonl_with_bad_lines(make_image: MakeImage, tmp_path: Path) -> None:
    make_image("a.jpg")
    make_image("b.jpg", seed=2)
    lines = [
        json.dumps(
            {"image_path": "a.jpg", "caption": "红色马克杯", "sku": 17, "is_match": 1, "lang": "zh-CN"}
        ),
        "",
        '{"image_path": "b.jpg", "caption": "broken',
        "[1, 2]",
        json.dumps({"image_path": "b.jpg", "caption": "blue shirt", "sku": 18.0, "is_match": False}),
    ]
    src = tmp_path / "set.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = read_source(src)
    assert _codes(result) == {3: {"bad_json"}, 4: {"bad_json"}}
    assert "line 3 is not valid JSON" in result.report.issues[0].message
    assert result.bad_rows == {3, 4} and result.report.n_rows == 4
    assert result.data.pairs is not None and result.data.pairs["label"].tolist() == [1, 0]
    assert result.data.images["product_id"].tolist() == ["17", "18"]
    assert result.data.texts["language"].tolist() == ["zh", "en"]


def test_parquet(make_image: MakeImage, tmp_path: Path) -> None:
    make_image("a.jpg")
    make_image("b.jpg", seed=1)
    frame = pd.DataFrame(
        {
            "image": ["a.jpg", "b.jpg"],
            "text": ["red mug", "blue shirt"],
            "product_id": [1, 2],
            "category": ["mug", None],
            "label": [1, 1],
        }
    )
    frame.to_parquet(tmp_path / "set.parquet")
    result = read_source(tmp_path / "set.parquet")
    assert result.report.ok, result.report.summary()
    assert result.data.products.to_dict("records") == [
        {"product_id": "1", "category": "mug"},
        {"product_id": "2", "category": None},
    ]
    assert result.data.pairs is not None and result.data.pairs["split"].isna().all()


def test_unreadable_parquet(tmp_path: Path) -> None:
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    result = read_source(tmp_path / "bad.parquet")
    assert [i.code for i in result.report.issues] == ["unreadable_source"] and not result.report.ok


def test_folder_without_sidecars(make_image: MakeImage, tmp_path: Path) -> None:
    make_image("shop/mugs/red_mug_01.jpg")
    make_image("shop/shoes/blue_suede-2.png", seed=1)
    make_image("shop/shoes/.hidden.jpg", seed=2)
    result = read_source(tmp_path / "shop")
    assert result.report.ok, result.report.summary()
    texts = result.data.texts.sort_values("text")
    assert texts[["product_id", "text", "language"]].to_dict("records") == [
        {"product_id": "shoes/blue_suede-2", "text": "blue suede shoes", "language": "en"},
        {"product_id": "mugs/red_mug_01", "text": "red mug", "language": "en"},
    ]
    assert result.data.products.to_dict("records") == [
        {"product_id": "mugs/red_mug_01", "category": "mugs"},
        {"product_id": "shoes/blue_suede-2", "category": "shoes"},
    ]
    assert result.data.pairs is None


def test_folder_with_sidecars(make_image: MakeImage, tmp_path: Path) -> None:
    make_image("shop/mugs/front.jpg")
    make_image("shop/mugs/side.jpg", seed=1)
    make_image("shop/mugs/broken.jpg", seed=2)
    (tmp_path / "shop/mugs/front.txt").write_text("红色陶瓷马克杯\n", encoding="utf-8")
    (tmp_path / "shop/mugs/front.json").write_text('{"product": "mug-7"}', encoding="utf-8")
    (tmp_path / "shop/mugs/side.json").write_text('{"product": "mug-7"}', encoding="utf-8")
    (tmp_path / "shop/mugs/broken.json").write_text("{not json", encoding="utf-8")
    result = read_source(tmp_path / "shop")
    assert _codes(result) == {1: {"bad_json"}}  # broken.jpg sorts first
    assert result.data.images["product_id"].tolist() == ["mug-7", "mug-7"]
    assert result.data.products.to_dict("records") == [{"product_id": "mug-7", "category": "mugs"}]
    assert sorted(result.data.texts["text"]) == ["side mugs", "红色陶瓷马克杯"]


# --- encodings ----------------------------------------------------------------------------------------------

_CHINESE_ROWS = [
    ["图片", "标题", "类目"],
    ["a.jpg", "红色陶瓷马克杯 350毫升", "杯子"],
    ["b.jpg", "蓝色纯棉T恤 男款", "服装"],
]


def test_chinese_utf8_with_bom(make_image: MakeImage, tmp_path: Path) -> None:
    make_image("a.jpg")
    make_image("b.jpg", seed=1)
    result = read_source(_write_csv(tmp_path / "zh.csv", _CHINESE_ROWS, encoding="utf-8-sig"))
    assert result.report.issues == []
    assert result.data.texts["text"].tolist() == ["红色陶瓷马克杯 350毫升", "蓝色纯棉T恤 男款"]
    assert set(result.data.texts["language"]) == {"zh"}
    assert result.data.products["category"].tolist() == ["杯子", "服装"]


def test_gb18030_csv(make_image: MakeImage, tmp_path: Path) -> None:
    make_image("a.jpg")
    make_image("b.jpg", seed=1)
    src = _write_csv(tmp_path / "zh.csv", _CHINESE_ROWS, encoding="gb18030")
    with pytest.raises(UnicodeDecodeError):
        src.read_bytes().decode("utf-8")
    result = read_source(src)
    [warning] = result.report.issues
    assert (warning.severity, warning.code) == (
        "warning",
        "fallback_encoding",
    ) and "GB18030" in warning.message
    assert result.report.ok
    assert result.data.texts["text"].tolist() == ["红色陶瓷马克杯 350毫升", "蓝色纯棉T恤 男款"]


def test_undecodable_file(tmp_path: Path) -> None:
    src = tmp_path / "noise.csv"
    src.write_bytes(
        b"image,text\n" + np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    )
    result = read_source(src)
    warning = result.report.issues[0]
    assert (warning.row, warning.severity, warning.code) == (0, "warning", "bad_encoding")
    assert "re-save the file as UTF-8" in warning.message
    assert {i.severity for i in result.report.issues[1:]} == {"error"}
    assert "bad_encoding" in {i.code for i in result.report.issues[1:]}
    assert not result.report.ok and result.data.images.empty


def test_latin1_is_not_mistaken_for_gb18030(tmp_path: Path) -> None:
    src = _write_csv(
        tmp_path / "fr.csv", [["image", "text"], ["a.jpg", "tasse à café élégante"]], encoding="latin-1"
    )
    issues = read_source(src).report.issues
    assert [(i.row, i.severity, i.code) for i in issues] == [
        (0, "warning", "bad_encoding"),
        (1, "error", "bad_encoding"),
    ]
    assert "byte 0xE0 is not UTF-8" in issues[1].message


# --- validation rules ---------------------------------------------------------------------------------------


def test_image_rules(
    make_image: MakeImage,
    tmp_path: Path,
    truncated_jpeg: Path,
    zero_byte_file: Path,
    text_as_jpg: Path,
) -> None:
    root = tmp_path
    make_image("ok.jpg")
    make_image("big.png", size=(300, 300), seed=3)
    outside = tmp_path.parent / f"{tmp_path.name}-outside.jpg"
    outside.write_bytes((root / "ok.jpg").read_bytes())
    (root / "link.jpg").symlink_to(outside)
    rows = [
        ["image", "text"],
        ["ok.jpg", "fine"],  # 1
        ["missing.jpg", "gone"],  # 2
        [zero_byte_file.name, "empty file"],  # 3
        [truncated_jpeg.name, "cut in half"],  # 4
        [text_as_jpg.name, "notes"],  # 5
        ["big.png", "huge"],  # 6
        ["ok.jpg", "   "],  # 7
        ["../" + outside.name, "dots"],  # 8
        ["link.jpg", "symlink"],  # 9
        [str(outside), "absolute outside"],  # 10
        [str(root / "ok.jpg"), "absolute inside"],  # 11
        ["", "no image"],  # 12
    ]
    result = read_source(_write_csv(root / "set.csv", rows), max_pixels=50_000)
    assert _codes(result) == {
        2: {"missing_file"},
        3: {"zero_bytes"},
        4: {"corrupt_image"},
        5: {"not_image"},
        6: {"too_large"},
        7: {"empty_text"},
        8: {"path_escapes_root"},
        9: {"path_escapes_root"},
        10: {"path_escapes_root"},
        12: {"empty_path"},
    }
    assert result.bad_rows == {2, 3, 4, 5, 6, 7, 8, 9, 10, 12} == result.report.bad_rows
    assert sorted(result.data.texts["text"]) == ["absolute inside", "fine"]
    assert len(result.data.images) == 1
    assert "300×300" in next(i.message for i in result.report.issues if i.code == "too_large")
    assert result.report.n_rows == 12 and result.report.n_bad_rows == 10


def test_image_root_argument(make_image: MakeImage, tmp_path: Path) -> None:
    make_image("media/a.jpg")
    (tmp_path / "meta").mkdir()
    src = _write_csv(tmp_path / "meta/s.csv", [["image", "text"], ["a.jpg", "mug"]])
    assert _codes(read_source(src)) == {1: {"missing_file"}}
    assert read_source(src, image_root=tmp_path / "media").report.ok


def test_each_image_probed_once(
    make_image: MakeImage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_image("a.jpg")
    make_image("b.jpg", seed=1)
    probed: list[str] = []
    original = importers.probe_image

    def probe(path: Path, **kwargs: int) -> object:
        probed.append(os.fspath(path))
        return original(path, **kwargs)

    monkeypatch.setattr(importers, "probe_image", probe)
    rows = [["image", "text"]] + [
        [name, f"text {i}"] for i, name in enumerate(["a.jpg", "b.jpg", "./a.jpg"] * 3)
    ]
    result = read_source(_write_csv(tmp_path / "s.csv", rows))
    assert result.report.ok and len(result.data.texts) == 9
    assert sorted(probed) == [str((tmp_path / "a.jpg").resolve()), str((tmp_path / "b.jpg").resolve())]


def test_label_and_split_rules(make_image: MakeImage, tmp_path: Path) -> None:
    make_image("a.jpg")
    rows = [
        ["image", "text", "label", "split"],
        ["a.jpg", "t1", "1", "train"],
        ["a.jpg", "t2", "maybe", "train"],
        ["a.jpg", "t3", "2", "train"],
        ["a.jpg", "t4", "", "train"],
        ["a.jpg", "t5", "1.0", "holdout"],
        ["a.jpg", "t6", "0.0", "TEST"],
    ]
    result = read_source(_write_csv(tmp_path / "s.csv", rows))
    assert _codes(result) == {
        2: {"non_numeric_label"},
        3: {"invalid_label"},
        4: {"non_numeric_label"},
        5: {"unknown_split"},
    }
    assert result.data.pairs is not None
    assert result.data.pairs[["label", "split"]].values.tolist() == [[1, "train"], [0, "test"]]


def test_duplicates_and_conflicts(make_image: MakeImage, tmp_path: Path) -> None:
    make_image("a.jpg")
    make_image("b.jpg", seed=1)
    rows = [
        ["id", "image", "text", "product", "label"],
        ["r1", "a.jpg", "red mug", "p1", "1"],
        ["r2", "a.jpg", "blue mug", "p1", "0"],
        ["r1", "b.jpg", "blue mug", "p2", "1"],  # duplicate id
        ["r4", "b.jpg", "green mug", "p2", "1"],
        ["r5", "b.jpg", "green mug", "p2", "0"],  # conflicts with r4
        ["r6", "a.jpg", "blue mug", "p1", "0"],  # repeats r2
        ["r7", "a.jpg", "tall mug", "p9", "1"],  # a.jpg already belongs to p1
    ]
    result = read_source(_write_csv(tmp_path / "s.csv", rows))
    assert _codes(result) == {
        3: {"duplicate_id"},
        4: {"conflicting_label"},
        5: {"conflicting_label"},
        6: {"duplicate_row"},
        7: {"conflicting_product"},
    }
    dup = next(i for i in result.report.issues if i.code == "duplicate_id")
    assert "'r1' already used by row 1" in dup.message
    assert result.data.pairs is not None and result.data.pairs["pair_id"].tolist() == ["r1", "r2"]


def test_unlabelled_repeated_row(make_image: MakeImage, tmp_path: Path) -> None:
    make_image("a.jpg")
    rows = [
        ["image", "text", "product"],
        ["a.jpg", "mug", "p1"],
        ["a.jpg", "mug", "p1"],
        ["a.jpg", "cup", "p1"],
    ]
    result = read_source(_write_csv(tmp_path / "s.csv", rows))
    assert _codes(result) == {2: {"duplicate_row"}}
    assert result.data.texts["text"].tolist() == ["mug", "cup"]


def test_conflicting_category_is_a_warning(make_image: MakeImage, tmp_path: Path) -> None:
    make_image("a.jpg")
    make_image("b.jpg", seed=1)
    rows = [
        ["image", "text", "product", "category"],
        ["a.jpg", "mug", "p1", "mug"],
        ["b.jpg", "cup", "p1", "cup"],
    ]
    result = read_source(_write_csv(tmp_path / "s.csv", rows))
    assert result.report.ok and [i.code for i in result.report.warnings] == ["conflicting_category"]
    assert result.data.products.to_dict("records") == [{"product_id": "p1", "category": "mug"}]


def test_malformed_csv_row(make_image: MakeImage, tmp_path: Path) -> None:
    make_image("a.jpg")
    src = tmp_path / "s.csv"
    src.write_text("image,text\na.jpg,mug\n\na.jpg,mug, large,red\na.jpg\n", encoding="utf-8")
    result = read_source(src)
    assert _codes(result) == {2: {"malformed_row"}, 3: {"empty_text"}}
    assert result.report.n_rows == 3


# --- one bad row or field never costs a good one -------------------------------------------------------------

def test_a_field_over_the_limit_costs_only_its_row(make_image: MakeImage, tmp_path: Path) -> None:
    """The csv module refuses a value over 131,072 characters; reading used to stop there and lose every later row."""
    for name, seed in (("a.jpg", 0), ("b.jpg", 1), ("c.jpg", 2)):
        make_image(name, seed=seed)
    rows = [
        ["image", "text", "product", "notes"],
        ["a.jpg", "x" * 200_000 + "\n" + "y" * 10, "p1", ""],  # quoted (line break), over csv's own limit
        ["b.jpg", "blue cup", "p2", "n" * 150_000],  # an unmapped column is never used: no error
        ["c.jpg", "m" * 10_001, "p3", ""],
        ["c.jpg", "green mug", "p3", ""],
    ]
    src = _write_csv(tmp_path / "long.csv", rows)
    with pytest.raises(csv.Error, match="field larger than field limit"):
        list(csv.reader(io.StringIO(src.read_text(encoding="utf-8"), newline="")))
    result = read_source(src)
    assert _codes(result) == {1: {"field_too_long"}, 3: {"field_too_long"}}
    messages = [issue.message for issue in result.report.issues]
    assert "'text' is 200,011 characters long; the limit is 10,000" in messages[0]
    assert "'text' is 10,001 characters long; the limit is 10,000" in messages[1]
    assert result.report.n_rows == 4 and result.bad_rows == {1, 3}
    assert sorted(result.data.texts["text"]) == ["blue cup", "green mug"]


def test_a_quote_never_closed_costs_only_its_row(make_image: MakeImage, tmp_path: Path) -> None:
    make_image("a.jpg")
    make_image("b.jpg", seed=1)
    src = tmp_path / "q.csv"
    lines = ["image,text", 'a.jpg,"red mug', "", "b.jpg,blue cup", 'b.jpg,"cup, blue"', 'a.jpg,"red cup', "a.jpg,mug"]
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # The csv module reads rows 2 and 3 into the stray quote's value, and the rest of the file into the last one.
    read_by_csv = list(csv.reader(io.StringIO(src.read_text(), newline="")))
    assert read_by_csv[1:] == [
        ["a.jpg", "red mug\n\nb.jpg,blue cup\nb.jpg,cup", ' blue"'],
        ["a.jpg", "red cup\na.jpg,mug\n"],
    ]
    result = read_source(src)
    assert _codes(result) == {1: {"malformed_row"}, 4: {"malformed_row"}}
    messages = [issue.message for issue in result.report.issues]
    assert "line 2: a value opens a quote" in messages[0] and "line 6: a value opens a quote" in messages[1]
    assert result.report.n_rows == 5
    assert result.data.texts["text"].tolist() == ["blue cup", "cup, blue", "mug"]


@pytest.mark.parametrize(
    ("header", "code"), [(b'image,"text\na.jpg,mug\n', "unreadable_source"), (b"image,t\xffxt\n", "bad_encoding")]
)
def test_an_unreadable_header_is_a_source_error(tmp_path: Path, header: bytes, code: str) -> None:
    src = tmp_path / "h.csv"
    src.write_bytes(b"\n" + header)
    issues = read_source(src).report.issues
    assert (issues[-1].row, issues[-1].code) == (0, code) and "the header (line 2)" in issues[-1].message


def test_bytes_that_are_not_utf8_cost_only_their_row(make_image: MakeImage, tmp_path: Path) -> None:
    make_image("a.jpg")
    make_image("b.jpg", seed=1)
    src = tmp_path / "mixed.csv"
    src.write_bytes(
        "图片,标题,备注\na.jpg,红色陶瓷马克杯,\n".encode()
        + "b.jpg,tasse à café,\n".encode("latin-1")
        + "b.jpg,蓝色纯棉杯垫,".encode()
        + "é\n".encode("latin-1")  # in an unmapped column: never used, no error
    )
    result = read_source(src)
    assert _codes(result) == {0: {"bad_encoding"}, 2: {"bad_encoding"}}
    assert result.report.issues[0].severity == "warning"  # the file: 3 byte(s) are not UTF-8
    assert "'标题': byte 0xE0 is not UTF-8" in result.report.issues[1].message
    assert result.data.texts["text"].tolist() == ["红色陶瓷马克杯", "蓝色纯棉杯垫"]


def test_jsonl_lines_that_break_the_parser_cost_only_their_line(make_image: MakeImage, tmp_path: Path) -> None:
    make_image("a.jpg")
    make_image("b.jpg", seed=1)
    lines = [
        json.dumps({"image": "a.jpg", "text": "red mug"}),
        '{"image": "a.jpg", "text": "mug", "stock": ' + "9" * 5000 + "}",  # over Python's int digit limit
        "[" * 100_000 + "]" * 100_000,  # deeper than the parser's recursion limit
        json.dumps({"image": "b.jpg", "text": "x" * 10_001}),
        json.dumps({"image": "b.jpg", "text": "blue cup"}),
    ]
    src = tmp_path / "set.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = read_source(src)
    assert _codes(result) == {2: {"bad_json"}, 3: {"bad_json"}, 4: {"field_too_long"}}
    assert result.data.texts["text"].tolist() == ["red mug", "blue cup"]


def test_parquet_binary_text_is_decoded_and_bad_bytes_cost_their_row(make_image: MakeImage, tmp_path: Path) -> None:
    make_image("a.jpg")
    make_image("b.jpg", seed=1)
    frame = pd.DataFrame({"image": [b"a.jpg", b"b.jpg"], "text": ["红色马克杯".encode(), b"caf\xe9"]})
    frame.to_parquet(tmp_path / "binary.parquet")
    result = read_source(tmp_path / "binary.parquet")
    assert _codes(result) == {2: {"bad_encoding"}}
    assert result.data.texts["text"].tolist() == ["红色马克杯"]


def test_a_huge_phone_photo_imports(huge_jpeg: Path, tmp_path: Path) -> None:
    src = _write_csv(tmp_path / "s.csv", [["image", "text"], [huge_jpeg.name, "phone photo of a mug"]])
    result = read_source(src, image_root=huge_jpeg.parent)
    assert result.report.issues == []
    assert result.data.images[["width", "height"]].values.tolist() == [[11000, 8600]]


def test_cli_writes_the_report_however_the_import_ends(
    make_image: MakeImage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from workbench.cli import main

    make_image("a.jpg")
    src = _write_csv(tmp_path / "bad.csv", [["image", "text"], ["missing.jpg", "red mug"], ["a.jpg", " "]])
    report = tmp_path / "report.csv"
    db = str(tmp_path / "x.duckdb")
    args = ["--db", db, "evalset", "import", str(src), "--name", "bad", "--lenient", "--report", str(report)]
    assert main(args) == 2  # no valid row: an error, and still the per-row report
    written = pd.read_csv(report)
    assert written[["row", "code"]].values.tolist() == [[1, "missing_file"], [2, "empty_text"]]
    assert "No valid rows" in capsys.readouterr().err

    report.unlink()
    assert main(["--db", db, "evalset", "validate", str(tmp_path / "gone.csv"), "--report", str(report)]) == 2
    [row] = pd.read_csv(report).to_dict("records")
    assert (row["row"], row["code"]) == (0, "import_failed") and "source not found" in row["message"]


def test_url_images(local_server: LocalServer, make_image: MakeImage, tmp_path: Path) -> None:
    make_image("a.jpg")
    good = f"{local_server.base_url}/img/shirt.png"
    rows = [
        ["image", "text"],
        [good, "blue shirt"],
        [good, "shirt, blue"],
        [f"{local_server.base_url}/gone.png", "missing"],
        ["ftp://example.com/x.jpg", "ftp"],
    ]
    src = _write_csv(tmp_path / "s.csv", rows)
    result = read_source(src, image_cache=ImageCache(tmp_path / "cache", timeout=2.0))
    assert _codes(result) == {3: {"url_failed"}, 4: {"url_failed"}}
    assert local_server.requests["/img/shirt.png"] == 1
    [image] = result.data.images.to_dict("records")
    assert image["image_id"] == hashlib.sha256(good.encode()).hexdigest()[:16]
    assert Path(image["path"]).parent == tmp_path / "cache"
    assert image["sha256"] == hashlib.sha256(local_server.png).hexdigest()

    without_cache = read_source(src)
    assert _codes(without_cache)[1] == {"url_failed"}
    assert "image_cache" in next(i.message for i in without_cache.report.issues if i.row == 1)
