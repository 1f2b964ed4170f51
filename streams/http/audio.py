"""Audio access: the purpose-bound decision, playback grants and the audio stream.

``POST /v1/recordings/{id}/grants`` decides, rate-guards and audits once and returns a
signed playback URL; ``GET /v1/recordings/{id}/audio`` serves the decrypted WAV under
a bearer token (one decision and one audit record per request; ``details.range`` /
``details.continuation`` say which bytes) or a playback grant (ONE decision and audit
record per playback session; each Range request re-checks the recording's current
state: restriction, erasure, contract end are honoured mid-session, and such a
denial is audited).

What a caller may rely on:

- The audit record of an audio grant is committed BEFORE the first audio byte is sent
  (reading and decrypting the first window may overlap the commit, but nothing is
  written to the client until it returned); when the audit write fails the answer is
  503 ``audit-unavailable`` and no audio.
- Legal and customer disclosures (purposes that are not tag-bound) are written to
  the disclosure ledger (``services.ledger``) in the same transaction as their audit
  record.
- The rate guard (:mod:`streams.http.rateguard`) limits distinct recordings per
  principal per hour; over the limit: 429 ``rate-limited`` (audited, metric
  ``callvault_access_rate_guard_trips_total{role}``).
- Audio is decrypted chunk by chunk, only the chunks a range covers
  (:mod:`streams.http.audio_stream`); the first window is authenticated before the
  status line goes out, so a tampered object gives 502 ``integrity-failure``
  (audited, metric) and no byte. A chunk that fails later cuts the connection before
  any of its bytes (the client sees a short body); bytes are never sent unauthenticated.
- The stored WAV is served as stored (G.711 mu-law/A-law or PCM16): Chromium plays
  G.711 WAV natively, so no transcoding happens and byte ranges map 1:1 onto the
  stored plaintext.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from aiohttp import web

from policies import (
    AccessDecision,
    AccessRequest,
    Decision,
    Policy,
    Principal,
    Reason,
    could_use,
    decide_access,
)
from storage.catalog.disclosures import REFERENCE_PATTERN
from storage.errors import StorageError
from storage.types import RecordingRow
from streams.errors import AudioFailure, AuditUnavailable, AuthError, BadRequest
from streams.evaluations import assignment_facts
from streams.facts import facts_of
from streams.http.audio_stream import PreparedAudio, prepare_audio, stream_audio
from streams.http.context import ctx_of, run
from streams.http.decisions import (
    ASSIGNMENT_ID,
    assignment_for_access,
    audited_denial,
    auth_denied,
    authenticate,
    count_decision,
    draft,
    recording_row,
)
from streams.http.params import (
    ascii_header,
    check_evidence,
    json_object,
    query_text,
    recording_id_of,
)
from streams.http.playback import PlaybackGrant
from streams.http.rateguard import RATE_LIMITED

__all__ = ["ROUTES", "checked_grant"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _AudioAsk:
    principal: Principal
    request: AccessRequest
    mode: str
    assignment_id: str | None = None


def _ask(principal: Principal, values: Mapping[str, str], policy: Policy) -> _AudioAsk:
    """The audio request in ``values`` (query or grant body). Raises BadRequest.

    An evaluation assignment is named by ``assignment`` (or given as the justification):
    its id is then the justification that is audited."""
    mode = (values.get("mode") or "play").strip()
    if mode not in ("play", "download"):
        raise BadRequest("mode must be play or download")
    purpose = query_text(values, "purpose")
    justification = check_evidence(query_text(values, "justification"), "justification", policy)
    legal_basis = query_text(values, "legal_basis")
    reference = query_text(values, "reference")
    if reference is not None and not REFERENCE_PATTERN.match(reference):
        raise BadRequest("reference must be a case or request id (letters, digits, . _ : / # -)")
    assignment_id = query_text(values, "assignment")
    if assignment_id is None and justification and ASSIGNMENT_ID.match(justification):
        assignment_id = justification
    if assignment_id is not None:
        if not ASSIGNMENT_ID.match(assignment_id):
            raise BadRequest("malformed assignment id (asg- and 12 hex digits)")
        if justification not in (None, assignment_id):
            raise BadRequest("under an assignment, the justification is the assignment id")
        justification = assignment_id
    return _AudioAsk(
        principal,
        AccessRequest(mode, purpose, justification, legal_basis, reference),
        mode,
        assignment_id,
    )


async def _decide(
    request: web.Request, ask: _AudioAsk, rid: str, *, prefetch: bool = False, **details: Any
) -> tuple[RecordingRow, int, asyncio.Future[PreparedAudio] | None]:
    """Decide, rate-guard and audit one audio request.

    Returns the row, the seq of the committed audit record of the grant and
    (``prefetch``) the reading of the object's first window, started once the decision
    allowed it so that it overlaps the audit commit; nothing of it is sent unless the
    commit succeeded.

    Raises:
        AccessDenied: denied or rate-limited (audited).
        AuditUnavailable: the grant could not be audited (no audio goes out).
    """
    ctx = ctx_of(request)
    now = ctx.now()
    policy = ctx.services.policy
    principal, mode, purpose = ask.principal, ask.mode, ask.request.purpose
    access = ask.request
    if ask.assignment_id is not None:
        details = {**details, "assignment_id": ask.assignment_id}
        access = replace(
            access,
            assignment=await assignment_for_access(
                request, principal, ask.assignment_id, mode, rid, purpose, **details
            ),
        )
    row = await recording_row(request, rid)
    decision = decide_access(principal, access, None if row is None else facts_of(row), policy, now)
    if row is None and decision.reason is Reason.NO_RECORDING:
        decision = _missing_decision(principal, access, policy)
    if not decision.allowed or row is None:
        raise await audited_denial(
            request, principal, mode, str(decision.reason), rid, purpose, **details
        )
    verdict = ctx.rate_guard.admit(principal, rid, now)
    if not verdict.allowed:
        ctx.metrics.rate_guard_trips.labels(
            principal.role if principal.role in policy.roles else "other"
        ).inc()
        raise await audited_denial(
            request, principal, mode, RATE_LIMITED, rid, purpose,
            retry_after=verdict.retry_after, limit=verdict.limit, **details,
        )  # fmt: skip
    record = draft(
        principal,
        f"access.{mode}",
        "granted",
        str(Reason.GRANTED),
        rid,
        purpose=purpose,
        rule=decision.rule,
        justification=ask.request.justification,
        legal_basis=ask.request.legal_basis,
        reference=ask.request.reference,
        **details,
    )
    assert purpose is not None  # a granted audio decision always has one
    prepared = _prefetch(request, row) if prefetch else None
    try:
        if policy.purposes[purpose].tag_bound:
            seq = (await run(ctx.services.audit.append, record)).seq
        else:
            disclosure = await run(
                lambda: ctx.services.ledger.record(
                    recording_id=rid,
                    tenant=row.tenant,
                    actor=record.actor,
                    role=principal.role,
                    org=principal.org,
                    purpose=purpose,
                    legal_basis=ask.request.legal_basis,
                    reference=ask.request.reference or "",
                    mode=mode,
                    audit=record,
                )
            )
            seq = disclosure.audit_seq
    except StorageError as exc:  # AuditError, CatalogError
        log.error("audit write failed; no audio is sent: %s", exc)
        if prepared is not None:
            prepared.cancel()
        raise AuditUnavailable("the access could not be audited; no audio was sent") from None
    count_decision(ctx, principal, mode, purpose, "granted", str(Reason.GRANTED))
    return row, seq, prepared


# -- POST /v1/recordings/{id}/grants -----------------------------------------------------------
async def issue_grant(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    principal = await authenticate(request)
    rid = recording_id_of(request)
    if request.content_type != "application/json":
        raise BadRequest("send a JSON object (Content-Type: application/json)")
    body = await json_object(request)  # bounded: size, depth, text
    if not body or not all(isinstance(v, str) for v in body.values() if v is not None):
        raise BadRequest("body must be a JSON object of strings")
    ask = _ask(principal, {k: v for k, v in body.items() if v is not None}, ctx.services.policy)
    row, seq, _ = await _decide(request, ask, rid, via="grant")
    assert ask.request.purpose is not None
    expires = ctx.now() + ctx.grant_ttl + timedelta(milliseconds=row.duration_ms)
    grant = ctx.grants.issue(
        PlaybackGrant(
            principal, rid, ask.request.purpose, ask.mode, expires, seq, ask.assignment_id
        )
    )
    return web.json_response(
        {
            "url": f"/v1/recordings/{rid}/audio?grant={grant}",
            "grant_id": seq,
            "mode": ask.mode,
            "purpose": ask.request.purpose,
            "expires_at": expires.isoformat(),
        },
        status=201,
        headers={"Cache-Control": "no-store"},
    )


# -- GET /v1/recordings/{id}/audio -------------------------------------------------------------
async def audio(request: web.Request) -> web.StreamResponse:
    rid = recording_id_of(request)
    range_header = ascii_header(request, "Range")
    grant_text = request.query.get("grant")
    if grant_text is not None:
        return await _audio_by_grant(request, rid, grant_text)
    principal = await authenticate(request)
    ask = _ask(principal, request.query, ctx_of(request).services.policy)
    continuation = range_header is not None and not _starts_at_zero(range_header)
    row, _, prepared = await _decide(
        request, ask, rid, prefetch=True, via="bearer",
        range=(range_header or "")[:64] or None, continuation=continuation,
    )  # fmt: skip
    assert prepared is not None
    return await _send(request, row, ask.principal, ask.mode, prepared)


async def checked_grant(
    request: web.Request, rid: str, grant_text: str
) -> tuple[PlaybackGrant, RecordingRow]:
    """The verified playback grant for ``rid`` and the recording's row, re-checked
    against its current state (and the grant's evaluation assignment, if any): a
    recording restricted, erased or out of contract since, or an assignment completed
    or cancelled since, ends the session.

    Raises:
        AuthError: the grant is malformed, forged, expired or for another recording
            (audited ``auth.denied``).
        AccessDenied: the state changed (audited).
    """
    ctx = ctx_of(request)
    now = ctx.now()
    try:
        grant = ctx.grants.verify(grant_text, rid, now)
    except AuthError as exc:
        raise await auth_denied(request, exc) from None
    row = await recording_row(request, rid)
    policy = ctx.services.policy
    assignment = None
    if grant.assignment_id is not None:
        found = await run(ctx.services.evaluations.find, grant.assignment_id)
        assignment = None if found is None else assignment_facts(found)
    usable = (
        row is not None
        and (grant.assignment_id is None or assignment is not None)
        and could_use(grant.principal, facts_of(row), policy, now, grant.purpose, assignment)
    )
    if row is None or not usable:
        # The state changed since the grant (restricted, erased, contract ended):
        # decide again to name the reason, and audit the denial. could_use failed, so
        # the principal or purpose checks (which precede the evidence checks) name it.
        decision = decide_access(
            grant.principal,
            AccessRequest(grant.mode, grant.purpose, assignment=assignment),
            None if row is None else facts_of(row),
            policy,
            now,
        )
        if row is None:
            reason = str(Reason.NO_RECORDING)
        elif grant.assignment_id is not None and assignment is None:
            reason = str(Reason.ASSIGNMENT_UNKNOWN)
        else:
            reason = str(decision.reason)
        raise await audited_denial(
            request, grant.principal, grant.mode, reason, rid, grant.purpose,
            via="grant", grant_id=grant.grant_id, assignment_id=grant.assignment_id,
        )  # fmt: skip
    return grant, row


async def _audio_by_grant(request: web.Request, rid: str, grant_text: str) -> web.StreamResponse:
    grant, row = await checked_grant(request, rid, grant_text)
    prepared = _prefetch(request, row)
    return await _send(request, row, grant.principal, grant.mode, prepared)


# -- streaming ---------------------------------------------------------------------------------
def _prefetch(request: web.Request, row: RecordingRow) -> asyncio.Future[PreparedAudio]:
    """Start reading the object and decrypting the first window (no side effects)."""
    ctx = ctx_of(request)
    return asyncio.get_running_loop().run_in_executor(
        None,
        prepare_audio,
        ctx.services.vault,
        ctx.services.keys,
        row,
        ascii_header(request, "Range"),
        ascii_header(request, "If-Range"),
        ctx.first_window,
    )


async def _send(
    request: web.Request,
    row: RecordingRow,
    principal: Principal,
    mode: str,
    prepared: asyncio.Future[PreparedAudio],
) -> web.StreamResponse:
    """Stream the prepared audio. Raises AudioFailure (audited) or RangeNotSatisfiable
    while nothing was sent; a later failure is audited and cuts the connection."""
    ctx = ctx_of(request)
    try:
        ready = await prepared
    except AudioFailure as failure:
        await _audit_failure(request, principal, row, mode, failure)
        raise
    served = ctx.metrics.audio_bytes_served.labels(mode)

    async def failed(failure: AudioFailure) -> None:
        await _audit_failure(request, principal, row, mode, failure)

    return await stream_audio(
        request,
        ready,
        filename=f"{row.recording_id}.wav" if mode == "download" else None,
        window=ctx.window,
        on_bytes=served.inc,
        on_failure=failed,
    )


async def _audit_failure(
    request: web.Request, principal: Principal, row: RecordingRow, mode: str, failure: AudioFailure
) -> None:
    """Count and audit a failed read; a failing audit write is logged, not raised (the
    failure is answered either way)."""
    ctx = ctx_of(request)
    if failure.is_integrity:
        ctx.metrics.integrity_failures.inc()
        log.error("integrity failure reading recording %s: %s", row.recording_id, failure.detail)
    action = "access.integrity-failure" if failure.is_integrity else f"access.{mode}"
    record = draft(principal, action, "failed", failure.reason, row.recording_id, mode=mode)
    try:
        await run(ctx.services.audit.append, record)
    except StorageError as exc:
        log.error("audit write failed for a read failure: %s", exc)


def _missing_decision(principal: Principal, ask: AccessRequest, policy: Any) -> AccessDecision:
    """For an unknown id, a caller whose role could not use the purpose anyway learns
    that, not whether the id exists."""
    role = policy.roles[principal.role]
    purpose = ask.purpose
    if purpose is not None and purpose not in policy.purposes:
        return AccessDecision(Decision.DENY, Reason.UNKNOWN_PURPOSE, "access:unknown-purpose")
    if not role.purposes or (purpose is not None and purpose not in role.purposes):
        return AccessDecision(Decision.DENY, Reason.ROLE_NOT_ALLOWED_PURPOSE, "access:role-purpose")
    return AccessDecision(Decision.DENY, Reason.NO_RECORDING, "access:default-deny")


def _starts_at_zero(range_header: str) -> bool:
    return re.match(r"^\s*bytes\s*=\s*0+\s*-", range_header, re.IGNORECASE) is not None


ROUTES = [
    web.post("/v1/recordings/{recording_id}/grants", issue_grant),
    web.get("/v1/recordings/{recording_id}/audio", audio, allow_head=False),
]
