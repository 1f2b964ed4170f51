"""Read YAML into plain data while remembering where each value was (private).

:func:`read_located` returns the data (dicts, lists, scalars as PyYAML's safe
loader builds them) plus a map from YAML path (``roles.qa-vendor.purposes[1]``)
to the 1-based line it starts on, and the problems found while reading:
syntax errors (with line and column), duplicate keys, non-string keys. A
scalar PyYAML cannot build (``2026-13-01``) is kept as its source text so the
validator can report it as malformed with its location.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = ["Located", "read_located", "child_path"]

#: libyaml's parser when PyYAML was built with it (the wheels are): the same nodes,
#: marks and errors as the pure-Python one, about ten times faster (every process that
#: loads the policy starts sooner).
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Located:
    data: Any = None
    lines: dict[str, int] = field(default_factory=dict)
    # (path, line, message); the loader turns them into Problems
    problems: list[tuple[str, int | None, str]] = field(default_factory=list)
    built: int = 0  # values built so far (aliases count each time they are expanded)
    too_deep: bool = False  # the nesting problem was reported (once)


def child_path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def read_located(text: str) -> Located:
    """Parse one YAML document from ``text`` (never raises for bad YAML: see ``problems``)."""
    located = Located()
    try:
        loader = _Loader(text)
    except UnicodeEncodeError as exc:  # libyaml takes UTF-8: a lone surrogate
        located.problems.append(("", None, f"YAML error: not valid text ({exc.reason})"))
        return located
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else None
            where = f" (column {mark.column + 1})" if mark else ""
            what = " ".join(str(part) for part in (exc.context, exc.problem) if part)
            located.problems.append(("", line, f"YAML syntax error{where}: {what}"))
            return located
        except yaml.YAMLError as exc:
            located.problems.append(("", None, f"YAML error: {exc}"))
            return located
        if node is None:
            located.problems.append(("", 1, "the policy file is empty"))
            return located
        located.data = _build(loader, node, "", located, ())
        return located
    finally:
        loader.dispose()


#: deepest nesting of a policy's values (it needs 5; libyaml itself allows 1000, deeper
#: than Python's recursion can build)
MAX_DEPTH = 32

#: values an alias may expand the document to (a policy has a few hundred): beyond it,
#: an alias bomb, reported instead of built
MAX_VALUES = 100_000


def _build(
    loader: yaml.SafeLoader, node: yaml.Node, path: str, located: Located, inside: tuple[int, ...]
) -> Any:
    """``node`` as plain data; ``inside`` holds the ids of the nodes containing it (an
    alias to one of them would nest forever)."""
    line = node.start_mark.line + 1
    located.lines.setdefault(path, line)
    located.built += 1
    if located.built == MAX_VALUES + 1:
        located.problems.append((path, line, f"more than {MAX_VALUES} values (aliases?)"))
    if located.built > MAX_VALUES:
        return None
    if id(node) in inside:
        located.problems.append((path, line, "an alias refers to a value that contains it"))
        return None
    if len(inside) >= MAX_DEPTH:  # a policy nests 5 deep; 900 exhausted Python's recursion
        if not located.too_deep:
            located.too_deep = True
            located.problems.append((path, line, f"nested deeper than {MAX_DEPTH} levels"))
        return None
    inside = (*inside, id(node))
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolve YAML merge keys (<<)
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(loader, key_node) if isinstance(key_node, yaml.ScalarNode) else None
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                located.problems.append(
                    (path, line, f"keys must be strings, got {key_node.value!r}")
                )
                continue
            child = child_path(path, key)
            if key in result:
                located.problems.append((child, line, f"duplicate key {key!r}"))
                continue
            located.lines[child] = line
            result[key] = _build(loader, value_node, child, located, inside)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(loader, item, child_path(path, index), located, inside)
            for index, item in enumerate(node.value)
        ]
    return _scalar(loader, node)


def _scalar(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    try:
        return loader.construct_object(node, deep=True)
    except (ValueError, TypeError, yaml.constructor.ConstructorError):
        # e.g. an impossible date: keep the text, the validator reports it in context
        return node.value
