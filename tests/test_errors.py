"""Every exception class callvault defines derives from CallvaultError, and the tree in
callvault/errors.py names each of them."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import callvault.errors
from callvault.errors import CallvaultError

ROOT = Path(__file__).resolve().parent.parent


def _exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for package in ("callvault", "streams", "storage", "policies"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] in ("__init__", "__main__"):
                continue
            module = importlib.import_module(".".join(parts))
            for name, value in vars(module).items():
                if (
                    inspect.isclass(value)
                    and issubclass(value, BaseException)
                    and value.__module__ == module.__name__
                ):
                    found[f"{module.__name__}.{name}"] = value
    return found


def test_every_exception_derives_from_the_root() -> None:
    classes = _exception_classes()
    assert len(classes) > 30
    assert sorted(n for n, c in classes.items() if not issubclass(c, CallvaultError)) == []


def test_the_tree_names_every_public_exception() -> None:
    tree = callvault.errors.__doc__ or ""
    public = {name.rpartition(".")[2] for name in _exception_classes()}
    public = {name for name in public if not name.startswith("_")}
    assert sorted(name for name in public if name not in tree) == []
