"""ZIP eval sets: a table plus its images imports like a folder (CLI and library), the images stay readable by
runs, unsafe archives (zip-slip, links, bombs, too many members) are refused without writing outside the
extraction, nothing is left behind when an import does not happen, and the preview shows how paths resolve."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from tests.data.conftest import image_bytes
from workbench import store
from workbench.cli import main
from workbench.config import config_from_dict
from workbench.data import archive as archive_module
from workbench.data.archive import ArchiveError, extract_archive, extract_members, plan_archive
from workbench.data.evalsets import EvalSetError, delete_eval_set, get_eval_set_info, import_eval_set, media_dir
from workbench.data.mapping import IMAGE_PREVIEW_COLUMNS, preview_image_paths
from workbench.run import runner

COLORS = ("red", "blue", "green", "black")
KINDS = ("shirt", "mug", "lamp", "sofa")


def _rows(n: int) -> list[tuple[str, str, str, str]]:
    """(image path, title, product, category) for ``n`` products: varied words so the negatives can be drawn."""
    return [(f"images/p{i:02d}.png", f"{COLORS[i % 4]} {KINDS[i // 4 % 4]} number {i}", f"p{i:02d}", KINDS[i // 4 % 4])
            for i in range(n)]


def make_zip(path: Path, *, n: int = 16, prefix: str = "", table: str = "data.csv",
             extra: dict[str, bytes] | None = None, rows: list[tuple[str, str, str, str]] | None = None) -> Path:
    """A ZIP with one CSV table and its PNG images (paths relative to the table) under ``prefix``; paths that
    climb out or name a missing file get no image."""
    rows = _rows(n) if rows is None else rows
    lines = ["image,title,product,category", *(",".join(row) for row in rows)]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(prefix + table, "\n".join(lines) + "\n")
        for i, (image, *_rest) in enumerate(rows):
            if not image.startswith("..") and "missing" not in image:
                archive.writestr(prefix + image, image_bytes((48, 40), seed=i))
        for name, blob in (extra or {}).items():
            archive.writestr(name, blob)
    return path


def _extractions(db: Path) -> list[Path]:
    return sorted((db.parent / "media").glob("*/archive-*")) if (db.parent / "media").exists() else []


def test_cli_imports_a_zip_and_a_run_reads_its_images(tmp_path, capsys):
    db = tmp_path / "store" / "wb.duckdb"
    data = make_zip(tmp_path / "DATA.zip")
    assert main(["--db", str(db), "evalset", "import", str(data), "--name", "shop"]) == 0
    capsys.readouterr()
    info = get_eval_set_info("shop", db)
    assert info["source"] == "DATA.zip" and info["n_images"] == 16 and info["format"] == "csv"
    (folder,) = _extractions(db)
    assert folder.parent == media_dir(db, "shop") and stat.S_IMODE(folder.stat().st_mode) == 0o700
    with store.connect(db) as con:
        paths = [Path(p) for (p,) in con.execute("SELECT path FROM images WHERE eval_set = 'shop'").fetchall()]
    assert all(p.is_file() and p.is_relative_to(folder) for p in paths)
    config = config_from_dict({"name": "kw", "image_encoder": {"type": "keyword_image"},
                               "text_encoder": {"type": "keyword_text"}, "fusion": {"type": "cosine"}})
    run_id = runner.run(config, "shop", db=db, device="cpu")
    assert runner.get_run(run_id, db=db)["status"] == "done", runner.get_run(run_id, db=db)["error"]
    delete_eval_set("shop", db)
    assert not media_dir(db, "shop").exists()


def test_a_zipped_folder_resolves_paths_from_its_table_and_image_root_is_inside_the_archive(tmp_path):
    db = tmp_path / "wb.duckdb"
    wrapped = make_zip(tmp_path / "wrapped.zip", prefix="mydata/",
                       extra={"__MACOSX/mydata/._data.csv": b"junk", "mydata/.DS_Store": b"junk"})
    outcome = import_eval_set(wrapped, "wrapped", db=db)
    assert outcome.imported and outcome.n_bad_rows == 0
    pics = make_zip(tmp_path / "pics.zip", rows=[(f"p{i:02d}.png", *row[1:]) for i, row in enumerate(_rows(16))],
                    table="meta/data.csv")
    with zipfile.ZipFile(pics) as archive:
        assert {n.split("/")[0] for n in archive.namelist()} == {"meta", "p00.png", "p01.png"} | {
            f"p{i:02d}.png" for i in range(2, 16)}
    assert import_eval_set(pics, "pics", db=db, image_root=".").imported  # paths from the archive's root
    with pytest.raises(ArchiveError, match="inside the archive"):
        import_eval_set(pics, "outside", db=db, image_root="..")
    assert not media_dir(db, "outside").exists()


def test_a_rejected_or_validated_archive_leaves_nothing_behind(tmp_path):
    db = tmp_path / "wb.duckdb"
    rows = _rows(16) + [("images/missing.png", "grey chair", "p99", "chair")]
    data = make_zip(tmp_path / "bad.zip", rows=rows)
    rejected = import_eval_set(data, "strict", db=db)
    assert not rejected.imported and rejected.n_bad_rows == 1
    assert rejected.report["code"].tolist() == ["missing_file"]
    assert import_eval_set(data, "check", db=db, validate_only=True).n_bad_rows == 1
    assert _extractions(db) == [] and not media_dir(db, "strict").exists() and not media_dir(db, "check").exists()
    assert import_eval_set(data, "lenient", db=db, strict=False).imported
    with pytest.raises(EvalSetError, match="already exists"):
        import_eval_set(data, "lenient", db=db, strict=False)
    assert len(_extractions(db)) == 1
    with pytest.raises(EvalSetError, match="Invalid eval set name"):
        import_eval_set(data, "..", db=db)


def _zip_with(path: Path, members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, blob in members:
            archive.writestr(info, blob)
    return path


def _link(name: str, target: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(("member", "message"), [
    ("../escape.csv", "outside the archive"),
    ("/etc/escape.csv", "outside the archive"),
    ("images/..\\..\\escape.csv", "outside the archive"),
    (_link("images/link.png", "/etc/passwd"), "symbolic link"),
])
def test_unsafe_members_are_refused_and_nothing_is_written_outside(tmp_path, member, message):
    bad = _zip_with(tmp_path / "bad.zip", [("data.csv", b"image,title\nimages/a.png,x\n"), (member, b"/etc/passwd")])
    parent = tmp_path / "media" / "evil"
    with pytest.raises(ArchiveError, match=message):
        extract_archive(bad, parent)
    assert not parent.exists() or list(parent.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.zip", "media"]


def test_zip_bombs_and_huge_listings_are_refused(tmp_path, monkeypatch):
    zeros = b"\0" * (3 * 1024 * 1024)  # compresses about 1000:1
    bomb = _zip_with(tmp_path / "bomb.zip", [("data.csv", b"image,title\n"), ("images/zeros.png", zeros)])
    assert bomb.stat().st_size < 64 * 1024
    monkeypatch.setenv("WORKBENCH_ZIP_MAX_MB", "1")
    with pytest.raises(ArchiveError, match="unpacks to more than 1 MB"):
        extract_archive(bomb, tmp_path / "out")
    monkeypatch.delenv("WORKBENCH_ZIP_MAX_MB")
    with zipfile.ZipFile(bomb) as archive:  # sizes are counted as written, not taken from the headers
        plan = plan_archive(archive)
        (tmp_path / "count").mkdir()
        with pytest.raises(ArchiveError, match="unpacks to more than"):
            extract_members(archive, plan.members, tmp_path / "count", limit_bytes=1024 * 1024)
    monkeypatch.setattr(archive_module, "MAX_MEMBERS", 3)
    many = _zip_with(tmp_path / "many.zip", [(f"images/{i}.png", b"x") for i in range(4)])
    with pytest.raises(ArchiveError, match="4 members; the limit is 3"):
        extract_archive(many, tmp_path / "out")


def test_an_archive_needs_exactly_one_table(tmp_path):
    two = _zip_with(tmp_path / "two.zip", [("a.csv", b"image,title\n"), ("b.jsonl", b"{}\n")])
    with pytest.raises(ArchiveError, match="2 tables"):
        extract_archive(two, tmp_path / "out")
    assert extract_archive(two, tmp_path / "out", fmt="jsonl").table.name == "b.jsonl"
    none = _zip_with(tmp_path / "none.zip", [("images/a.png", image_bytes())])
    with pytest.raises(ArchiveError, match="no table"):
        extract_archive(none, tmp_path / "out")
    folder = extract_archive(none, tmp_path / "out", fmt="folder")
    assert folder.fmt == "folder" and (folder.table / "images" / "a.png").is_file()
    not_zip = tmp_path / "fake.zip"
    not_zip.write_bytes(b"not a zip")
    with pytest.raises(ArchiveError, match="not a ZIP archive"):
        extract_archive(not_zip, tmp_path / "out")


def test_preview_shows_how_the_first_rows_resolve_in_an_archive_and_on_disk(tmp_path):
    db = tmp_path / "wb.duckdb"
    rows = [_rows(2)[0], ("images/missing.png", "grey chair", "p98", "chair"), ("../up.png", "x", "p97", "y"),
            _rows(2)[1]]
    data = make_zip(tmp_path / "DATA.zip", rows=rows)
    preview = preview_image_paths(data, db=db, n_rows=3)
    assert list(preview.columns) == list(IMAGE_PREVIEW_COLUMNS) and preview["row"].tolist() == [1, 2, 3]
    first, missing, escaping = preview.to_dict("records")
    assert first["resolved_path"] == "DATA.zip: images/p00.png" and first["exists"]
    assert (first["width"], first["height"]) == (48, 40) and first["problem"] is None
    assert max(Image.open(io.BytesIO(first["thumbnail"])).size) <= 96
    assert not missing["exists"] and missing["problem"].startswith("missing_file")
    assert not escaping["exists"] and escaping["problem"].startswith("path_escapes_root")
    uploads = db.parent / "uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []  # the temporary extraction is gone
    with zipfile.ZipFile(data) as archive:
        archive.extractall(tmp_path / "plain")
    on_disk = preview_image_paths(tmp_path / "plain" / "data.csv", n_rows=1, thumb_side=0)
    assert on_disk["resolved_path"].iloc[0] == str((tmp_path / "plain" / "images" / "p00.png").resolve())
    assert on_disk["exists"].iloc[0] and on_disk["thumbnail"].iloc[0] is None
    with pytest.raises(ValueError, match="Set the Image column"):
        preview_image_paths(tmp_path / "plain" / "data.csv", mapping={"image": None})


def test_extraction_files_are_private(tmp_path):
    extracted = extract_archive(make_zip(tmp_path / "DATA.zip", n=2), tmp_path / "media" / "x")
    modes = {stat.S_IMODE(os.stat(p).st_mode) for p in extracted.folder.rglob("*")}
    assert modes <= {0o600, 0o700}
    extracted.remove()
    assert not (tmp_path / "media" / "x").exists()
