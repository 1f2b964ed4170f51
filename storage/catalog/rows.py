"""The one mapping between a ``recordings`` row and :class:`storage.types.RecordingRow`.

Every module that reads or writes whole recording rows (the catalog, the end-of-life
bookkeeping, the holds) uses these, so a new column is added in one place.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from storage.catalog.sql import from_db_time, to_db_time
from storage.errors import CatalogError
from storage.types import RecordingRow, RecordingState

__all__ = [
    "RECORDING_COLUMNS",
    "recording_select",
    "recording_insert",
    "recording_params",
    "recording_from_row",
]

RECORDING_COLUMNS = (
    "recording_id", "call_id", "tenant", "subject_ref", "agent_id", "queue", "direction",
    "started_at", "ended_at", "duration_ms", "consent", "purposes", "retention_class",
    "retain_until", "object_key", "subject_key_id", "ciphertext_sha256", "stored_size",
    "audio_bytes", "audio_format", "sample_rate", "channels", "pci_redacted_ms",
    "created_at", "state", "restricted", "updated_at", "object_version", "channel_roles",
    "pci_pauses",
)  # fmt: skip
_JSON_COLUMNS = frozenset({"channel_roles", "pci_pauses"})
_TIME_COLUMNS = frozenset({"started_at", "ended_at", "retain_until", "created_at", "updated_at"})


def recording_select(alias: str | None = None) -> str:
    """``SELECT <every column> FROM recordings [alias]``."""
    if alias is None:
        return f"SELECT {', '.join(RECORDING_COLUMNS)} FROM recordings"
    columns = ", ".join(f"{alias}.{column}" for column in RECORDING_COLUMNS)
    return f"SELECT {columns} FROM recordings {alias}"


def recording_insert() -> str:
    """``INSERT INTO recordings (<every column>) VALUES (?, ...)``."""
    return (
        f"INSERT INTO recordings ({', '.join(RECORDING_COLUMNS)}) "
        f"VALUES ({', '.join('?' for _ in RECORDING_COLUMNS)})"
    )


def recording_params(row: RecordingRow) -> tuple[Any, ...]:
    """The parameters of :func:`recording_insert` for ``row``.

    Raises:
        CatalogError: ``row`` is not a :class:`RecordingRow`, has no id, or bad purposes.
    """
    if not isinstance(row, RecordingRow):
        raise CatalogError(f"expected a RecordingRow, got {type(row).__name__}")
    if not row.recording_id:
        raise CatalogError("a recording needs a non-empty recording_id")
    if isinstance(row.purposes, str) or not all(isinstance(p, str) for p in row.purposes):
        raise CatalogError(f"purposes must be a sequence of strings, got {row.purposes!r}")
    params: list[Any] = []
    for column in RECORDING_COLUMNS:
        value = getattr(row, column)
        if column in _TIME_COLUMNS:
            value = None if value is None else to_db_time(value)
        elif column == "purposes" or column in _JSON_COLUMNS:
            value = json.dumps(list(value), separators=(",", ":"))
        elif column == "state":
            value = RecordingState(value).value
        elif column == "restricted":
            value = 1 if value else 0
        params.append(value)
    return tuple(params)


def recording_from_row(values: Sequence[Any]) -> RecordingRow:
    """The :class:`RecordingRow` of one row selected by :func:`recording_select`.

    Raises:
        CatalogError: a stored timestamp is malformed.
    """
    data = dict(zip(RECORDING_COLUMNS, values, strict=True))
    for column in _TIME_COLUMNS:
        if data[column] is not None:
            data[column] = from_db_time(data[column])
    data["purposes"] = tuple(json.loads(data["purposes"]))
    for column in _JSON_COLUMNS:  # NULL: stored before migration 9
        data[column] = tuple(json.loads(data[column])) if data[column] else ()
    data["state"] = RecordingState(data["state"])
    data["restricted"] = bool(data["restricted"])
    return RecordingRow(**data)
