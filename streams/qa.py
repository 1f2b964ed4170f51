"""QA access over HTTP: list, inspect and play recordings, purpose-bound and audited.

Routes (registered by the worker through :meth:`QaAccess.routes`; errors are JSON
``{"error", "reason", "detail"}``, ``reason`` being the policies reason code that
the audit record carries too):

=======  ==========================================  =================================
GET      ``/v1/recordings``                          what the caller could be granted
GET      ``/v1/recordings/{id}``                     metadata (no customer reference)
POST     ``/v1/recordings/{id}/grants``              decide + audit, return a playback URL
GET      ``/v1/recordings/{id}/audio``               decrypted WAV, HTTP Range (bearer or grant)
GET      ``/v1/audit``                               audit entries (``read-audit``)
GET      ``/v1/disclosures``                         disclosure ledger (``read-audit``)
GET      ``/``, ``/static/{file}``                   the QA page
=======  ==========================================  =================================

What a caller may rely on:

- Every decision is audited before its response: ``access.list``, ``access.metadata``,
  ``access.play`` / ``access.download`` (granted or denied, with the reason code).
  The audit record of an audio grant is committed BEFORE the first audio byte is sent
  (reading and decrypting the first window may overlap the commit, but nothing is
  written to the client until it returned); when the audit write fails the answer is
  503 ``audit-unavailable`` and no audio.
- Audio by bearer token (``GET .../audio?purpose=...``): each request is one decision,
  one audit record (``details.range`` / ``details.continuation`` say which bytes).
  Audio by playback grant (``POST .../grants`` then ``GET .../audio?grant=...``, what
  the page's ``<audio>`` element uses): ONE decision and ONE audit record per playback
  session; the many Range requests of a seeking player are not audited again, but
  each is re-checked against the recording's current state (restriction, erasure,
  contract end are honoured mid-session, and such a denial is audited).
- Legal and customer disclosures (purposes that are not tag-bound) are written to
  the disclosure ledger (:mod:`storage.disclosures`) in the same transaction as
  their audit record.
- The rate guard (:mod:`streams.rateguard`) limits distinct recordings per principal
  per hour; over the limit: 429 ``rate-limited`` (audited, metric
  ``callvault_access_rate_guard_trips_total{role}``).
- Audio is decrypted chunk by chunk, only the chunks a range covers
  (:mod:`streams.audio_stream`); the first window is authenticated before the status
  line goes out, so a tampered object gives 502 ``integrity-failure`` (audited, metric)
  and no byte. A chunk that fails later in a long response cuts the connection before
  any of its bytes (the client sees a short body); bytes are never sent unauthenticated.
- The stored WAV is served as stored (G.711 mu-law/A-law or PCM16): Chromium plays
  G.711 WAV natively (verified by the browser test), so no transcoding happens and
  byte ranges map 1:1 onto the stored plaintext.
- Responses never carry ``subject_ref``, object keys or subject key ids.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from typing import Any

from aiohttp import web

from policies import (
    AccessDecision,
    AccessRequest,
    Decision,
    Principal,
    Reason,
    RecordingFacts,
    could_use,
    decide_access,
)
from storage.audit import AuditDraft, check_details
from storage.catalog import listing_cursor
from storage.disclosures import REFERENCE_PATTERN, DisclosureLedger
from storage.errors import (
    AuditError,
    CatalogError,
)
from storage.types import AuditEntry, RecordingRow, RecordingState
from streams.audio_stream import AudioFailure, PreparedAudio, prepare_audio, stream_audio
from streams.auth import AuthError
from streams.playback import PlaybackGrant, PlaybackGrants
from streams.ranges import RangeNotSatisfiable
from streams.rateguard import RATE_LIMITED, RateGuard
from streams.web import WebContext, _run, authenticate, ctx_of, json_error, require

__all__ = ["QaAccess", "qa_routes", "public_recording", "facts_of", "BadRequest"]

log = logging.getLogger(__name__)

_RECORDING_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_MAX_TEXT = 200
_MAX_LIST = 200
_MAX_SCAN = 5000
_STATIC = {"qa.js": "application/javascript", "qa.css": "text/css"}
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "media-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


class BadRequest(Exception):
    """A malformed parameter: 400 with ``detail``."""

    def __init__(self, detail: str, reason: str = "bad-parameter") -> None:
        self.detail = detail
        self.reason = reason
        super().__init__(detail)


def facts_of(row: RecordingRow) -> RecordingFacts:
    """The decision inputs of a catalog row (legal holds do not affect access)."""
    return RecordingFacts(
        recording_id=row.recording_id,
        tenant=row.tenant,
        purposes=row.purposes,
        state=RecordingState(row.state).value,
        restricted=row.restricted,
        held=False,
        retain_until=row.retain_until,
        started_at=row.started_at,
        ended_at=row.ended_at,
    )


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
        "usable_purposes": usable_purposes,
    }


def _entry_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "at": entry.at.isoformat(),
        "actor": entry.actor,
        "action": entry.action,
        "outcome": entry.outcome,
        "reason": entry.reason,
        "recording_id": entry.recording_id,
        "details": entry.details,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


# -- parameter parsing ---------------------------------------------------------------------


def _text(query: Mapping[str, str], name: str, *, required: bool = False) -> str | None:
    value = query.get(name)
    if value is None or not value.strip():
        if required:
            raise BadRequest(f"parameter {name!r} is required")
        return None
    value = value.strip()
    if len(value) > _MAX_TEXT or any(ord(c) < 32 for c in value):
        raise BadRequest(f"parameter {name!r} must be at most {_MAX_TEXT} printable characters")
    return value


def _int(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 18:
        raise BadRequest(f"parameter {name!r} must be an integer between {low} and {high}")
    value = int(raw)
    if not low <= value <= high:
        raise BadRequest(f"parameter {name!r} must be between {low} and {high}")
    return value


def _when(query: Mapping[str, str], name: str, *, end: bool) -> datetime | None:
    """``YYYY-MM-DD`` (a whole UTC day: ``to`` includes it) or an ISO datetime with offset."""
    raw = _text(query, name)
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


def _recording_id(request: web.Request) -> str:
    rid = request.match_info["recording_id"]
    if not _RECORDING_ID.match(rid):
        raise BadRequest("malformed recording id")
    return rid


def _evidence(value: str | None, name: str) -> str | None:
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


def _bad(exc: BadRequest) -> web.Response:
    return json_error(400, "bad-request", exc.detail, reason=exc.reason)


# -- the views ----------------------------------------------------------------------------------


@dataclass
class _AudioAsk:
    principal: Principal
    request: AccessRequest
    mode: str


class QaAccess:
    """The QA views. Collaborators: the rate guard and the grant signer (built from the
    web context's services when not given); ``grant_ttl`` is added to the recording's
    duration to give a playback grant's lifetime; ``first_window``/``window`` are the
    plaintext bytes decrypted before the first write and per later write."""

    def __init__(
        self,
        *,
        rate_guard: RateGuard | None = None,
        grants: PlaybackGrants | None = None,
        grant_ttl: timedelta = timedelta(minutes=10),
        first_window: int = 64 * 1024,
        window: int = 1024 * 1024,
    ) -> None:
        self._rate_guard = rate_guard
        self._grants = grants
        self.grant_ttl = grant_ttl
        self.first_window = max(1, first_window)
        self.window = max(1, window)
        self._ledgers: dict[int, DisclosureLedger] = {}

    # -- collaborators -----------------------------------------------------------------------
    def rate_guard(self, ctx: WebContext) -> RateGuard:
        if self._rate_guard is None:
            self._rate_guard = RateGuard(ctx.services.policy.rate_limit_for)
        return self._rate_guard

    def grants(self, ctx: WebContext) -> PlaybackGrants:
        if self._grants is None:
            self._grants = PlaybackGrants(ctx.services.keyring)
        return self._grants

    def ledger(self, ctx: WebContext) -> DisclosureLedger:
        key = id(ctx.services)
        if key not in self._ledgers:
            services = ctx.services
            self._ledgers[key] = DisclosureLedger(
                services.catalog.database, services.audit, clock=services.clock
            )
        return self._ledgers[key]

    def routes(self) -> list[web.RouteDef]:
        """The route table to pass to :func:`streams.web.build_web_app`."""
        return [
            web.get("/", self.index),
            web.get("/static/{name}", self.static),
            web.get("/v1/recordings", self.list_recordings),
            web.get("/v1/recordings/{recording_id}", self.recording),
            web.post("/v1/recordings/{recording_id}/grants", self.issue_grant),
            web.get("/v1/recordings/{recording_id}/audio", self.audio, allow_head=False),
            web.get("/v1/audit", self.audit_entries),
            web.get("/v1/disclosures", self.disclosures),
        ]

    # -- page ------------------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.StreamResponse:
        body = resources.files("streams").joinpath("static/index.html").read_bytes()
        return web.Response(
            body=body, content_type="text/html", charset="utf-8", headers=_PAGE_HEADERS
        )

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in _STATIC:
            return json_error(404, "not-found", "no such file")
        body = resources.files("streams").joinpath(f"static/{name}").read_bytes()
        return web.Response(
            body=body, content_type=_STATIC[name], charset="utf-8", headers=_PAGE_HEADERS
        )

    # -- helpers -----------------------------------------------------------------------------
    def _count(self, ctx: WebContext, principal: Principal, action: str, purpose: str | None,
               outcome: str, reason: str) -> None:  # fmt: skip
        policy = ctx.services.policy
        role = principal.role if principal.role in policy.roles else "other"
        label = "none" if purpose is None else purpose if purpose in policy.purposes else "other"
        ctx.metrics.access_decisions.labels(outcome, reason, role, label, action).inc()

    async def _audit(self, request: web.Request, draft: AuditDraft) -> AuditEntry:
        entry: AuditEntry = await _run(request, ctx_of(request).services.audit.append, draft)
        return entry

    @staticmethod
    def _draft(principal: Principal, action: str, outcome: str, reason: str,
               recording_id: str | None, **details: Any) -> AuditDraft:  # fmt: skip
        base: dict[str, Any] = {"role": principal.role}
        if principal.org:
            base["org"] = principal.org
        base.update({k: v for k, v in details.items() if v is not None})
        return AuditDraft(
            actor=f"user:{principal.user}",
            action=action,
            outcome=outcome,
            reason=reason,
            recording_id=recording_id,
            details=base,
        )

    async def _deny(
        self,
        request: web.Request,
        principal: Principal,
        action: str,
        reason: str,
        recording_id: str | None,
        purpose: str | None = None,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        **details: Any,
    ) -> web.Response:
        """Audit a denial (durably), count it, and build its error response."""
        ctx = ctx_of(request)
        draft = self._draft(
            principal,
            f"access.{action}",
            "denied",
            reason,
            recording_id,
            purpose=purpose,
            **details,
        )
        try:
            await self._audit(request, draft)
        except AuditError as exc:
            log.error("audit write failed for a denial: %s", exc)
            return json_error(503, "audit-unavailable", "the decision could not be audited")
        self._count(ctx, principal, action, purpose, "denied", reason)
        if status is None:
            status = {
                str(Reason.NO_RECORDING): 404,
                str(Reason.RECORDING_NOT_STORED): 410,
                RATE_LIMITED: 429,
            }.get(reason, 403)
        error = {404: "not-found", 410: "gone", 429: "rate-limited"}.get(status, "forbidden")
        response = json_error(status, error, _DETAILS.get(reason, f"denied: {reason}"), reason)
        for name, value in (headers or {}).items():
            response.headers[name] = value
        return response

    async def _row(self, request: web.Request, recording_id: str) -> RecordingRow | None:
        row: RecordingRow | None = await _run(
            request, ctx_of(request).services.catalog.get_recording, recording_id
        )
        return row

    @staticmethod
    def _usable(
        principal: Principal, row: RecordingRow, ctx: WebContext, now: datetime
    ) -> list[str]:
        policy = ctx.services.policy
        role = policy.roles.get(principal.role)
        if role is None:
            return []
        facts = facts_of(row)
        return [p for p in role.purposes if could_use(principal, facts, policy, now, purpose=p)]

    # -- GET /v1/recordings --------------------------------------------------------------------
    async def list_recordings(self, request: web.Request) -> web.StreamResponse:
        ctx = ctx_of(request)
        principal = await authenticate(request)
        now = ctx.now()
        policy = ctx.services.policy
        query = request.query
        try:
            purpose = _text(query, "purpose")
            if purpose is not None and purpose not in policy.purposes:
                raise BadRequest(f"unknown purpose {purpose!r}", str(Reason.UNKNOWN_PURPOSE))
            filters: dict[str, Any] = {
                "agent_id": _text(query, "agent"),
                "queue": _text(query, "queue"),
                "tenant": _text(query, "tenant"),
                "started_from": _when(query, "from", end=False),
                "started_to": _when(query, "to", end=True),
            }
            limit = _int(query, "limit", 50, 1, _MAX_LIST)
            cursor = _text(query, "after")
        except BadRequest as exc:
            return _bad(exc)
        decision = decide_access(principal, AccessRequest("list", purpose), None, policy, now)
        used = sorted(name for name, value in filters.items() if value is not None)
        if not decision.allowed:
            return await self._deny(
                request, principal, "list", str(decision.reason), None, purpose, filters=used
            )
        if purpose is not None and policy.purposes[purpose].tag_bound:
            filters["purpose"] = purpose

        def scan() -> tuple[list[tuple[RecordingRow, list[str]]], str | None]:
            found: list[tuple[RecordingRow, list[str]]] = []
            after, scanned = cursor, 0
            batch = min(1000, max(100, 2 * limit))
            while scanned < _MAX_SCAN:
                rows = ctx.services.catalog.list_recordings(
                    **filters, states=(RecordingState.STORED,), after=after, limit=batch
                )
                for row in rows:
                    scanned += 1
                    after = listing_cursor(row)
                    if purpose is None:
                        usable = self._usable(principal, row, ctx, now)
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
            page, next_cursor = await _run(request, scan)
        except CatalogError as exc:
            if "cursor" in str(exc):
                return _bad(BadRequest("invalid 'after' cursor"))
            raise
        draft = self._draft(
            principal, "access.list", "granted", str(Reason.GRANTED), None,
            purpose=purpose, filters=used, count=len(page),
        )  # fmt: skip
        try:
            await self._audit(request, draft)
        except AuditError as exc:
            log.error("audit write failed for a listing: %s", exc)
            return json_error(503, "audit-unavailable", "the listing could not be audited")
        self._count(ctx, principal, "list", purpose, "granted", str(Reason.GRANTED))
        return web.json_response(
            {
                "recordings": [public_recording(row, usable) for row, usable in page],
                "next": next_cursor,
            },
            headers={"Cache-Control": "no-store"},
        )

    # -- GET /v1/recordings/{id} ---------------------------------------------------------------
    async def recording(self, request: web.Request) -> web.StreamResponse:
        ctx = ctx_of(request)
        principal = await authenticate(request)
        now = ctx.now()
        try:
            rid = _recording_id(request)
            purpose = _text(request.query, "purpose")
        except BadRequest as exc:
            return _bad(exc)
        policy = ctx.services.policy
        ask = AccessRequest("metadata", purpose)
        row = await self._row(request, rid)
        decision = decide_access(
            principal, ask, None if row is None else facts_of(row), policy, now
        )
        if row is None and decision.reason is Reason.NO_RECORDING:
            # Only a caller who may list learns that an id does not exist.
            return await self._deny(request, principal, "metadata", str(Reason.NO_RECORDING), rid)
        if not decision.allowed or row is None:
            return await self._deny(
                request, principal, "metadata", str(decision.reason), rid, purpose
            )
        try:
            await self._audit(
                request,
                self._draft(principal, "access.metadata", "granted", str(Reason.GRANTED), rid,
                            purpose=purpose),
            )  # fmt: skip
        except AuditError as exc:
            log.error("audit write failed for metadata: %s", exc)
            return json_error(503, "audit-unavailable", "the request could not be audited")
        self._count(ctx, principal, "metadata", purpose, "granted", str(Reason.GRANTED))
        return web.json_response(
            public_recording(row, self._usable(principal, row, ctx, now)),
            headers={"Cache-Control": "no-store"},
        )

    # -- audio decisions -----------------------------------------------------------------------
    def _ask(self, principal: Principal, values: Mapping[str, str]) -> _AudioAsk:
        mode = (values.get("mode") or "play").strip()
        if mode not in ("play", "download"):
            raise BadRequest("mode must be play or download")
        purpose = _text(values, "purpose")
        justification = _evidence(_text(values, "justification"), "justification")
        legal_basis = _text(values, "legal_basis")
        reference = _text(values, "reference")
        if reference is not None and not REFERENCE_PATTERN.match(reference):
            raise BadRequest(
                "reference must be a case or request id (letters, digits, . _ : / # -)"
            )
        return _AudioAsk(
            principal,
            AccessRequest(mode, purpose, justification, legal_basis, reference),
            mode,
        )

    async def _decide_audio(
        self,
        request: web.Request,
        ask: _AudioAsk,
        rid: str,
        *,
        prefetch: bool = False,
        **details: Any,
    ) -> tuple[RecordingRow | None, web.Response | int, asyncio.Future[PreparedAudio] | None]:
        """Decide, rate-guard and audit one audio request.

        Returns the row, then either the error response (already audited) or the seq
        of the committed audit record of the grant, then (``prefetch``) the reading of
        the object's first window, started once the decision allowed it so that it
        overlaps the audit commit; nothing of it is sent unless the commit succeeded."""
        ctx = ctx_of(request)
        now = ctx.now()
        policy = ctx.services.policy
        principal, mode, purpose = ask.principal, ask.mode, ask.request.purpose
        row = await self._row(request, rid)
        decision = decide_access(
            principal, ask.request, None if row is None else facts_of(row), policy, now
        )
        if row is None and decision.reason is Reason.NO_RECORDING:
            decision = _missing_decision(principal, ask.request, policy)
        if not decision.allowed or row is None:
            denial = await self._deny(
                request, principal, mode, str(decision.reason), rid, purpose, **details
            )
            return row, denial, None
        verdict = self.rate_guard(ctx).admit(principal, rid, now)
        if not verdict.allowed:
            ctx.metrics.rate_guard_trips.labels(
                principal.role if principal.role in policy.roles else "other"
            ).inc()
            denial = await self._deny(
                request, principal, mode, RATE_LIMITED, rid, purpose,
                headers={"Retry-After": str(verdict.retry_after)},
                limit=verdict.limit, **details,
            )  # fmt: skip
            return row, denial, None
        draft = self._draft(
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
        prepared = self._prefetch(request, row) if prefetch else None
        try:
            if policy.purposes[purpose].tag_bound:
                seq = (await self._audit(request, draft)).seq
            else:
                disclosure = await _run(
                    request,
                    lambda: self.ledger(ctx).record(
                        recording_id=rid,
                        tenant=row.tenant,
                        actor=draft.actor,
                        role=principal.role,
                        org=principal.org,
                        purpose=purpose,
                        legal_basis=ask.request.legal_basis,
                        reference=ask.request.reference or "",
                        mode=mode,
                        audit=draft,
                    ),
                )
                seq = disclosure.audit_seq
        except (AuditError, CatalogError) as exc:
            log.error("audit write failed; no audio is sent: %s", exc)
            if prepared is not None:
                prepared.cancel()
            return (
                row,
                json_error(
                    503, "audit-unavailable", "the access could not be audited; no audio was sent"
                ),
                None,
            )
        self._count(ctx, principal, mode, purpose, "granted", str(Reason.GRANTED))
        return row, seq, prepared

    # -- POST /v1/recordings/{id}/grants -------------------------------------------------------
    async def issue_grant(self, request: web.Request) -> web.StreamResponse:
        ctx = ctx_of(request)
        principal = await authenticate(request)
        try:
            rid = _recording_id(request)
            if request.content_type != "application/json":
                raise BadRequest("send a JSON object (Content-Type: application/json)")
            try:
                body = await request.json()
            except ValueError:
                raise BadRequest("body is not JSON") from None
            if not isinstance(body, dict) or not all(
                isinstance(v, str) for v in body.values() if v is not None
            ):
                raise BadRequest("body must be a JSON object of strings")
            ask = self._ask(principal, {k: v for k, v in body.items() if v is not None})
        except BadRequest as exc:
            return _bad(exc)
        row, outcome, _ = await self._decide_audio(request, ask, rid, via="grant")
        if isinstance(outcome, web.Response):
            return outcome
        assert row is not None and ask.request.purpose is not None
        expires = ctx.now() + self.grant_ttl + timedelta(milliseconds=row.duration_ms)
        grant = self.grants(ctx).issue(
            PlaybackGrant(principal, rid, ask.request.purpose, ask.mode, expires, outcome)
        )
        return web.json_response(
            {
                "url": f"/v1/recordings/{rid}/audio?grant={grant}",
                "grant_id": outcome,
                "mode": ask.mode,
                "purpose": ask.request.purpose,
                "expires_at": expires.isoformat(),
            },
            status=201,
            headers={"Cache-Control": "no-store"},
        )

    # -- GET /v1/recordings/{id}/audio ---------------------------------------------------------
    async def audio(self, request: web.Request) -> web.StreamResponse:
        try:
            rid = _recording_id(request)
        except BadRequest as exc:
            return _bad(exc)
        range_header = request.headers.get("Range")
        grant_text = request.query.get("grant")
        if grant_text is not None:
            return await self._audio_by_grant(request, rid, grant_text, range_header)
        principal = await authenticate(request)
        try:
            ask = self._ask(principal, request.query)
        except BadRequest as exc:
            return _bad(exc)
        continuation = range_header is not None and not _starts_at_zero(range_header)
        row, outcome, prepared = await self._decide_audio(
            request, ask, rid, prefetch=True, via="bearer",
            range=(range_header or "")[:64] or None, continuation=continuation,
        )  # fmt: skip
        if isinstance(outcome, web.Response):
            return outcome
        assert row is not None and prepared is not None
        return await self._send_audio(request, row, ask.principal, ask.mode, prepared)

    async def _audio_by_grant(
        self, request: web.Request, rid: str, grant_text: str, range_header: str | None
    ) -> web.StreamResponse:
        ctx = ctx_of(request)
        now = ctx.now()
        try:
            grant = self.grants(ctx).verify(grant_text, rid, now)
        except AuthError as exc:
            await _run(
                request,
                ctx.services.audit.append,
                AuditDraft(
                    actor="anonymous",
                    action="auth.denied",
                    outcome="denied",
                    reason=exc.reason,
                    recording_id=None,
                    details={"route": "/v1/recordings/{recording_id}/audio"},
                ),
            )
            return json_error(401, "unauthorized", exc.detail, reason=exc.reason)
        row = await self._row(request, rid)
        policy = ctx.services.policy
        if row is None or not could_use(grant.principal, facts_of(row), policy, now, grant.purpose):
            # The state changed since the grant (restricted, erased, contract ended):
            # decide again to name the reason, and audit the denial.
            # could_use failed, so the principal or purpose checks (which precede the
            # evidence checks) name the reason.
            decision = decide_access(
                grant.principal,
                AccessRequest(grant.mode, grant.purpose),
                None if row is None else facts_of(row),
                policy,
                now,
            )
            reason = str(Reason.NO_RECORDING) if row is None else str(decision.reason)
            return await self._deny(
                request, grant.principal, grant.mode, reason, rid, grant.purpose,
                via="grant", grant_id=grant.grant_id,
            )  # fmt: skip
        prepared = self._prefetch(request, row)
        return await self._send_audio(request, row, grant.principal, grant.mode, prepared)

    # -- streaming -----------------------------------------------------------------------------
    def _prefetch(self, request: web.Request, row: RecordingRow) -> asyncio.Future[PreparedAudio]:
        """Start reading the object and decrypting the first window (no side effects)."""
        ctx = ctx_of(request)
        return asyncio.get_running_loop().run_in_executor(
            None,
            prepare_audio,
            ctx.services.vault,
            ctx.services.keys,
            row,
            request.headers.get("Range"),
            request.headers.get("If-Range"),
            self.first_window,
        )

    async def _send_audio(
        self,
        request: web.Request,
        row: RecordingRow,
        principal: Principal,
        mode: str,
        prepared: asyncio.Future[PreparedAudio],
    ) -> web.StreamResponse:
        ctx = ctx_of(request)
        try:
            audio = await prepared
        except AudioFailure as failure:
            return await self._failed(request, principal, row, mode, failure)
        except RangeNotSatisfiable as exc:
            return web.json_response(
                {"error": "range-not-satisfiable", "detail": f"the audio has {exc.size} bytes"},
                status=416,
                headers={"Content-Range": f"bytes */{exc.size}", "Accept-Ranges": "bytes"},
            )
        served = ctx.metrics.audio_bytes_served.labels(mode)

        async def failed(failure: AudioFailure) -> None:
            await self._failed(request, principal, row, mode, failure)

        return await stream_audio(
            request,
            audio,
            filename=f"{row.recording_id}.wav" if mode == "download" else None,
            window=self.window,
            on_bytes=served.inc,
            on_failure=failed,
        )

    async def _failed(
        self,
        request: web.Request,
        principal: Principal,
        row: RecordingRow,
        mode: str,
        failure: AudioFailure,
    ) -> web.Response:
        ctx = ctx_of(request)
        if failure.is_integrity:
            ctx.metrics.integrity_failures.inc()
            log.error(
                "integrity failure reading recording %s: %s", row.recording_id, failure.detail
            )
        action = "access.integrity-failure" if failure.is_integrity else f"access.{mode}"
        try:
            await self._audit(
                request,
                self._draft(principal, action, "failed", failure.reason, row.recording_id,
                            mode=mode),
            )  # fmt: skip
        except AuditError as exc:
            log.error("audit write failed for a read failure: %s", exc)
        return json_error(failure.status, failure.error, failure.detail, failure.reason)

    # -- GET /v1/audit ----------------------------------------------------------------------------
    async def audit_entries(self, request: web.Request) -> web.StreamResponse:
        ctx = ctx_of(request)
        principal = await require(request, "read-audit")
        try:
            after = _int(request.query, "after_seq", 0, 0, 2**62)
            limit = _int(request.query, "limit", 100, 1, 1000)
            rid = _text(request.query, "recording_id")
            action = _text(request.query, "action")
        except BadRequest as exc:
            return _bad(exc)

        def read() -> list[AuditEntry]:
            return list(
                ctx.services.audit.iter_entries(
                    after_seq=after, limit=limit, recording_id=rid, action_prefix=action
                )
            )

        entries = await _run(request, read)
        await self._audit(
            request,
            self._draft(principal, "audit.read", "ok", "", None, after_seq=after,
                        count=len(entries), filtered=rid is not None or action is not None),
        )  # fmt: skip
        return web.json_response(
            {
                "entries": [_entry_json(entry) for entry in entries],
                "next_after_seq": entries[-1].seq if len(entries) == limit else None,
            },
            headers={"Cache-Control": "no-store"},
        )

    # -- GET /v1/disclosures ----------------------------------------------------------------------
    async def disclosures(self, request: web.Request) -> web.StreamResponse:
        ctx = ctx_of(request)
        await require(request, "read-audit")
        try:
            rid = _text(request.query, "recording_id")
            limit = _int(request.query, "limit", 100, 1, 1000)
        except BadRequest as exc:
            return _bad(exc)
        rows = await _run(request, lambda: self.ledger(ctx).list(recording_id=rid, limit=limit))
        return web.json_response(
            {
                "disclosures": [
                    {**d.__dict__, "disclosed_at": d.disclosed_at.isoformat()} for d in rows
                ]
            },
            headers={"Cache-Control": "no-store"},
        )


_DETAILS: dict[str, str] = {
    str(Reason.NO_RECORDING): "no such recording",
    str(Reason.RECORDING_NOT_STORED): "the recording has expired or was erased",
    str(Reason.RECORDING_RESTRICTED): "the customer asked to stop using this recording",
    str(Reason.PURPOSE_NOT_TAGGED): "the recording was not collected for this purpose",
    str(Reason.ROLE_NOT_ALLOWED_PURPOSE): "your role may not use recordings for this purpose",
    str(Reason.NO_PURPOSE): "state the purpose of use",
    str(Reason.UNKNOWN_PURPOSE): "the policy does not define this purpose",
    str(Reason.JUSTIFICATION_REQUIRED): "state a justification (e.g. the evaluation id)",
    str(Reason.LEGAL_BASIS_REQUIRED): "a disclosure needs a legal basis",
    str(Reason.LEGAL_BASIS_UNKNOWN): "the legal basis is not in the policy's closed list",
    str(Reason.REFERENCE_REQUIRED): "a disclosure needs a case or request reference",
    str(Reason.CONTRACT_NOT_LIVE): "your organisation's entrustment contract is not live",
    str(Reason.NO_ORG): "an entrusted role needs an organisation",
    str(Reason.UNKNOWN_ORG): "your organisation is not an entrusted organisation",
    str(Reason.CAPABILITY_NOT_GRANTED): "your role may not do this",
    str(Reason.UNKNOWN_ROLE): "your role is not defined by the policy",
    RATE_LIMITED: "too many recordings in the last hour; try again later",
}


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


def qa_routes(**options: Any) -> list[web.RouteDef]:
    """Shorthand: ``QaAccess(**options).routes()``."""
    return QaAccess(**options).routes()
