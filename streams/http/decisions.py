"""What every QA view shares: its collaborators and its audited decisions.

:class:`QaViews` holds the rate guard, the playback grant signer and the disclosure
ledger (built from the web context's services when not given), and the helpers that
audit a decision (durably, before the response), count it in the metrics and build
its error response. The views themselves are mixins over it: :mod:`streams.http.audio`
(grants and audio), :mod:`streams.http.audit` (audit log and disclosure ledger) and
:class:`streams.http.recordings.QaAccess` (listing, metadata, the page, the route table).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from aiohttp import web

from policies import Principal, Reason
from storage.catalog.audit import AuditDraft
from storage.catalog.disclosures import DisclosureLedger
from storage.errors import AuditError
from storage.types import AuditEntry, RecordingRow
from streams.http.app import WebContext, _run, ctx_of, json_error
from streams.http.playback import PlaybackGrants
from streams.http.rateguard import RATE_LIMITED, RateGuard

__all__ = ["QaViews", "public_recording"]

# Records keep the logger name they had before the QA views were split into modules.
log = logging.getLogger("streams.http.recordings")


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


class QaViews:
    """The base of the QA views. Collaborators: the rate guard and the grant signer (built from the
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
