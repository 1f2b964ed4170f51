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
  the disclosure ledger (:mod:`storage.catalog.disclosures`) in the same transaction as
  their audit record.
- The rate guard (:mod:`streams.http.rateguard`) limits distinct recordings per principal
  per hour; over the limit: 429 ``rate-limited`` (audited, metric
  ``callvault_access_rate_guard_trips_total{role}``).
- Audio is decrypted chunk by chunk, only the chunks a range covers
  (:mod:`streams.http.audio_stream`); the first window is authenticated before the status
  line goes out, so a tampered object gives 502 ``integrity-failure`` (audited, metric)
  and no byte. A chunk that fails later in a long response cuts the connection before
  any of its bytes (the client sees a short body); bytes are never sent unauthenticated.
- The stored WAV is served as stored (G.711 mu-law/A-law or PCM16): Chromium plays
  G.711 WAV natively (verified by the browser test), so no transcoding happens and
  byte ranges map 1:1 onto the stored plaintext.
- Responses never carry ``subject_ref``, object keys or subject key ids.

Modules: this one has :class:`QaAccess` (the route table, the page, listing and
metadata); grants and audio are in :mod:`streams.http.audio`, ``/v1/audit`` and
``/v1/disclosures`` in :mod:`streams.http.audit`, the shared base (collaborators,
audited denials) in :mod:`streams.http.decisions`, parameter parsing in :mod:`streams.http.params`.
"""

from __future__ import annotations

import logging
from datetime import datetime
from importlib import resources
from typing import Any

from aiohttp import web

from policies import AccessRequest, Principal, Reason, could_use, decide_access
from storage.catalog import listing_cursor
from storage.errors import AuditError, CatalogError
from storage.types import RecordingRow, RecordingState
from streams.facts import facts_of
from streams.http.app import WebContext, _run, authenticate, ctx_of, json_error
from streams.http.audio import AudioViews
from streams.http.audit import AuditViews
from streams.http.decisions import public_recording
from streams.http.params import (
    BadRequest,
    bad_request,
    query_int,
    query_text,
    query_when,
    recording_id_of,
)

__all__ = ["QaAccess", "qa_routes", "public_recording", "facts_of", "BadRequest"]

log = logging.getLogger(__name__)

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


class QaAccess(AudioViews, AuditViews):
    """The QA views (constructor: :class:`streams.http.decisions.QaViews`): listing and
    metadata here, grants and audio in :class:`streams.http.audio.AudioViews`, the audit
    log and disclosure ledger in :class:`streams.http.audit.AuditViews`."""

    def routes(self) -> list[web.RouteDef]:
        """The route table to pass to :func:`streams.http.app.build_web_app`."""
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
        body = resources.files("streams.http").joinpath("static/index.html").read_bytes()
        return web.Response(
            body=body, content_type="text/html", charset="utf-8", headers=_PAGE_HEADERS
        )

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in _STATIC:
            return json_error(404, "not-found", "no such file")
        body = resources.files("streams.http").joinpath(f"static/{name}").read_bytes()
        return web.Response(
            body=body, content_type=_STATIC[name], charset="utf-8", headers=_PAGE_HEADERS
        )

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
            purpose = query_text(query, "purpose")
            if purpose is not None and purpose not in policy.purposes:
                raise BadRequest(f"unknown purpose {purpose!r}", str(Reason.UNKNOWN_PURPOSE))
            filters: dict[str, Any] = {
                "agent_id": query_text(query, "agent"),
                "queue": query_text(query, "queue"),
                "tenant": query_text(query, "tenant"),
                "started_from": query_when(query, "from", end=False),
                "started_to": query_when(query, "to", end=True),
            }
            limit = query_int(query, "limit", 50, 1, _MAX_LIST)
            cursor = query_text(query, "after")
        except BadRequest as exc:
            return bad_request(exc)
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
                return bad_request(BadRequest("invalid 'after' cursor"))
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
            rid = recording_id_of(request)
            purpose = query_text(request.query, "purpose")
        except BadRequest as exc:
            return bad_request(exc)
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


def qa_routes(**options: Any) -> list[web.RouteDef]:
    """Shorthand: ``QaAccess(**options).routes()``."""
    return QaAccess(**options).routes()
