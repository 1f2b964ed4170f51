"""The public surface of ``storage`` is explicit and pinned (httpx's test_exported_members)."""

from __future__ import annotations

import importlib
import pkgutil

import storage


def test_package_exports_exactly_its_all() -> None:
    public = {name for name in dir(storage) if not name.startswith("_")}
    modules = {m.name for m in pkgutil.iter_modules(storage.__path__)}
    assert set(storage.__all__) == public - modules
    for name in storage.__all__:
        assert getattr(storage, name) is not None


def test_every_module_declares_all_and_it_resolves() -> None:
    for info in pkgutil.iter_modules(storage.__path__):
        module = importlib.import_module(f"storage.{info.name}")
        assert hasattr(module, "__all__"), info.name
        for name in module.__all__:
            assert hasattr(module, name), f"storage.{info.name}.{name}"


def test_storage_never_imports_streams_or_policies() -> None:
    import ast
    from pathlib import Path

    for path in Path(storage.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(("streams", "policies")), f"{path.name} imports {name}"
