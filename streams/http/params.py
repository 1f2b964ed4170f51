"""Query, path and body parameters of the views.

Every parser raises :class:`BadRequest` (reason ``bad-parameter`` unless told
otherwise), answered ``400 bad-request`` by :mod:`streams.http.errors`. Free text
that reaches the audit log passes :func:`check_evidence` (no personal data).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from aiohttp import web

from policies import PERSONAL_DATA, Policy, justification_problem
from storage.catalog.audit import check_details
from storage.errors import AuditError
from streams.bounds import load_json, parse_instant, text_problem
from streams.errors import BadRequest, InputRejected, PayloadTooLarge

__all__ = [
    "BadRequest",
    "ascii_header",
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
_DIGITS = re.compile(r"[0-9]{1,18}")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")


def query_text(query: Mapping[str, str], name: str, *, required: bool = False) -> str | None:
    """The stripped value of ``name`` (None when absent or blank); at most 200 printable
    characters (no control characters, NUL or lone surrogates)."""
    value = query.get(name)
    if value is None or not value.strip():
        if required:
            raise BadRequest(f"parameter {name!r} is required")
        return None
    value = value.strip()
    if len(value) > _MAX_TEXT or text_problem(value) is not None:
        raise BadRequest(f"parameter {name!r} must be at most {_MAX_TEXT} printable characters")
    return value


def query_int(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """The integer value of ``name`` within ``low..high`` (``default`` when absent); ASCII
    digits only (``str.isdigit`` also takes ``²``, which ``int`` refuses)."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if not _DIGITS.fullmatch(raw):
        raise BadRequest(f"parameter {name!r} must be an integer between {low} and {high}")
    value = int(raw)
    if not low <= value <= high:
        raise BadRequest(f"parameter {name!r} must be between {low} and {high}")
    return value


def query_when(query: Mapping[str, str], name: str, *, end: bool) -> datetime | None:
    """``YYYY-MM-DD`` (a whole UTC day: ``to`` includes it) or an ISO datetime with offset,
    between years 1 and 9999 in UTC (else 400 ``bad-parameter``)."""
    raw = query_text(query, name)
    if raw is None:
        return None
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            start = datetime.combine(day, time(0), UTC)
            return start + timedelta(days=1) if end else start
        return parse_instant(raw)
    except OverflowError:
        raise BadRequest(f"parameter {name!r} is outside the representable dates") from None
    except ValueError as exc:
        raise BadRequest(
            f"parameter {name!r} must be YYYY-MM-DD or an ISO 8601 datetime with a UTC offset "
            f"(e.g. 2026-11-25T09:00:00Z): {exc}"
        ) from None


def ascii_header(request: web.Request, name: str, limit: int = 256) -> str | None:
    """A request header that is printable ASCII of at most ``limit`` characters, else
    ``None``: aiohttp decodes other bytes to lone surrogates, which no audit record, log
    or database can hold, and RFC 9110 lets a server ignore a malformed ``Range``."""
    value = request.headers.get(name)
    if value is None or len(value) > limit or not _PRINTABLE_ASCII.fullmatch(value):
        return None
    return value


def recording_id_of(request: web.Request) -> str:
    """The ``{recording_id}`` path parameter, checked against the id pattern."""
    rid = request.match_info["recording_id"]
    if not _RECORDING_ID.match(rid):
        raise BadRequest("malformed recording id")
    return rid


def check_evidence(value: str | None, name: str, policy: Policy) -> str | None:
    """Free text that goes into the audit log (a justification): a reference matching
    the policy's pattern, or text with no e-mail address and no digit run that can be a
    phone or card number (:func:`policies.justification_problem`).

    Raises:
        BadRequest: reason ``justification-personal-data``.
    """
    if value is None:
        return None
    problem = justification_problem(value, policy)
    if problem is None:
        try:
            check_details({name: value})
        except AuditError:
            problem = f"{name} must not contain personal data (e-mail addresses, phone numbers)"
    if problem is not None:
        raise BadRequest(problem.replace("the justification", f"the {name}", 1), PERSONAL_DATA)
    return value


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object (``{}`` when empty), at most 64 KiB, within the
    bounds of :func:`streams.bounds.load_json` (depth, no lone surrogates, NUL or
    control characters other than tab and line breaks).

    Raises:
        PayloadTooLarge: the body is larger than 64 KiB.
        BadRequest: ``malformed``: not JSON, too deep, bad text, or not an object.
    """
    raw = await request.content.read(_MAX_BODY + 1)
    if len(raw) > _MAX_BODY:
        raise PayloadTooLarge("body larger than 64 KiB")
    if not raw:
        return {}
    try:
        data = load_json(raw, max_bytes=_MAX_BODY)
    except InputRejected as exc:
        raise BadRequest(f"the body is not usable JSON: {exc.detail}", "malformed") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object", "malformed")
    return data
