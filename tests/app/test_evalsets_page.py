"""Eval sets page: validate/import a small CSV with a bad row (strict and lenient), upload, gallery, delete."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from PIL import Image

COLORS = {"red": (200, 30, 30), "blue": (30, 40, 200), "green": (30, 160, 40), "yellow": (230, 210, 40),
          "black": (10, 10, 10), "white": (245, 245, 245), "pink": (240, 150, 190), "gray": (128, 128, 128)}


@pytest.fixture
def small_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A labelled-free CSV of 8 products with real PNGs, plus row 9 pointing at a missing image; its folder is a
    data root of the app."""
    monkeypatch.setenv("WORKBENCH_DATA_ROOTS", str(tmp_path))
    folder = tmp_path / "shop"
    (folder / "img").mkdir(parents=True)
    lines = ["image_path,title,sku,category"]
    for i, (name, rgb) in enumerate(COLORS.items()):
        Image.new("RGB", (48, 40), rgb).save(folder / "img" / f"{name}.png")
        category = "mug" if i % 2 else "帽子"
        title = f"{name} ceramic mug" if i % 2 else f"{name} 棒球帽 hat"
        lines.append(f"img/{name}.png,{title},sku-{i},{category}")
    lines.append("img/missing.png,orange mug,sku-9,mug")
    path = folder / "pairs.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _open_import(open_page, by_label, source: Path, name: str):
    at = open_page("pages/1_Eval_sets.py")
    at.run()
    at.radio(key="evalsets_view").set_value("Import").run()
    at.radio(key="evalsets_source_kind").set_value("A file or folder on the server").run()
    at.text_input(key="evalsets_path").input(str(source)).run()
    assert not at.exception, [e.value for e in at.exception]
    by_label(at.text_input, "Eval set name").input(name)
    return at


def test_strict_then_lenient_import_and_browse_and_delete(app_db, small_csv, open_page, by_label, page_text):
    from workbench.data.evalsets import list_eval_sets

    at = _open_import(open_page, by_label, small_csv, "shop")
    assert by_label(at.selectbox, "Format").value == "csv"
    assert by_label(at.selectbox, "image *").value == "image_path"  # guessed mapping
    assert by_label(at.selectbox, "product").value == "sku"
    assert list(at.dataframe[0].value.columns) == ["image_path", "title", "sku", "category"]  # preview

    by_label(at.button, "Validate").click().run()
    assert "Validation: 9 rows read, 1 with errors, 8 good." in " ".join(w.value for w in at.warning)
    report = at.dataframe[-1].value
    assert list(report["row"]) == [9] and report["code"].iloc[0] == "missing_file"

    by_label(at.button, "Import").click().run()  # strict (default): nothing imported
    assert "Strict mode: nothing was imported because 1 row(s) have errors" in " ".join(e.value for e in at.error)
    assert at.dataframe[-1].value["code"].tolist() == ["missing_file"]
    assert "shop" not in set(list_eval_sets(app_db.path)["name"])

    by_label(at.radio, "Mode").set_value("lenient")
    by_label(at.button, "Import").click().run()
    assert not at.exception
    assert "Imported 'shop': 8 products" in " ".join(s.value for s in at.success)
    assert "shop" in set(list_eval_sets(app_db.path)["name"])

    at.radio(key="evalsets_view").set_value("Browse").run()
    assert at.selectbox(key="evalsets_choice").value == "shop"  # the import is selected
    at.selectbox(key="evalsets_f_label").set_value("match").run()
    cards = [c.value for c in at.caption if c.value.startswith(("**match**", "no match"))]
    assert len(cards) == 8 and all(c.startswith("**match**") for c in cards)
    assert len(at.image) == len(cards)  # a thumbnail per card
    at.text_input(key="evalsets_f_search").input("棒球帽").run()
    shown = [t.value for t in at.text]
    assert shown and all("棒球帽" in t for t in shown)
    at.selectbox(key="evalsets_f_category").set_value("mug").run()
    assert any("No pairs match" in i.value for i in at.info)

    delete = by_label(at.button, "Delete eval set")
    assert delete.disabled  # needs the confirmation first
    at.checkbox(key="evalsets_confirm_shop").check().run()
    by_label(at.button, "Delete eval set").click().run()
    assert "Deleted eval set 'shop'." in " ".join(s.value for s in at.success)
    assert "shop" not in set(list_eval_sets(app_db.path)["name"])
    assert not at.exception


def test_upload_validate_with_image_root_and_charts(app_db, small_csv, open_page, by_label):
    absolute = small_csv.read_text(encoding="utf-8").replace("img/", f"{small_csv.parent}/img/")
    at = open_page("pages/1_Eval_sets.py")
    at.run()
    at.radio(key="evalsets_view").set_value("Import").run()
    uploads = app_db.path.parent / "uploads"
    before = set(uploads.iterdir()) if uploads.is_dir() else set()
    at.file_uploader(key="evalsets_upload").upload("upload.csv", absolute.encode("utf-8"), "text/csv").run()
    assert not at.exception, [e.value for e in at.exception]
    saved = set(uploads.iterdir()) - before  # one private copy under a random name, written once across reruns
    assert len(saved) == 1
    stored = saved.pop()
    assert stored.suffix == ".csv" and "upload" not in stored.name
    assert stored.read_text(encoding="utf-8") == absolute
    assert uploads.stat().st_mode & 0o777 == 0o700 and stored.stat().st_mode & 0o777 == 0o600
    assert by_label(at.text_input, "Eval set name").value == "upload"  # the user's file name, not the random one
    at.text_input(key="evalsets_image_root").input(str(small_csv.parent))
    by_label(at.button, "Validate").click().run()
    assert "1 with errors" in " ".join(w.value for w in at.warning)
    assert at.dataframe[-1].value["code"].tolist() == ["missing_file"]
    assert set(uploads.iterdir()) - before == {stored}  # reruns reuse the stored copy

    at.radio(key="evalsets_view").set_value("Charts").run()
    at.selectbox(key="evalsets_choice").set_value("tiny").run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 5


def _zip_of(folder: Path, table: str, *, prefix: str = "") -> bytes:
    """The folder's table and images zipped, paths relative to the folder (``prefix`` nests them one level)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.write(folder / table, prefix + table)
        for image in sorted((folder / "img").iterdir()):
            archive.write(image, f"{prefix}img/{image.name}")
    return buffer.getvalue()


def test_zip_upload_previews_image_paths_then_imports_with_the_users_file_name(app_db, small_csv, open_page,
                                                                               by_label, page_text):
    from workbench.data.evalsets import get_eval_set_info

    at = open_page("pages/1_Eval_sets.py")
    at.run()
    at.radio(key="evalsets_view").set_value("Import").run()
    payload = _zip_of(small_csv.parent, "pairs.csv", prefix="catalogue/")
    at.file_uploader(key="evalsets_upload").upload("my shop.zip", payload, "application/zip").run()
    assert not at.exception, [e.value for e in at.exception]
    assert by_label(at.selectbox, "Format of the table inside the archive").value == "auto"
    assert by_label(at.text_input, "Eval set name").value == "my shop"
    paths = next(d.value for d in at.dataframe if "resolved_path" in d.value.columns)
    assert len(paths) == 8 and paths["exists"].all()  # the first 8 rows resolve inside the archive
    assert paths["resolved_path"].iloc[0] == "my shop.zip: catalogue/img/red.png"
    assert paths["thumbnail"].str.startswith("data:image/png;base64,").all()
    assert "Image paths of the first 8 rows**: 8 found" in page_text(at)

    by_label(at.button, "Validate").click().run()
    validated = " ".join(w.value for w in at.warning)
    assert "Validation: 9 rows read, 1 with errors, 8 good." in validated
    by_label(at.text_input, "Eval set name").input("zipped")
    by_label(at.radio, "Mode").set_value("lenient")
    by_label(at.button, "Import").click().run()
    assert not at.exception
    assert "Imported 'zipped': 8 products, 8 images," in " ".join(s.value for s in at.success)
    assert "9 rows read, 1 with errors, 8 good." in " ".join(s.value for s in at.success)  # the same counts
    info = get_eval_set_info("zipped", app_db.path)
    assert info["source"] == "my shop.zip"
    images = app_db.path.parent / "media" / "zipped"
    assert len(list(images.rglob("*.png"))) == 8  # the extraction is the eval set's media folder


def test_unmapped_required_columns_are_a_red_error_naming_the_field(app_db, small_csv, open_page, by_label):
    at = _open_import(open_page, by_label, small_csv, "unmapped")
    by_label(at.selectbox, "image *").set_value("(none)")
    by_label(at.selectbox, "text *").set_value("(none)").run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert r"Set the **image \*** column and **text \*** column above" in errors  # the form labels, escaped
    assert by_label(at.button, "Validate").disabled and by_label(at.button, "Import").disabled
    assert not [w for w in at.warning if "Validation" in w.value]  # never a green or amber "0 with errors"

    by_label(at.selectbox, "text *").set_value("title").run()
    errors = " ".join(e.value for e in at.error)
    assert r"Set the **image \*** column above" in errors and "holds image paths" in errors
    by_label(at.selectbox, "image *").set_value("image_path").run()
    assert not at.error and not by_label(at.button, "Validate").disabled
