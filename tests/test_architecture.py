"""The package's shape (issue 15): no import circle, no import inside a function body, layers.

The import graph is built from the source with :mod:`ast` (every ``import`` / ``from ... import``
in ``vmemlab/**.py``, at module level or inside a function), not from ``sys.modules``, so an
import hidden in a function body counts.  Imports under ``if TYPE_CHECKING:`` are the kernel's
forward declarations (``struct page;``): they never run and are left out of the cycle check.
Expected values are the rules themselves (ARCHITECTURE.md), checked on the files as they are.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "vmemlab"

#: optional heavy dependencies a function body may import (the engine never needs them)
HEAVY = ("matplotlib", "ipywidgets", "IPython")


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    line: int
    kind: str  # "top", "func" (inside a function body) or "typing" (under TYPE_CHECKING)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_module(name: str) -> bool:
    p = ROOT / Path(*name.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def imports_of(path: Path) -> list[Edge]:
    """Every import statement of ``path`` as edges to the modules it names (``from . import
    gup`` names ``vmemlab.gup``)."""
    src = module_name(path)
    package = src.split(".") if path.name == "__init__.py" else src.split(".")[:-1]
    out: list[Edge] = []

    def targets(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        if node.level:
            base = package[: len(package) - (node.level - 1)]
            mod = ".".join(base + ([node.module] if node.module else []))
        else:
            mod = node.module or ""
        subs = [f"{mod}.{a.name}" for a in node.names if _is_module(f"{mod}.{a.name}")]
        return subs if subs and len(subs) == len(node.names) else [mod, *subs]

    def visit(node: ast.AST, in_func: bool, typing_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for b in child.body:
                    visit_one(b, in_func, True)
                for b in child.orelse:
                    visit_one(b, in_func, typing_only)
                continue
            visit_one(child, in_func, typing_only)

    def visit_one(node: ast.AST, in_func: bool, typing_only: bool) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            kind = "typing" if typing_only else ("func" if in_func else "top")
            out.extend(Edge(src, t, node.lineno, kind) for t in targets(node))
        visit(node, in_func or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                 ast.Lambda)), typing_only)

    visit(ast.parse(path.read_text()), False, False)
    return out


def all_edges() -> list[Edge]:
    return [e for p in sorted(PKG.rglob("*.py")) for e in imports_of(p)]


def is_vmemlab(name: str) -> bool:
    return name == "vmemlab" or name.startswith("vmemlab.")


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a list of nodes (first == last), or None (iterative DFS)."""
    colour: dict[str, int] = {}
    for start in sorted(graph):
        if colour.get(start):
            continue
        stack = [(start, iter(sorted(graph.get(start, ()))))]
        path = [start]
        colour[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                colour[node] = 2
                stack.pop()
                path.pop()
                continue
            if colour.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if not colour.get(nxt):
                colour[nxt] = 1
                stack.append((nxt, iter(sorted(graph.get(nxt, ())))))
                path.append(nxt)
    return None


def runtime_graph(edges: list[Edge]) -> dict[str, set[str]]:
    """Module -> vmemlab modules it imports when it runs (top level and function bodies).  An
    edge to one's own parent package is dropped: Python has initialised the parent before any
    of its submodules runs."""
    g: dict[str, set[str]] = {}
    for e in edges:
        if e.kind == "typing" or not is_vmemlab(e.dst) or e.src.startswith(e.dst + "."):
            continue
        g.setdefault(e.src, set()).add(e.dst)
    return g


def test_the_graph_sees_function_body_imports():
    """The checker itself: a cycle made of a top-level and a function-body import is found,
    and a ``TYPE_CHECKING`` import is classified as typing, not as a runtime edge."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    tree = imports_of(PKG / "memory_hotplug.py")
    kinds = {(e.dst, e.kind) for e in tree}
    assert ("vmemlab.machine", "typing") in kinds
    assert ("vmemlab.errors", "top") in kinds


def test_no_import_cycle():
    cycle = find_cycle(runtime_graph(all_edges()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_function_body_import_of_vmemlab():
    """Imports inside a function body are for optional heavy dependencies only."""
    bad = [f"{e.src}:{e.line} imports {e.dst}" for e in all_edges()
           if e.kind == "func" and is_vmemlab(e.dst)]
    assert not bad, "\n".join(bad)


def test_function_body_imports_are_heavy_optional_deps():
    bad = [f"{e.src}:{e.line} imports {e.dst}" for e in all_edges()
           if e.kind == "func" and not e.dst.startswith(HEAVY)]
    assert not bad, "\n".join(bad)


def _layer(mod: str) -> str:
    if mod.startswith("vmemlab.viz"):
        return "viz"
    if mod.startswith("vmemlab.widgets"):
        return "widgets"
    if mod in ("vmemlab.cli", "vmemlab.__main__"):
        return "cli"
    if mod == "vmemlab":
        return "package"
    return "engine"


@pytest.mark.parametrize("layer, forbidden", [
    ("engine", ("vmemlab.viz", "vmemlab.widgets", "vmemlab.cli", "matplotlib", "ipywidgets",
                "IPython")),
    ("viz", ("vmemlab.widgets", "vmemlab.cli", "ipywidgets")),
    ("widgets", ("vmemlab.cli",)),
])
def test_layers(layer, forbidden):
    """engine -> viz -> widgets -> cli: a layer imports only those before it (any import,
    typing-only included)."""
    bad = [f"{e.src}:{e.line} imports {e.dst}" for e in all_edges()
           if _layer(e.src) == layer and e.dst.startswith(forbidden)]
    assert not bad, "\n".join(bad)


def test_headers_call_down_only():
    """``vmemlab.include`` (the kernel headers) imports only the base modules and itself."""
    allowed = ("vmemlab.include", "vmemlab.errors", "vmemlab.units")
    bad = [f"{e.src}:{e.line} imports {e.dst}" for e in all_edges()
           if e.src.startswith("vmemlab.include") and e.kind != "typing" and is_vmemlab(e.dst)
           and not e.dst.startswith(allowed)]
    assert not bad, "\n".join(bad)


def test_modules_at_most_600_lines():
    """One job per module: no module of the package over 600 lines (widgets/base.py was the
    last exception; its rendering machinery now lives in widgets/render.py)."""
    long = {str(p.relative_to(ROOT)): len(p.read_text().splitlines())
            for p in PKG.rglob("*.py")}
    over = {k: n for k, n in long.items() if n > 600}
    assert not over, over
