"""Shared fixtures: a temporary database and a tiny stored demo catalogue."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A fresh DuckDB file in a temp dir."""
    return tmp_path / "wb.duckdb"


@pytest.fixture(scope="session")
def catalog_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A session-wide database holding a 40-product synthetic catalogue named 'tiny' (treat as read-only)."""
    from workbench.data.evalsets import create_catalog_eval_set

    path = tmp_path_factory.mktemp("catalog") / "wb.duckdb"
    create_catalog_eval_set("tiny", db=path, n_products=40, seed=3)
    return path, "tiny"
