"""The import screen's logic: a preview through the importer's own reader, and the mapping a person chose."""

from __future__ import annotations

import pandas as pd

from workbench.data.importers import guess_mapping
from workbench.data.mapping import attribute_field, mapping_from_choices, preview_source
from workbench.data.validation import ValidationReport, issue_counts


def test_preview_reads_the_first_rows_as_strings_and_counts_all(tmp_path):
    path = tmp_path / "pairs.csv"
    rows = [f"img{i}.jpg,Red mug {i},sku{i},{i % 2}" for i in range(12)]
    path.write_text("image_path,title,sku,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    preview = preview_source(path, "csv", n_rows=5)
    assert preview.columns == ["image_path", "title", "sku", "label"]
    assert preview.n_rows == 12 and len(preview.rows) == 5
    assert preview.rows.iloc[4].tolist() == ["img4.jpg", "Red mug 4", "sku4", "0"]
    assert all(pd.api.types.is_string_dtype(dtype) for dtype in preview.rows.dtypes)


def test_preview_of_a_zip_reads_its_one_table_and_leaves_nothing_unpacked(tmp_path):
    import zipfile

    import pytest

    from workbench.data.archive import ArchiveError

    db = tmp_path / "wb.duckdb"
    path = tmp_path / "shop.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("shop/pairs.tsv", "image_path\ttitle\n" + "".join(f"img/{i}.png\tmug {i}\n" for i in range(9)))
        archive.writestr("shop/img/0.png", b"not read by a table preview")
    preview = preview_source(path, None, n_rows=3, db=db)
    assert preview.columns == ["image_path", "title"] and preview.n_rows == 9 and len(preview.rows) == 3
    assert list((tmp_path / "uploads").iterdir()) == []  # the temporary extraction is gone
    (tmp_path / "damaged.zip").write_bytes(b"PK not really")
    with pytest.raises(ArchiveError, match="not a ZIP archive"):
        preview_source(tmp_path / "damaged.zip", None, db=db)


def test_attribute_fields_are_made_from_column_names():
    assert attribute_field("Colour (main)") == "attr.colour_main"
    assert attribute_field("材质") is None  # no ASCII letters or digits: the person must map it explicitly
    assert attribute_field("--") is None


def test_choices_override_guesses_and_unchosen_guessed_attributes_are_unmapped():
    columns = ["img", "title", "sku", "attr_color", "attr_size", "Material"]
    guessed = guess_mapping(columns)
    assert guessed["attr.color"] == "attr_color" and guessed["attr.size"] == "attr_size"
    fields = {"image": "img", "text": "title", "product": None, "category": None}
    mapping = mapping_from_choices(fields, ["attr_color", "Material"], guessed)
    assert mapping == {"image": "img", "text": "title", "product": None, "category": None,
                       "attr.material": "Material", "attr.color": "attr_color", "attr.size": None}


def test_a_chosen_attribute_never_replaces_a_field_already_chosen():
    mapping = mapping_from_choices({"attr.material": "fabric"}, ["Material"], {})
    assert mapping == {"attr.material": "fabric"}


def test_issue_counts_put_errors_first_then_the_most_frequent_codes():
    report = ValidationReport()
    report.add(1, "image", "missing_file", "a")
    report.add(2, "image", "missing_file", "b")
    report.add(2, "text", "empty_text", "c")
    report.add(3, "label", "ignored_column", "d", severity="warning")
    counts = issue_counts(report.to_frame())
    assert counts.to_dict("records") == [
        {"severity": "error", "code": "missing_file", "rows": 2, "issues": 2},
        {"severity": "error", "code": "empty_text", "rows": 1, "issues": 1},
        {"severity": "warning", "code": "ignored_column", "rows": 1, "issues": 1},
    ]
    assert list(issue_counts(pd.DataFrame()).columns) == ["severity", "code", "rows", "issues"]
