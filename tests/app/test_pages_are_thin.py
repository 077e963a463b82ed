"""Pages are layout plus calls into workbench.*: no numpy/torch/duckdb/pandas, init_page, < 200 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["Home.py", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "pages").glob("*.py"))]


def test_every_page_is_covered():
    assert len(PAGES) == 8


@pytest.mark.parametrize("page", PAGES)
def test_page_is_thin(page: str):
    source = (ROOT / page).read_text(encoding="utf-8")
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module.split(".")[0])
    assert not modules & {"numpy", "torch", "duckdb", "pandas", "sklearn", "umap"}, modules
    assert "init_page(" in source
    assert len(source.splitlines()) < 200
