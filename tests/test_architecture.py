"""The house's rules, read from the code: the package's import graph has no circle, and only the place where a run is
configured chooses the sample (the pipeline's rooms never import it)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import ROOT

PACKAGE = ROOT / "stockpipe"
# Where a run is configured (its source chosen), and the test support that is the sample with faults switched on.
MAY_IMPORT_THE_SAMPLE = {"stockpipe.cli", "stockpipe.testing"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package's modules this file imports, at its top or inside a function (a lazy import is still an edge)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                 else [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
        if isinstance(node, ast.ImportFrom) and node.module:
            names += [f"{node.module}.{alias.name}" for alias in node.names]  # `from pkg import module`
        found |= {name for name in names if name in modules}
    return found


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    return {name: imports_of(path, modules) - {name} for name, path in files.items()}


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A circle of imports, if there is one (depth-first search with the path on a stack)."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            # A package's __init__ re-exporting its own modules is how Python packages are built, not a circle.
            if node.startswith(target + "."):
                continue
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_packages_import_graph_has_no_circle():
    edges = graph()
    assert len(edges) > 40
    assert cycle(edges) is None, " -> ".join(cycle(edges) or [])


def test_the_cycle_finder_finds_a_circle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_no_room_of_the_pipeline_imports_the_sample():
    """The source is chosen once, where the run is configured: the fetch, the harvest and the rest see an endpoint."""
    edges = graph()
    importers = {name for name, targets in edges.items()
                 if any(t == "stockpipe.sample" or t.startswith("stockpipe.sample.") for t in targets)
                 and not name.startswith("stockpipe.sample")}
    assert importers <= MAY_IMPORT_THE_SAMPLE, sorted(importers - MAY_IMPORT_THE_SAMPLE)
