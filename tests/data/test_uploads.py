"""Private upload storage: random names, private modes, the size limit, removal and ageing out."""

from __future__ import annotations

import os
import time

import pytest

from workbench.data import uploads


def test_uploads_get_random_private_names_and_oversized_ones_are_refused(tmp_path):
    db = tmp_path / "wb.duckdb"
    first = uploads.store_upload(db, "../../My Pairs.CSV", b"a,b\n", limit_mb=1)
    second = uploads.store_upload(db, "../../My Pairs.CSV", b"a,b\n", limit_mb=1)
    odd = uploads.store_upload(db, "pairs.c$v", b"x", limit_mb=1)
    folder = tmp_path / "uploads"
    assert first != second and first.parent == second.parent == odd.parent == folder
    assert first.suffix == ".csv" and len(first.stem) == 32 and odd.suffix == ""
    assert first.read_bytes() == b"a,b\n"
    assert folder.stat().st_mode & 0o777 == 0o700 and first.stat().st_mode & 0o777 == 0o600
    with pytest.raises(ValueError, match="limited to 1 MB") as refused:
        uploads.store_upload(db, "big.csv", b"x" * (1024 * 1024 + 1), limit_mb=1)
    assert "'big.csv' is 1.0 MB" in str(refused.value)
    assert len(list(folder.iterdir())) == 3


def test_an_existing_wide_upload_folder_is_made_private(tmp_path):
    (tmp_path / "uploads").mkdir(mode=0o777)
    os.chmod(tmp_path / "uploads", 0o777)
    uploads.store_upload(tmp_path / "wb.duckdb", "a.csv", b"a", limit_mb=1)
    assert (tmp_path / "uploads").stat().st_mode & 0o777 == 0o700


def test_only_stored_uploads_are_removed(tmp_path):
    db = tmp_path / "wb.duckdb"
    stored = uploads.store_upload(db, "a.csv", b"a", limit_mb=1)
    elsewhere = tmp_path / "a.csv"
    elsewhere.write_text("keep")
    assert uploads.remove_upload(elsewhere, db) is False and elsewhere.exists()
    assert uploads.remove_upload(stored, db) is True and not stored.exists()
    assert uploads.remove_upload(stored, db) is False


def test_clean_up_removes_old_uploads_only_and_never_follows_links(tmp_path, monkeypatch):
    db = tmp_path / "wb.duckdb"
    now = time.time()
    old = uploads.store_upload(db, "old.csv", b"o", limit_mb=1)
    fresh = uploads.store_upload(db, "new.csv", b"n", limit_mb=1)
    legacy = tmp_path / "uploads" / "0123abcd" / "pairs.csv"  # the layout before random names
    legacy.parent.mkdir()
    legacy.write_text("l")
    target = tmp_path / "precious.csv"
    target.write_text("keep")
    link = tmp_path / "uploads" / "link.csv"
    link.symlink_to(target)
    for path in (old, legacy):
        os.utime(path, (now - 2 * 3600, now - 2 * 3600))
    os.utime(link, (now - 2 * 3600, now - 2 * 3600), follow_symlinks=False)
    assert uploads.clean_uploads(db, max_age_s=3600, now=now) == 3
    assert sorted(p.name for p in (tmp_path / "uploads").iterdir()) == [fresh.name]
    assert target.read_text() == "keep"
    monkeypatch.setenv(uploads.UPLOAD_MAX_AGE_ENV, "0.5")
    assert uploads.upload_max_age_s() == 1800
    assert uploads.clean_uploads(db, now=now + 3600) == 1
    assert uploads.clean_uploads(tmp_path / "none" / "wb.duckdb") == 0


def test_save_upload_sweeps_stale_uploads_first(tmp_path):
    db = tmp_path / "wb.duckdb"
    stale = uploads.store_upload(db, "stale.csv", b"s", limit_mb=1)
    os.utime(stale, (time.time() - 48 * 3600, time.time() - 48 * 3600))
    kept = uploads.save_upload(db, "new.csv", b"n", limit_mb=1)
    assert not stale.exists() and kept.read_bytes() == b"n"
    assert [p.name for p in (tmp_path / "uploads").iterdir()] == [kept.name]
