"""Fixtures of the viz tests: the shared part-2 database (see part2_data.py) and a private copy of it."""

from __future__ import annotations

from pathlib import Path

import pytest
from part2_data import Part2DB, build, copy_db


@pytest.fixture(scope="session")
def part2_db(tmp_path_factory: pytest.TempPathFactory) -> Part2DB:
    return build(tmp_path_factory)


@pytest.fixture
def part2_copy(part2_db: Part2DB, tmp_path: Path) -> Part2DB:
    return copy_db(part2_db, tmp_path / "copy")
