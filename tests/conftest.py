"""Shared fixtures: a temporary database and a tiny stored demo catalogue."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see workbench/__init__.py; before any test imports torch
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


@pytest.fixture(scope="session")
def two_runs_db(tmp_path_factory: pytest.TempPathFactory):
    """A 30-product catalogue with two finished runs (see two_runs.py); treat as read-only."""
    from two_runs import build

    return build(tmp_path_factory)


@pytest.fixture
def two_runs_copy(two_runs_db, tmp_path: Path):
    """A private, writable copy of the two-runs database."""
    from two_runs import copy_db

    return copy_db(two_runs_db, tmp_path / "copy")


@pytest.fixture
def app_env(two_runs_copy, monkeypatch: pytest.MonkeyPatch):
    """The private copy, with WORKBENCH_DB pointing at it for AppTest pages."""
    monkeypatch.setenv("WORKBENCH_DB", str(two_runs_copy.path))
    return two_runs_copy


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plug-ins registered inside a test disappear after it, so registry sweeps see only the built-ins."""
    from workbench.models import base

    monkeypatch.setattr(base, "_REGISTRY", dict(base._registry()))
