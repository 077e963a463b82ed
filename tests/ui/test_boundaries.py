"""The app's boundaries, read from the source: pages import only ``workbench.ui``, Streamlit lives only in
``workbench/ui/``, and every cached read is in ``workbench/ui/cache.py``, bounded, and never cleared wholesale."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["Home.py", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "pages").glob("*.py"))]
LIBRARY = sorted((ROOT / "workbench").rglob("*.py"))
UI = ROOT / "workbench" / "ui"


def _imports(tree: ast.AST) -> set[str]:
    """Every module imported anywhere in a file (module level and inside functions alike)."""
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def _parse(path: Path) -> ast.AST:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _cache_decorators(tree: ast.AST) -> list[tuple[str, ast.Call | ast.Attribute]]:
    """(function name, decorator) for every ``st.cache_data``/``st.cache_resource`` decorator."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if isinstance(target, ast.Attribute) and target.attr in ("cache_data", "cache_resource"):
                    found.append((node.name, decorator))
    return found


def test_every_page_is_covered():
    assert len(PAGES) >= 8 and {"Home.py", "pages/1_Eval_sets.py", "pages/7_Reports.py"} <= set(PAGES)


@pytest.mark.parametrize("page", PAGES)
def test_a_page_imports_only_streamlit_and_workbench_ui(page: str):
    source = (ROOT / page).read_text(encoding="utf-8")
    modules = _imports(ast.parse(source))
    outside = {m for m in modules if m not in ("__future__", "streamlit")
               and m != "workbench.ui" and not m.startswith("workbench.ui.")}
    assert not outside, f"{page} imports {sorted(outside)}; reach the library through workbench.ui"
    assert "init_page(" in source
    assert len(source.splitlines()) < 200


def test_streamlit_is_imported_only_inside_workbench_ui():
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in _imports(_parse(p)) if m.split(".")[0] == "streamlit")
                 for p in LIBRARY if UI not in p.parents}
    assert not {k: v for k, v in offenders.items() if v}


def test_the_checks_see_imports_inside_functions():
    tree = ast.parse("def f():\n    import streamlit as st\n    from workbench.data import uploads\n")
    assert _imports(tree) == {"streamlit", "workbench.data"}


def test_every_cached_read_lives_in_the_cache_module_and_is_bounded():
    elsewhere = {str(p.relative_to(ROOT)): [name for name, _ in _cache_decorators(_parse(p))]
                 for p in [*LIBRARY, *(ROOT / page for page in PAGES)] if p != UI / "cache.py"}
    assert not {k: v for k, v in elsewhere.items() if v}
    cached = _cache_decorators(_parse(UI / "cache.py"))
    assert len(cached) >= 20
    unbounded = [name for name, decorator in cached
                 if not isinstance(decorator, ast.Call) or "max_entries" not in {k.arg for k in decorator.keywords}]
    assert not unbounded


def test_no_page_or_module_clears_every_cache():
    for path in [*LIBRARY, *(ROOT / page for page in PAGES)]:
        for node in ast.walk(_parse(path)):
            if isinstance(node, ast.Attribute) and node.attr == "clear" and isinstance(node.value, ast.Attribute):
                assert node.value.attr not in ("cache_data", "cache_resource"), f"{path}: a global cache clear"
