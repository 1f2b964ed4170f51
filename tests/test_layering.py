"""The import graph, read from the source (every import statement, also those inside
functions): no cycles, and the layers import one way.

    callvault -> streams -> policies, storage -> callvault.errors, callvault.inputfiles
    policies imports neither storage nor streams; storage imports neither streams nor
    policies; none of the three imports callvault except those two leaves.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("callvault", "streams", "storage", "policies")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module ``name`` names (a module, or the package it is in)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # "from pkg import mod" imports the module pkg.mod where there is one
            names = [f"{base}.{alias.name}" for alias in node.names] or [base]
        for name in names:
            target = _resolve(name)
            if target is not None and target != module:
                targets.add(target)
    return targets


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read() -> None:
    assert "storage.vault.s3" in GRAPH["storage.vault"]
    assert "storage.vault.base" in GRAPH["storage.vault.s3"]
    assert len(MODULES) > 60


def test_there_are_no_import_cycles() -> None:
    assert _cycles() == []


#: the leaves of callvault every layer may use: the error tree, and the reader of files
#: an operator names (callvault.inputfiles imports nothing else of callvault)
_SHARED = frozenset({"callvault.errors", "callvault.inputfiles"})


def test_the_shared_leaves_import_nothing_of_the_project_but_the_error_tree() -> None:
    assert GRAPH["callvault.errors"] == set()
    assert GRAPH["callvault.inputfiles"] == {"callvault.errors"}


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("storage", ("streams", "policies", "callvault")),
        ("policies", ("streams", "storage", "callvault")),
        ("streams", ("callvault",)),
    ],
)
def test_layers_import_one_way(layer: str, forbidden: tuple[str, ...]) -> None:
    wrong = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if module.split(".")[0] == layer
        for target in targets
        if target.split(".")[0] in forbidden and target not in _SHARED
    )
    assert wrong == []
