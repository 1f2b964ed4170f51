"""Bounds on everything a sender controls: JSON size and depth, text, call times.

Every input from outside (events on ``callvault.recordings``, HTTP bodies and query
parameters, privacy requests on the topic) passes these checks before anything else
reads it, so no value can reach a codec, a database driver or a hash function that
would fail on it (a lone surrogate cannot be encoded to UTF-8, year 1 cannot move to
UTC, 60 KB of ``[`` exhausts the parser's recursion).

What a caller may rely on:

- :func:`load_json` parses at most ``max_bytes`` of JSON nested at most ``max_depth``
  deep (default :data:`MAX_JSON_DEPTH`), without ``NaN``/``Infinity``, and with every
  string (keys too) free of lone surrogates, NUL and control characters (tab, CR and
  LF are allowed with ``multiline=True``). It raises :class:`InputRejected` with
  ``reason`` ``too-large``, ``malformed`` (not JSON, too deep) or ``bad-text``, and a
  ``detail`` naming the JSON path, never the value.
- :func:`text_problem` says what is wrong with one string (or ``None``).
- :func:`parse_instant` reads an ISO 8601 timestamp with a UTC offset into an aware
  UTC datetime, or raises ``ValueError`` with a reason (also for years that overflow).
- :class:`TimeWindow` is the range call times may fall in: from ``earliest``
  (default 2000-01-01) to ``now + ahead`` (default one day).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from streams.errors import InputRejected

__all__ = [
    "MAX_JSON_DEPTH",
    "InputRejected",
    "TimeWindow",
    "DEFAULT_WINDOW",
    "load_json",
    "check_tree",
    "text_problem",
    "parse_instant",
]

#: Deepest nesting any JSON input may have (events need 3, privacy requests 2).
MAX_JSON_DEPTH = 16

_SURROGATE = re.compile(r"[\ud800-\udfff]")
_NUL = "\x00"
# C0 and C1 controls and DEL; the multiline form keeps tab, LF and CR.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def text_problem(value: str, *, multiline: bool = False) -> str | None:
    """What makes ``value`` unacceptable as text, or ``None`` when it is fine."""
    if _SURROGATE.search(value):
        return "contains a lone surrogate (not encodable as UTF-8)"
    if _NUL in value:
        return "contains NUL"
    if (_CONTROL_MULTILINE if multiline else _CONTROL).search(value):
        return "contains a control character"
    return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def load_json(
    raw: bytes | bytearray | str,
    *,
    max_bytes: int,
    max_depth: int = MAX_JSON_DEPTH,
    multiline: bool = True,
) -> Any:
    """Parse bounded JSON (see the module docstring).

    Raises:
        InputRejected: ``too-large``, ``malformed`` or ``bad-text``.
    """
    if len(raw) > max_bytes:
        raise InputRejected("too-large", f"larger than {max_bytes} bytes")
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise InputRejected("malformed", f"nested deeper than {max_depth} levels") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputRejected("malformed", f"not JSON: {type(exc).__name__}") from None
    check_tree(data, max_depth=max_depth, multiline=multiline)
    return data


def check_tree(data: Any, *, max_depth: int = MAX_JSON_DEPTH, multiline: bool = True) -> None:
    """Check nesting depth and every string of decoded JSON (iteratively: no recursion).

    Raises:
        InputRejected: ``malformed`` (too deep) or ``bad-text`` (path in the detail).
    """
    stack: list[tuple[Any, int, str]] = [(data, 1, "")]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, str):
            problem = text_problem(value, multiline=multiline)
            if problem:
                raise InputRejected("bad-text", f"{path or 'value'}: {problem}")
            continue
        if not isinstance(value, Mapping | list):
            continue
        if depth > max_depth:
            raise InputRejected("malformed", f"nested deeper than {max_depth} levels")
        if isinstance(value, list):
            for index, item in enumerate(value):
                stack.append((item, depth + 1, f"{path}[{index}]"))
            continue
        for key, item in value.items():
            name = str(key)
            problem = text_problem(name, multiline=False)
            if problem:
                raise InputRejected("bad-text", f"{path or 'object'}: a key {problem}")
            stack.append((item, depth + 1, f"{path}.{name}" if path else name))


def parse_instant(raw: str) -> datetime:
    """An ISO 8601 timestamp with a UTC offset (``Z`` accepted), as aware UTC.

    Raises:
        ValueError: not ISO 8601, no offset, or a time that cannot be moved to UTC.
    """
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("not an ISO 8601 timestamp") from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp needs a UTC offset")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("timestamp is outside the representable years") from None


@dataclass(frozen=True)
class TimeWindow:
    """The range call times may fall in: ``[earliest, now + ahead]``."""

    earliest: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    ahead: timedelta = timedelta(days=1)

    def __post_init__(self) -> None:
        if self.earliest.tzinfo is None:
            raise ValueError("TimeWindow.earliest must be timezone-aware")
        if self.ahead < timedelta(0):
            raise ValueError("TimeWindow.ahead must not be negative")

    def problem(self, value: datetime, now: datetime) -> str | None:
        """Why ``value`` lies outside the window (``None`` when inside)."""
        if value < self.earliest:
            return f"is before {self.earliest.date().isoformat()}"
        if value > now + self.ahead:
            return "is in the future"
        return None


DEFAULT_WINDOW = TimeWindow()
