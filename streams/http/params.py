"""Query, path and body parameters of the views.

Every parser raises :class:`BadRequest` (reason ``bad-parameter`` unless told
otherwise), answered ``400 bad-request`` by :mod:`streams.http.errors`. Free text
that reaches the audit log passes :func:`check_evidence` (no personal data).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from aiohttp import web

from storage.catalog.audit import check_details
from storage.errors import AuditError
from streams.errors import BadRequest, PayloadTooLarge

__all__ = [
    "BadRequest",
    "check_evidence",
    "json_object",
    "query_int",
    "query_text",
    "query_when",
    "recording_id_of",
]

_RECORDING_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_MAX_TEXT = 200
_MAX_BODY = 64 * 1024


def query_text(query: Mapping[str, str], name: str, *, required: bool = False) -> str | None:
    """The stripped value of ``name`` (None when absent or blank); at most 200 printable chars."""
    value = query.get(name)
    if value is None or not value.strip():
        if required:
            raise BadRequest(f"parameter {name!r} is required")
        return None
    value = value.strip()
    if len(value) > _MAX_TEXT or any(ord(c) < 32 for c in value):
        raise BadRequest(f"parameter {name!r} must be at most {_MAX_TEXT} printable characters")
    return value


def query_int(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """The integer value of ``name`` within ``low..high`` (``default`` when absent)."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 18:
        raise BadRequest(f"parameter {name!r} must be an integer between {low} and {high}")
    value = int(raw)
    if not low <= value <= high:
        raise BadRequest(f"parameter {name!r} must be between {low} and {high}")
    return value


def query_when(query: Mapping[str, str], name: str, *, end: bool) -> datetime | None:
    """``YYYY-MM-DD`` (a whole UTC day: ``to`` includes it) or an ISO datetime with offset."""
    raw = query_text(query, name)
    if raw is None:
        return None
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            start = datetime.combine(day, time(0), UTC)
            return start + timedelta(days=1) if end else start
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"parameter {name!r} must be YYYY-MM-DD or an ISO 8601 datetime") from None
    if value.tzinfo is None:
        raise BadRequest(f"parameter {name!r} needs a UTC offset (e.g. 2026-11-25T09:00:00Z)")
    return value


def recording_id_of(request: web.Request) -> str:
    """The ``{recording_id}`` path parameter, checked against the id pattern."""
    rid = request.match_info["recording_id"]
    if not _RECORDING_ID.match(rid):
        raise BadRequest("malformed recording id")
    return rid


def check_evidence(value: str | None, name: str) -> str | None:
    """Free text that goes into the audit log: no personal data there."""
    if value is None:
        return None
    try:
        check_details({name: value})
    except AuditError:
        raise BadRequest(
            f"{name} must not contain personal data (e-mail addresses, phone numbers); "
            "use an evaluation or case id"
        ) from None
    return value


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object (``{}`` when empty), at most 64 KiB.

    Raises:
        PayloadTooLarge: the body is larger than 64 KiB.
        BadRequest: ``malformed``: not JSON, or not an object.
    """
    raw = await request.content.read(_MAX_BODY + 1)
    if len(raw) > _MAX_BODY:
        raise PayloadTooLarge("body larger than 64 KiB")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise BadRequest("the body is not JSON", "malformed") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object", "malformed")
    return data
