"""The import graph of dtec: no module imports itself back, even from inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import dtec

PACKAGE = Path(dtec.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(source: str, name: str, is_package: bool, modules: set[str]) -> set[str]:
    """Return the dtec modules a module imports anywhere (top level or in a function).

    Imports under `if TYPE_CHECKING:` are left out: they name types for checkers and never run.
    """
    package = name if is_package else name.rpartition(".")[0]
    tree = ast.parse(source)
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for statement in node.body
        for inner in ast.walk(statement)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # `from dtec.x import y` imports dtec.x.y when y is a module, else dtec.x.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                       for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    """Return each dtec module with the dtec modules it imports."""
    paths = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "_data" not in p.parts}
    return {
        name: _imports(path.read_text(encoding="utf-8"), name, path.name == "__init__.py", set(paths))
        for name, path in paths.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return the strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_cycles() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_finder_sees_a_cycle_through_a_function_level_import() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    modules = set(import_graph())
    source = "def f():\n    from dtec.machines.load import Catalog\n"
    assert _imports(source, "dtec.machines.model", False, modules) == {"dtec.machines.load"}
    typed = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from dtec.plan import Plan\n"
    assert _imports(typed, "dtec.backends.checks", False, modules) == set()
    relative = "from . import load\nfrom .model import Node\n"
    assert _imports(relative, "dtec.machines", True, modules) == {
        "dtec.machines.load", "dtec.machines.model"}


def test_the_front_end_imports_no_later_pass() -> None:
    """Parse, load and check (dtec.syntax, dtec.lang) know nothing of machines, plans or backends."""
    graph = import_graph()
    front = [m for m in graph if m.startswith(("dtec.syntax", "dtec.lang"))]
    seen, todo = set(front), list(front)
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    later = ("dtec.machines", "dtec.plan", "dtec.backends", "dtec.ir", "dtec.compiler")
    assert sorted(m for m in seen if m.startswith(later)) == []


def test_one_did_you_mean() -> None:
    """Every "did you mean" goes through dtec.suggest, so all of them match names the same way."""
    users = sorted(
        _module_name(p) for p in PACKAGE.rglob("*.py")
        if "get_close_matches" in p.read_text(encoding="utf-8") and "_data" not in p.parts
    )
    assert users == ["dtec.suggest"]
