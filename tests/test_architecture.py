"""No import cycles between modules of bot, commands and notifiers.

import-linter checks the layers (pyproject); this checks what layers cannot see: two modules of
one layer, or a package and its own submodules, importing each other. The graph is grimp's
(import-linter's own), which counts every import statement: module level, inside functions, and
under ``if TYPE_CHECKING:``, since a type-only cycle is still two modules that cannot be
understood apart. A package is a node of its own (its ``__init__``), so a package importing a
submodule that imports the package back is a cycle like any other.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator

import grimp
import pytest

PACKAGES = ("bot", "commands", "notifiers")

# Cycles that may exist for now, each with the reason and when it goes. Keep this list short:
# a cycle means two modules that must change together; break it with a lower module holding what
# both need, or by passing an object down at wiring time.
ALLOWED_CYCLES: dict[frozenset[str], str] = {}


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, cache_dir=None)


def strongly_connected(graph: grimp.ImportGraph) -> Iterator[frozenset[str]]:
    """Tarjan's algorithm, iterative; yields the components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append(
                        (child, iter(sorted(graph.find_modules_directly_imported_by(child))))
                    )
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        yield frozenset(component)


def one_cycle(graph: grimp.ImportGraph, component: frozenset[str]) -> list[str]:
    """A shortest import loop through the component's first module, for the failure message."""
    start = min(component)
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph.find_modules_directly_imported_by(node)):
            if child not in component:
                continue
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if child not in came_from:
                came_from[child] = node
                queue.append(child)
    raise AssertionError(f"no loop through {start}")  # a component always has one


def describe(graph: grimp.ImportGraph, cycle: list[str]) -> str:
    lines = []
    for importer, imported in itertools.pairwise(cycle):
        details = graph.get_import_details(importer=importer, imported=imported)
        where = ", ".join(f"line {d['line_number']}: {d['line_contents']}" for d in details)
        lines.append(f"  {importer} -> {imported}  ({where})")
    return "\n".join(lines)


def test_no_import_cycles(graph: grimp.ImportGraph) -> None:
    found = [c for c in strongly_connected(graph) if c not in ALLOWED_CYCLES]
    report = [f"cycle of {len(c)} modules:\n{describe(graph, one_cycle(graph, c))}" for c in found]
    assert not found, "import cycles:\n" + "\n".join(report)


def test_allowed_cycles_still_exist(graph: grimp.ImportGraph) -> None:
    """An exception whose cycle is gone must leave the list, so the list stays the truth."""
    present = set(strongly_connected(graph))
    stale = [sorted(c) for c in ALLOWED_CYCLES if c not in present]
    assert not stale, f"these cycles are gone; remove them from ALLOWED_CYCLES: {stale}"


def test_the_cycle_finder_finds_type_only_and_package_cycles() -> None:
    """The check itself: a cycle through a TYPE_CHECKING import and one between a package and
    its submodule are both reported, with the loop spelled out."""
    g = grimp.ImportGraph()
    for m in ("pkg", "pkg.a", "pkg.b", "pkg.c", "other"):
        g.add_module(m)
    g.add_import(importer="pkg.a", imported="pkg.b", line_number=3, line_contents="import pkg.b")
    g.add_import(
        importer="pkg.b", imported="pkg.a", line_number=9, line_contents="from pkg.a import A"
    )  # under TYPE_CHECKING in real code: grimp records it all the same
    g.add_import(importer="pkg", imported="pkg.c", line_number=1, line_contents="from pkg import c")
    g.add_import(importer="pkg.c", imported="pkg", line_number=2, line_contents="import pkg")
    g.add_import(importer="other", imported="pkg.a", line_number=1, line_contents="import pkg.a")
    components = set(strongly_connected(g))
    assert components == {frozenset({"pkg.a", "pkg.b"}), frozenset({"pkg", "pkg.c"})}
    assert one_cycle(g, frozenset({"pkg.a", "pkg.b"})) == ["pkg.a", "pkg.b", "pkg.a"]
    text = describe(g, one_cycle(g, frozenset({"pkg", "pkg.c"})))
    assert "pkg -> pkg.c  (line 1: from pkg import c)" in text
    assert "pkg.c -> pkg  (line 2: import pkg)" in text


def test_every_package_says_what_lives_there(graph: grimp.ImportGraph) -> None:
    """Each package's ``__init__`` has a docstring: what lives there, what it may import."""
    import importlib

    packages = sorted(m for m in graph.modules if graph.find_children(m))
    missing = [p for p in packages if not (importlib.import_module(p).__doc__ or "").strip()]
    assert packages and not missing, f"packages without a docstring: {missing}"
