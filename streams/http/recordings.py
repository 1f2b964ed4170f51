"""``GET /v1/recordings`` (what the caller could be granted) and
``GET /v1/recordings/{id}`` (metadata), purpose-bound and audited.

Both decisions are audited before their answer (``access.list``,
``access.metadata``, granted or denied with the reason code); answers never carry
``subject_ref``, object keys or subject key ids (:func:`public_recording`).

The listing is newest first (``order=oldest`` for the reverse) and keyset-paginated
(``next`` -> ``after=``, a cursor of the same order). Every filter in
:data:`LIST_PARAMETERS` is applied; any other parameter, or one given twice, is
answered 400 ``unknown-parameter`` (a typo must not widen the result silently):

``call_id``, ``recording_id``, ``agent``, ``queue``, ``tenant``, ``direction``
(inbound, outbound, internal), ``from`` / ``to`` (dates or datetimes, see
:func:`~streams.http.params.query_when`), ``min_duration`` / ``max_duration``
(seconds, inclusive), ``purpose``, ``order``, ``limit``, ``after``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from policies import (
    AccessRequest,
    AssignmentFacts,
    Principal,
    Reason,
    could_use,
    decide_access,
)
from storage.catalog import listing_cursor
from storage.errors import CatalogError
from storage.types import RecordingRow, RecordingState
from streams.errors import BadRequest
from streams.facts import facts_of
from streams.http.context import WebContext, ctx_of, run
from streams.http.decisions import (
    ASSIGNMENT_ID,
    assignment_for_access,
    audit_or_503,
    audited_denial,
    authenticate,
    count_decision,
    draft,
    recording_row,
    scope_of,
)
from streams.http.params import query_int, query_text, query_when, recording_id_of

__all__ = ["ROUTES", "LIST_PARAMETERS", "public_recording", "usable_purposes"]

_MAX_LIST = 200
_MAX_SCAN = 5000
_MAX_DURATION_S = 7 * 24 * 3600
DIRECTIONS = ("inbound", "outbound", "internal")
#: Every parameter ``GET /v1/recordings`` accepts.
LIST_PARAMETERS = frozenset(
    {
        "call_id", "recording_id", "agent", "queue", "tenant", "direction", "from", "to",
        "min_duration", "max_duration", "purpose", "order", "limit", "after",
    }
)  # fmt: skip


def public_recording(row: RecordingRow, usable_purposes: list[str]) -> dict[str, Any]:
    """What a caller may see of a recording: no subject_ref, object key or key id."""
    return {
        "recording_id": row.recording_id,
        "call_id": row.call_id,
        "tenant": row.tenant,
        "agent_id": row.agent_id,
        "queue": row.queue,
        "direction": row.direction,
        "started_at": row.started_at.isoformat(),
        "ended_at": row.ended_at.isoformat(),
        "duration_ms": row.duration_ms,
        "purposes": list(row.purposes),
        "retention_class": row.retention_class,
        "retain_until": row.retain_until.isoformat(),
        "state": str(row.state),
        "restricted": row.restricted,
        "audio_format": row.audio_format,
        "sample_rate": row.sample_rate,
        "channels": row.channels,
        "audio_bytes": row.audio_bytes,
        "pci_redacted_ms": row.pci_redacted_ms,
        "pci_silenced": row.pci_redacted_ms > 0,
        "usable_purposes": usable_purposes,
    }


def usable_purposes(
    principal: Principal,
    row: RecordingRow,
    ctx: WebContext,
    now: datetime,
    assignment: AssignmentFacts | None = None,
) -> list[str]:
    """The purposes of the caller's role it could be granted ``row`` for now (with
    ``assignment``: under that evaluation assignment)."""
    policy = ctx.services.policy
    role = policy.roles.get(principal.role)
    if role is None:
        return []
    facts = facts_of(row)
    return [
        p
        for p in role.purposes
        if could_use(principal, facts, policy, now, purpose=p, assignment=assignment)
    ]


def _listing_filters(query: MultiMapping[str]) -> tuple[dict[str, Any], bool]:
    """The catalog filters of a listing query and whether it is newest first.

    Raises:
        BadRequest: an unknown or repeated parameter (``unknown-parameter``), or a bad value.
    """
    unknown = sorted(set(query) - LIST_PARAMETERS)
    if unknown:
        raise BadRequest(
            f"unknown parameter {unknown[0]!r}; filters: {', '.join(sorted(LIST_PARAMETERS))}",
            "unknown-parameter",
        )
    repeated = sorted({name for name in query if len(query.getall(name)) > 1})
    if repeated:
        raise BadRequest(f"parameter {repeated[0]!r} is given twice", "unknown-parameter")
    direction = query_text(query, "direction")
    if direction is not None and direction not in DIRECTIONS:
        raise BadRequest(f"direction must be one of {', '.join(DIRECTIONS)}")
    order = query_text(query, "order") or "newest"
    if order not in ("newest", "oldest"):
        raise BadRequest("order must be newest or oldest")
    shortest = _seconds(query, "min_duration")
    longest = _seconds(query, "max_duration")
    if shortest is not None and longest is not None and shortest > longest:
        raise BadRequest("min_duration must not exceed max_duration")
    started_from = query_when(query, "from", end=False)
    started_to = query_when(query, "to", end=True)
    if started_from is not None and started_to is not None and started_from >= started_to:
        raise BadRequest("'from' must be before 'to'")
    filters: dict[str, Any] = {
        "call_id": query_text(query, "call_id"),
        "recording_id": query_text(query, "recording_id"),
        "agent_id": query_text(query, "agent"),
        "queue": query_text(query, "queue"),
        "tenant": query_text(query, "tenant"),
        "direction": direction,
        "started_from": started_from,
        "started_to": started_to,
        "min_duration_ms": None if shortest is None else shortest * 1000,
        "max_duration_ms": None if longest is None else longest * 1000 + 999,
    }
    return filters, order == "newest"


def _seconds(query: Mapping[str, str], name: str) -> int | None:
    if not query.get(name):
        return None
    return query_int(query, name, 0, 0, _MAX_DURATION_S)


async def list_recordings(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    principal = await authenticate(request)
    now = ctx.now()
    policy = ctx.services.policy
    query = request.query
    filters, newest_first = _listing_filters(query)
    purpose = query_text(query, "purpose")
    if purpose is not None and purpose not in policy.purposes:
        raise BadRequest(f"unknown purpose {purpose!r}", str(Reason.UNKNOWN_PURPOSE))
    limit = query_int(query, "limit", 50, 1, _MAX_LIST)
    cursor = query_text(query, "after")
    decision = decide_access(principal, AccessRequest("list", purpose), None, policy, now)
    used = sorted(name for name, value in filters.items() if value is not None)
    if not decision.allowed:
        raise await audited_denial(
            request, principal, "list", str(decision.reason), None, purpose, filters=used
        )
    if purpose is not None and policy.purposes[purpose].tag_bound:
        filters["purpose"] = purpose
    own = scope_of(request, principal)
    # A tenant lists its own recordings only; a filter naming another finds none.
    foreign = own is not None and filters["tenant"] not in (None, own)
    if own is not None:
        filters["tenant"] = own

    def scan() -> tuple[list[tuple[RecordingRow, list[str]]], str | None]:
        found: list[tuple[RecordingRow, list[str]]] = []
        if foreign:
            return found, None
        after, scanned = cursor, 0
        batch = min(1000, max(100, 2 * limit))
        while scanned < _MAX_SCAN:
            rows = ctx.services.catalog.list_recordings(
                **filters,
                states=(RecordingState.STORED,),
                after=after,
                limit=batch,
                newest_first=newest_first,
            )
            for row in rows:
                scanned += 1
                after = listing_cursor(row)
                if purpose is None:
                    usable = usable_purposes(principal, row, ctx, now)
                elif could_use(principal, facts_of(row), policy, now, purpose=purpose):
                    usable = [purpose]
                else:
                    usable = []
                if usable:
                    found.append((row, usable))
                    if len(found) == limit:
                        return found, after
            if len(rows) < batch:
                return found, None
        return found, after  # scanned enough: let the client continue from here

    try:
        page, next_cursor = await run(scan)
    except CatalogError as exc:
        if "cursor" in str(exc):
            raise BadRequest("invalid 'after' cursor") from None
        raise
    record = draft(
        principal, "access.list", "granted", str(Reason.GRANTED), None,
        purpose=purpose, filters=used, count=len(page),
    )  # fmt: skip
    await audit_or_503(request, record, "the listing could not be audited")
    count_decision(ctx, principal, "list", purpose, "granted", str(Reason.GRANTED))
    return web.json_response(
        {
            "recordings": [public_recording(row, usable) for row, usable in page],
            "next": next_cursor,
        },
        headers={"Cache-Control": "no-store"},
    )


async def recording_metadata(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    principal = await authenticate(request)
    now = ctx.now()
    rid = recording_id_of(request)
    purpose = query_text(request.query, "purpose")
    policy = ctx.services.policy
    assignment = None
    assignment_id = query_text(request.query, "assignment")
    if assignment_id is not None:
        if not ASSIGNMENT_ID.match(assignment_id):
            raise BadRequest("malformed assignment id (asg- and 12 hex digits)")
        assignment = await assignment_for_access(
            request, principal, assignment_id, "metadata", rid, purpose
        )
    row = await recording_row(request, rid)
    decision = decide_access(
        principal,
        AccessRequest("metadata", purpose, assignment=assignment),
        None if row is None else facts_of(row),
        policy,
        now,
    )
    if row is None and decision.reason is Reason.NO_RECORDING:
        # Only a caller who may list learns that an id does not exist.
        raise await audited_denial(request, principal, "metadata", str(Reason.NO_RECORDING), rid)
    if not decision.allowed or row is None:
        raise await audited_denial(
            request, principal, "metadata", str(decision.reason), rid, purpose,
            assignment_id=assignment_id,
        )  # fmt: skip
    record = draft(
        principal, "access.metadata", "granted", str(Reason.GRANTED), rid, purpose=purpose,
        assignment_id=assignment_id,
    )  # fmt: skip
    await audit_or_503(request, record, "the request could not be audited")
    count_decision(ctx, principal, "metadata", purpose, "granted", str(Reason.GRANTED))
    return web.json_response(
        public_recording(row, usable_purposes(principal, row, ctx, now, assignment)),
        headers={"Cache-Control": "no-store"},
    )


ROUTES = [
    web.get("/v1/recordings", list_recordings),
    web.get("/v1/recordings/{recording_id}", recording_metadata),
]
