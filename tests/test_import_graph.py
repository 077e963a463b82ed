"""The library's import graph: no cycle inside ``workbench/`` (module-level and function-level imports alike,
package ``__init__`` re-exports included), and evaluation stays below the run package."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "workbench"


def module_names() -> dict[str, Path]:
    """Dotted name of every module under workbench/ (a package is its ``__init__``)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imported_modules(name: str, path: Path, modules: set[str]) -> set[str]:
    """The workbench modules ``name`` imports anywhere in its body.

    ``from pkg import x`` is an edge to ``pkg.x`` when that is a module, else to ``pkg`` (whose ``__init__`` must
    run to provide ``x``); relative imports are resolved against the module's package.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    edges = set()
    for target in targets:
        while target and target not in modules:  # `import workbench.x.y` of a name inside a module
            target = target.rpartition(".")[0]
        if target and target != name:
            edges.add(target)
    return edges


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    names = set(modules)
    return {name: imported_modules(name, path, names) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path ``[a, b, …, a]``, or None when the graph is acyclic (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for root in sorted(graph):
        if state.get(root):
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            child = next(stack[-1], None)
            if child is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(child) == 1:
                return path[path.index(child):] + [child]
            elif not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append(iter(sorted(graph[child])))
    return None


def test_the_cycle_finder_finds_cycles_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"b", "c"}}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"a2"}, "a2": set(), "p": {"q"}, "q": {"p"}}) == ["p", "q", "p"]


def test_edges_cover_function_level_relative_and_package_imports(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text("from workbench import store\n\ndef f():\n    from workbench.metrics import pair_metrics\n"
                      "    from . import sibling\n    import workbench.data.model\n")
    modules = {"workbench", "workbench.store", "workbench.metrics", "workbench.pkg.sibling", "workbench.data.model",
               "workbench.pkg.mod"}
    assert imported_modules("workbench.pkg.mod", source, modules) == {
        "workbench.store", "workbench.metrics", "workbench.pkg.sibling", "workbench.data.model"}


def test_workbench_has_no_import_cycle():
    graph = import_graph()
    assert {"workbench.run.runner", "workbench.evaluation.aggregate"} <= set(graph)
    assert "workbench.evaluation.aggregate" in graph["workbench.run.runner"]  # the run calls evaluation at its end
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_evaluation_never_imports_the_run_package_or_the_models():
    graph = import_graph()
    for name, targets in graph.items():
        if name.startswith("workbench.evaluation"):
            below = {t for t in targets if t.startswith(("workbench.run", "workbench.models"))}
            assert not below, f"{name} imports {sorted(below)}"


@pytest.mark.parametrize("statement", [
    "import workbench.evaluation",
    "import pkgutil, importlib, workbench.evaluation as e; "
    "[importlib.import_module(f'workbench.evaluation.{m.name}') for m in pkgutil.iter_modules(e.__path__)]",
])
def test_importing_evaluation_loads_no_run_package_and_no_torch(statement):
    check = ("import sys; loaded = [m for m in sys.modules if m.startswith(('workbench.run', 'workbench.models')) "
             "or m == 'torch']; assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", f"{statement}; {check}"], cwd=ROOT, check=True, timeout=120)
