"""The DuckDB store: schema, migrations and short-lived, lock-tolerant connections.

Connections are opened per unit of work and closed straight after, so that the app (many threads) and a CLI
process can take turns on one database file. DuckDB allows one writing process per file; a process that finds the
file locked waits and retries with back-off, then fails with :class:`StoreLockedError` naming the file.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd

DEFAULT_DB = Path("data") / "workbench.duckdb"
ENV_DB = "WORKBENCH_DB"
LOCK_TIMEOUT_S = 60.0

MIGRATIONS: tuple[str, ...] = (
    # v1: eval sets, runs, cache, metrics
    """
    CREATE TABLE eval_sets (
        name VARCHAR PRIMARY KEY, created_at TIMESTAMP NOT NULL, source VARCHAR, format VARCHAR,
        content_hash VARCHAR NOT NULL, seed INTEGER, options JSON,
        n_products INTEGER, n_images INTEGER, n_texts INTEGER, n_pairs INTEGER
    );
    CREATE TABLE products (
        eval_set VARCHAR NOT NULL, product_id VARCHAR NOT NULL, category VARCHAR,
        PRIMARY KEY (eval_set, product_id)
    );
    CREATE TABLE attributes (
        eval_set VARCHAR NOT NULL, product_id VARCHAR NOT NULL, name VARCHAR NOT NULL, value VARCHAR,
        PRIMARY KEY (eval_set, product_id, name)
    );
    CREATE TABLE images (
        eval_set VARCHAR NOT NULL, image_id VARCHAR NOT NULL, product_id VARCHAR, path VARCHAR NOT NULL,
        sha256 VARCHAR NOT NULL, width INTEGER, height INTEGER, PRIMARY KEY (eval_set, image_id)
    );
    CREATE TABLE texts (
        eval_set VARCHAR NOT NULL, text_id VARCHAR NOT NULL, product_id VARCHAR, text VARCHAR NOT NULL,
        language VARCHAR, sha256 VARCHAR NOT NULL, PRIMARY KEY (eval_set, text_id)
    );
    CREATE TABLE pairs (
        eval_set VARCHAR NOT NULL, pair_id VARCHAR NOT NULL, image_id VARCHAR NOT NULL, text_id VARCHAR NOT NULL,
        label TINYINT NOT NULL, split VARCHAR NOT NULL, pair_kind VARCHAR NOT NULL, swapped_attribute VARCHAR,
        PRIMARY KEY (eval_set, pair_id)
    );
    CREATE SEQUENCE import_log_seq;
    CREATE TABLE import_log (
        id BIGINT DEFAULT nextval('import_log_seq') PRIMARY KEY, eval_set VARCHAR, imported_at TIMESTAMP NOT NULL,
        source VARCHAR, format VARCHAR, mode VARCHAR, status VARCHAR, n_rows INTEGER, n_bad_rows INTEGER,
        report JSON
    );
    CREATE TABLE embedding_cache (
        encoder_fp VARCHAR NOT NULL, content_hash VARCHAR NOT NULL, vector BLOB NOT NULL, tokens BLOB,
        PRIMARY KEY (encoder_fp, content_hash)
    );
    CREATE TABLE runs (
        run_id VARCHAR PRIMARY KEY, config_name VARCHAR, config JSON, fingerprint VARCHAR, eval_set VARCHAR,
        eval_set_hash VARCHAR, seed INTEGER, device VARCHAR, status VARCHAR NOT NULL, stage VARCHAR,
        progress JSON, created_at TIMESTAMP NOT NULL, started_at TIMESTAMP, finished_at TIMESTAMP,
        heartbeat_at TIMESTAMP, pid INTEGER, error VARCHAR, log VARCHAR, environment JSON, timings JSON,
        curves JSON, threshold DOUBLE, cancel_requested BOOLEAN DEFAULT FALSE
    );
    CREATE TABLE scores (
        run_id VARCHAR NOT NULL, pair_id VARCHAR NOT NULL, split VARCHAR NOT NULL, score DOUBLE NOT NULL,
        PRIMARY KEY (run_id, pair_id)
    );
    CREATE TABLE run_embeddings (
        run_id VARCHAR NOT NULL, modality VARCHAR NOT NULL, item_id VARCHAR NOT NULL, vector FLOAT[] NOT NULL,
        PRIMARY KEY (run_id, modality, item_id)
    );
    CREATE TABLE metrics (
        run_id VARCHAR NOT NULL, name VARCHAR NOT NULL, slice_kind VARCHAR NOT NULL, slice_value VARCHAR NOT NULL,
        value DOUBLE, ci_low DOUBLE, ci_high DOUBLE, n INTEGER,
        PRIMARY KEY (run_id, name, slice_kind, slice_value)
    );
    CREATE TABLE run_artifacts (
        run_id VARCHAR NOT NULL, kind VARCHAR NOT NULL, payload JSON NOT NULL, PRIMARY KEY (run_id, kind)
    );
    CREATE TABLE label_errors (
        eval_set VARCHAR NOT NULL, pair_id VARCHAR NOT NULL, marked_at TIMESTAMP NOT NULL, note VARCHAR,
        PRIMARY KEY (eval_set, pair_id)
    );
    """,
    # v2: cached 2-D projections of a run's joint space (UMAP/PCA), keyed by their parameters
    """
    CREATE TABLE projections (
        run_id VARCHAR NOT NULL, params_key VARCHAR NOT NULL, params JSON NOT NULL, modality VARCHAR NOT NULL,
        item_id VARCHAR NOT NULL, x FLOAT NOT NULL, y FLOAT NOT NULL,
        PRIMARY KEY (run_id, params_key, modality, item_id)
    );
    """,
    # v3: how an eval set's pairs were made (negatives, discarded candidates, leakage between splits)
    """
    ALTER TABLE eval_sets ADD COLUMN audit JSON;
    """,
    # v4: the value an attribute-swap negative replaced and the value it put in
    """
    ALTER TABLE pairs ADD COLUMN swap_from VARCHAR;
    ALTER TABLE pairs ADD COLUMN swap_to VARCHAR;
    """,
    # v5: robustness suites: a run's test-pair metrics under each perturbation and severity, against the clean run
    """
    CREATE TABLE robustness (
        run_id VARCHAR NOT NULL, perturbation VARCHAR NOT NULL, modality VARCHAR NOT NULL, severity INTEGER NOT NULL,
        seed INTEGER NOT NULL, metric VARCHAR NOT NULL, value DOUBLE, ci_low DOUBLE, ci_high DOUBLE,
        clean_value DOUBLE, clean_ci_low DOUBLE, clean_ci_high DOUBLE, drop DOUBLE, drop_ci_low DOUBLE,
        drop_ci_high DOUBLE, n INTEGER, n_items INTEGER, n_changed INTEGER, computed_at TIMESTAMP NOT NULL,
        PRIMARY KEY (run_id, perturbation, severity, seed, metric)
    );
    """,
    # v6: the resolved options of a run's plug-ins (encoders and fusion head, defaults filled in)
    """
    ALTER TABLE runs ADD COLUMN resolved JSON;
    """,
    # v7: what people call a run: an editable name, tags (a JSON list of strings) and free-text notes
    """
    ALTER TABLE runs ADD COLUMN name VARCHAR;
    ALTER TABLE runs ADD COLUMN tags JSON;
    ALTER TABLE runs ADD COLUMN notes VARCHAR;
    """,
    # v8: people's annotations of eval-set products (tags) and named views (a gallery filter and/or a selection)
    """
    CREATE TABLE item_tags (
        eval_set VARCHAR NOT NULL, product_id VARCHAR NOT NULL, tag VARCHAR NOT NULL, tagged_at TIMESTAMP NOT NULL,
        PRIMARY KEY (eval_set, product_id, tag)
    );
    CREATE TABLE saved_views (
        eval_set VARCHAR NOT NULL, name VARCHAR NOT NULL, filters JSON, products JSON,
        created_at TIMESTAMP NOT NULL, PRIMARY KEY (eval_set, name)
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class StoreLockedError(RuntimeError):
    """The database file stayed locked by another process for longer than the timeout."""


def resolve_db_path(db: str | os.PathLike[str] | None = None) -> Path:
    """``db`` if given, else ``$WORKBENCH_DB``, else ``data/workbench.duckdb`` under the current directory."""
    return Path(db or os.environ.get(ENV_DB) or DEFAULT_DB).expanduser().resolve()


_migrated: set[Path] = set()
_migrate_lock = threading.Lock()
# DuckDB shares one database instance between the connections of a process; creating or destroying it while
# another thread connects can leave a connection without the Python scan functions ("python_arrow_scan does
# not exist"), so opening and closing are serialised. Queries themselves run concurrently.
_open_close_lock = threading.Lock()


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "could not set lock" in text or "conflicting lock" in text


def _open(path: Path, timeout: float, on_wait: Callable[[str], None] | None) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + timeout
    delay = 0.05
    warned = False
    while True:
        try:
            with _open_close_lock:
                return duckdb.connect(str(path))
        except duckdb.IOException as exc:
            if not _is_lock_error(exc):
                raise
            if time.monotonic() > deadline:
                raise StoreLockedError(
                    f"The database {path} is locked by another process (another `python -m workbench` command "
                    f"or app writing to it) and stayed locked for {timeout:.0f} s. Wait for it to finish, or "
                    f"use a different database with --db PATH / {ENV_DB}. ({exc})"
                ) from exc
            if not warned:
                message = f"Database {path} is busy (locked by another process); retrying…"
                (on_wait or (lambda m: print(m, file=sys.stderr)))(message)
                warned = True
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


@contextmanager
def connect(
    db: str | os.PathLike[str] | None = None,
    *,
    timeout: float = LOCK_TIMEOUT_S,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the database (creating and migrating it on first use), yield a connection, close it afterwards."""
    path = resolve_db_path(db)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = _open(path, timeout, on_wait)
    try:
        if path not in _migrated:
            with _migrate_lock:
                migrate(con)
                _migrated.add(path)
        yield con
    finally:
        with _open_close_lock:
            con.close()


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """All-or-nothing: commit on success, roll back on any exception (including KeyboardInterrupt)."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = con.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Apply pending migrations in order, each in its own transaction; return the resulting version."""
    current = schema_version(con)
    if current > SCHEMA_VERSION:
        raise RuntimeError(
            f"Database schema version {current} is newer than this workbench ({SCHEMA_VERSION}); upgrade the code."
        )
    for version in range(current + 1, SCHEMA_VERSION + 1):
        with transaction(con):
            con.execute(MIGRATIONS[version - 1])
            con.execute("INSERT INTO schema_version VALUES (?)", [version])
    return SCHEMA_VERSION


def execute_retrying(con: duckdb.DuckDBPyConnection, sql: str, params: list | tuple = (), *, attempts: int = 20):
    """Execute a single-statement write, retrying DuckDB's optimistic-concurrency conflicts.

    Two threads updating the same row (a run's progress and its cancel flag, say) make one of them fail with
    "Conflict on update"; the statement is simply tried again after a short pause.
    """
    for attempt in range(attempts):
        try:
            return con.execute(sql, list(params))
        except duckdb.TransactionException as exc:
            if "conflict" not in str(exc).lower() or attempt == attempts - 1:
                raise
            time.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")


def insert_frame(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    """Insert a DataFrame whose columns name columns of ``table`` (a constant from this codebase)."""
    if frame.empty:
        return
    columns = ", ".join(frame.columns)
    con.register("_insert_frame", frame)
    try:
        con.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM _insert_frame")
    finally:
        con.unregister("_insert_frame")


def query_frame(con: duckdb.DuckDBPyConnection, sql: str, params: list | tuple = ()) -> pd.DataFrame:
    return con.execute(sql, list(params)).df()
