"""HTTP ``Range`` parsing for audio responses (RFC 9110, section 14), pure.

What a caller may rely on: :func:`parse_range` returns ``None`` when the whole
representation should be sent (no header, a header that is not a single valid
``bytes=`` range, or several ranges: multipart/byteranges is not offered, which the
RFC allows), the inclusive ``(start, end)`` to send otherwise, and raises
:class:`RangeNotSatisfiable` when a syntactically valid range selects no byte
(-> 416 with ``Content-Range: bytes */size``).
"""

from __future__ import annotations

import re

from streams.errors import RangeNotSatisfiable

__all__ = ["parse_range", "RangeNotSatisfiable", "content_range"]

_SPEC = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE | re.ASCII)
_MAX_DIGITS = 19


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Inclusive byte range selected by ``header`` in a ``size``-byte representation.

    Raises:
        RangeNotSatisfiable: a valid single range that selects nothing.
    """
    if not header or "," in header:
        return None
    match = _SPEC.match(header)
    if not match:
        return None
    first, last = match.group(1), match.group(2)
    if len(first) > _MAX_DIGITS or len(last) > _MAX_DIGITS or (not first and not last):
        return None
    if not first:  # suffix: the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return max(0, size - suffix), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # invalid syntax: ignore the header
    if start >= size:
        raise RangeNotSatisfiable(size)
    return start, min(end, size - 1)


def content_range(start: int, end: int, size: int) -> str:
    """The ``Content-Range`` value of a 206 response."""
    return f"bytes {start}-{end}/{size}"
