"""Audio access: the purpose-bound decision, playback grants and the audio stream.

``POST /v1/recordings/{id}/grants`` decides, rate-guards and audits once and returns a
signed playback URL; ``GET /v1/recordings/{id}/audio`` serves the decrypted WAV under
a bearer token (one decision and audit record per request) or a playback grant (the
state of the recording re-checked per request, not audited again). The audit record
of a grant is committed before the first audio byte goes out (see :mod:`streams.http.recordings`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiohttp import web

from policies import (
    AccessDecision,
    AccessRequest,
    Decision,
    Principal,
    Reason,
    could_use,
    decide_access,
)
from storage.catalog.audit import AuditDraft
from storage.catalog.disclosures import REFERENCE_PATTERN
from storage.errors import AuditError, CatalogError
from storage.types import RecordingRow
from streams.facts import facts_of
from streams.http.app import _run, audit_or_503, authenticate, ctx_of, json_error
from streams.http.audio_stream import AudioFailure, PreparedAudio, prepare_audio, stream_audio
from streams.http.auth import AuthError
from streams.http.decisions import QaViews
from streams.http.params import BadRequest, bad_request, check_evidence, query_text, recording_id_of
from streams.http.playback import PlaybackGrant
from streams.http.ranges import RangeNotSatisfiable
from streams.http.rateguard import RATE_LIMITED

__all__ = ["AudioViews"]

# Records keep the logger name they had before the QA views were split into modules.
log = logging.getLogger("streams.http.recordings")


@dataclass
class _AudioAsk:
    principal: Principal
    request: AccessRequest
    mode: str


class AudioViews(QaViews):
    """``POST /v1/recordings/{id}/grants`` and ``GET /v1/recordings/{id}/audio``."""

    # -- audio decisions -----------------------------------------------------------------------
    def _ask(self, principal: Principal, values: Mapping[str, str]) -> _AudioAsk:
        mode = (values.get("mode") or "play").strip()
        if mode not in ("play", "download"):
            raise BadRequest("mode must be play or download")
        purpose = query_text(values, "purpose")
        justification = check_evidence(query_text(values, "justification"), "justification")
        legal_basis = query_text(values, "legal_basis")
        reference = query_text(values, "reference")
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
            rid = recording_id_of(request)
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
            return bad_request(exc)
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
            rid = recording_id_of(request)
        except BadRequest as exc:
            return bad_request(exc)
        range_header = request.headers.get("Range")
        grant_text = request.query.get("grant")
        if grant_text is not None:
            return await self._audio_by_grant(request, rid, grant_text, range_header)
        principal = await authenticate(request)
        try:
            ask = self._ask(principal, request.query)
        except BadRequest as exc:
            return bad_request(exc)
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
            await audit_or_503(
                request,
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
