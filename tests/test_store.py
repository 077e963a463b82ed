from __future__ import annotations

import subprocess
import sys
import threading
import time

import duckdb
import pytest

from workbench import store


def test_migrations_create_schema_once(db):
    with store.connect(db) as con:
        assert store.schema_version(con) == store.SCHEMA_VERSION
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    for table in ("eval_sets", "products", "images", "texts", "pairs", "attributes", "import_log", "runs",
                  "embedding_cache", "scores", "metrics", "label_errors"):
        assert table in tables
    store._migrated.clear()
    with store.connect(db) as con:  # re-migrating an up-to-date file is a no-op
        assert con.execute("SELECT count(*) FROM schema_version").fetchone()[0] == store.SCHEMA_VERSION


def test_newer_schema_is_refused(db):
    with store.connect(db) as con:
        con.execute("INSERT INTO schema_version VALUES (?)", [store.SCHEMA_VERSION + 1])
        with pytest.raises(RuntimeError, match="newer than this workbench"):
            store.migrate(con)


def test_resolve_db_path_env(monkeypatch, tmp_path):
    monkeypatch.setenv(store.ENV_DB, str(tmp_path / "x.duckdb"))
    assert store.resolve_db_path() == (tmp_path / "x.duckdb").resolve()
    assert store.resolve_db_path(tmp_path / "y.duckdb") == (tmp_path / "y.duckdb").resolve()


def test_transaction_rolls_back_on_interrupt(db):
    with store.connect(db) as con:
        with pytest.raises(KeyboardInterrupt), store.transaction(con):
            con.execute("INSERT INTO label_errors VALUES ('e', 'p1', now(), 'x')")
            raise KeyboardInterrupt
        assert con.execute("SELECT count(*) FROM label_errors").fetchone()[0] == 0


def test_parameters_are_not_interpolated(db):
    evil = "x'); DROP TABLE runs; --"
    with store.connect(db) as con:
        con.execute("INSERT INTO label_errors VALUES (?, ?, now(), ?)", [evil, evil, evil])
        assert con.execute("SELECT note FROM label_errors").fetchone()[0] == evil
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 0


def test_concurrent_threads_read_and_write(db):
    with store.connect(db):
        pass
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(5):
                with store.connect(db) as con:
                    con.execute("INSERT INTO label_errors VALUES ('s', ?, now(), NULL)", [f"{i}-{j}"])
                    con.execute("SELECT count(*) FROM label_errors").fetchone()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with store.connect(db) as con:
        assert con.execute("SELECT count(*) FROM label_errors").fetchone()[0] == 30


HOLD = ("import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('locked', flush=True); "
        "time.sleep(float(sys.argv[2]))")


def _hold_lock(db, seconds: float) -> subprocess.Popen:
    with store.connect(db):
        pass
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(db), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_locked_file_waits_then_succeeds(db):
    proc = _hold_lock(db, 1.5)
    messages: list[str] = []
    start = time.monotonic()
    with store.connect(db, timeout=30, on_wait=messages.append) as con:
        assert con.execute("SELECT 1").fetchone()[0] == 1
    assert time.monotonic() - start > 0.5
    assert messages and "busy" in messages[0]
    proc.wait()


def test_locked_file_times_out_with_clear_message(db):
    proc = _hold_lock(db, 5)
    try:
        with pytest.raises(store.StoreLockedError, match="locked by another process"), store.connect(db, timeout=0.3):
            pass
    finally:
        proc.kill()
        proc.wait()


def test_non_lock_errors_are_not_retried(tmp_path):
    bad = tmp_path / "not-a-db.duckdb"
    bad.write_bytes(b"this is not a duckdb file" * 100)
    with pytest.raises(duckdb.Error), store.connect(bad, timeout=0.2):
        pass
