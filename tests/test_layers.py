"""The packages of `lab` import one another in layers: no import runs back up.

A package is `lab.<name>` (a subpackage such as `lab.channel`, or a top-level module such as
`lab.state`, a node of its own). Every `import lab.x...` and `from lab.x... import y` in every module
under lab/ counts, at module level, under `if TYPE_CHECKING:` and inside functions alike: a deferred
import is still a dependency. Imports by string (`importlib.import_module`) are not read; the two in
lab/ (the CLI's commands, the checker's views) load modules of their own package.

The package graph must have no cycle. Two that were removed are also pinned in their direction, so that
neither comes back the other way round:

- `lab.pki` (the lab CA, and reading a certificate whole) is below `lab.channel`, whose client runs the
  identity checks and keeps the known_hosts pins (`lab.channel.verify`, `lab.channel.pins`);
- `lab.bank` (the ledger, the bank's side of a session, the HTTPS bank) is below `lab.state`, which makes
  the bank's ledger in the state directory; the server role hands the HTTPS bank its files.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

LAB = Path(__file__).resolve().parent.parent / "lab"

FORBIDDEN_UPWARD: dict[tuple[str, str], str] = {
    ("lab.pki", "lab.channel"): "the channel reads certificates with lab.pki and checks them itself",
    ("lab.bank", "lab.state"): "lab.state makes the bank's ledger; the server role hands the bank its files",
}
"""Edges that must not exist: (importer, imported) -> why the import goes the other way."""

Edges = dict[tuple[str, str], list[str]]
"""(importing package, imported package) -> where: `path:line` of each import."""


def module_name(path: Path) -> str:
    parts = path.relative_to(LAB.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(module: str) -> str:
    """`lab.channel.connection` -> `lab.channel`; `lab.state` -> itself; `lab` -> itself."""
    return ".".join(module.split(".")[:2])


def imported_modules(tree: ast.Module, module: str, is_package: bool) -> Iterator[tuple[str, int]]:
    """Every lab module or package this module imports, anywhere in it, with the line."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            if source == "lab":  # `from lab import events` imports the module lab.events
                for alias in node.names:
                    yield f"lab.{alias.name}", node.lineno
            else:
                yield source, node.lineno


@functools.cache
def lab_package_edges() -> Edges:
    """Parsed once for the module's tests: every lab file, about 0.2 s."""
    top_level = {p.stem for p in LAB.glob("*.py")} | {p.name for p in LAB.iterdir() if p.is_dir()}
    edges: Edges = {}
    for path in sorted(LAB.rglob("*.py")):
        module = module_name(path)
        tree = ast.parse(path.read_text(), filename=str(path))
        for imported, line in imported_modules(tree, module, path.name == "__init__.py"):
            parts = imported.split(".")
            if parts[0] != "lab":
                continue
            # `from lab import __version__` is the root package, not a module of it
            target = package_of(imported) if len(parts) > 1 and parts[1] in top_level else "lab"
            source = package_of(module)
            if target != source:
                edges.setdefault((source, target), []).append(f"{path.relative_to(LAB.parent)}:{line}")
    return edges


def cycles(edges: Mapping[tuple[str, str], Sequence[str]]) -> list[list[str]]:
    """The strongly connected components of more than one package (Tarjan), each sorted."""
    graph: dict[str, list[str]] = {}
    for source, target in sorted(edges):
        graph.setdefault(source, []).append(target)
        graph.setdefault(target, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def describe(edges: Mapping[tuple[str, str], Sequence[str]], component: Sequence[str]) -> str:
    inside = sorted((s, t) for s, t in edges if s in component and t in component)
    lines = [f"  {s} -> {t}  ({', '.join(edges[s, t])})" for s, t in inside]
    return f"cycle between {', '.join(component)}:\n" + "\n".join(lines)


def test_the_import_reader_sees_imports_of_every_form() -> None:
    edges = lab_package_edges()
    assert ("lab.channel", "lab.pki") in edges  # from lab.pki.parse import ... (module level)
    assert ("lab.state", "lab.bank") in edges  # from lab.bank.ledger import Ledger
    assert ("lab.roles", "lab.events") in edges  # from lab import events
    assert len({source for source, _ in edges}) > 10


def test_the_import_reader_sees_deferred_and_relative_imports() -> None:
    source = """
from typing import TYPE_CHECKING
from . import frames
from ..pki import parse
if TYPE_CHECKING:
    from lab.state import StateDir
def later():
    import lab.bank.ledger
"""
    found = dict(imported_modules(ast.parse(source), "lab.channel.connection", is_package=False))
    assert found == {
        "typing": 2,
        "lab.channel": 3,  # `from . import frames`: the package; its names are what it imports
        "lab.pki": 4,
        "lab.state": 6,
        "lab.bank.ledger": 8,
    }


def test_the_cycle_finder_names_the_edges_of_a_cycle() -> None:
    edges = {
        ("lab.a", "lab.b"): ["lab/a/x.py:3"],
        ("lab.b", "lab.a"): ["lab/b/y.py:9"],
        ("lab.b", "lab.c"): [],
    }
    assert cycles(edges) == [["lab.a", "lab.b"]]
    assert describe(edges, ["lab.a", "lab.b"]) == (
        "cycle between lab.a, lab.b:\n  lab.a -> lab.b  (lab/a/x.py:3)\n  lab.b -> lab.a  (lab/b/y.py:9)"
    )
    assert cycles({("lab.a", "lab.b"): [], ("lab.b", "lab.c"): []}) == []


def test_no_package_of_lab_imports_one_that_imports_it_back() -> None:
    edges = lab_package_edges()
    found = cycles(edges)
    assert not found, "imports run back up:\n" + "\n".join(describe(edges, c) for c in found)


def test_the_removed_upward_imports_stay_removed() -> None:
    edges = lab_package_edges()
    upward = [
        f"{source} -> {target} ({', '.join(edges[source, target])}): {why}"
        for (source, target), why in FORBIDDEN_UPWARD.items()
        if (source, target) in edges
    ]
    assert not upward, "an import runs back up:\n" + "\n".join(upward)
