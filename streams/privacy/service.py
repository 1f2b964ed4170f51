"""Customers' privacy requests: disclose, restrict, lift-restriction, erase, correct,
contract-terminated. Shared by the ``callvault.privacy-requests`` agent, the HTTP API
and the CLI.

A request (JSON)::

    {"type": "erase", "tenant": "acme", "customer_ref": "C-1001",
     "request_id": "PR-2026-0042",                      # optional idempotency key
     "identity_verification": {"verified_by": "officer-7", "method": "id-document",
                               "verified_at": "2026-11-20T09:00:00+00:00"},
     "received_at": "2026-11-20T08:55:00+00:00"}         # optional, default now

What a caller may rely on:

- :func:`parse_privacy_request` validates; a bad request raises
  :class:`PrivacyRequestRejected` with a stable ``reason`` code and is never stored.
  Customer-originated types need ``identity_verification`` with ``verified_by`` and a
  ``method`` from :data:`VERIFICATION_METHODS`; ``contract-terminated`` comes from the
  billing system and needs ``terminated_at`` instead.
- The customer reference is turned into the pseudonymous ``subject_ref`` at once
  (``KeyService.subject_ref``) and never stored or audited in clear.
- The workflow (:mod:`storage.catalog.requests`): ``received`` -> ``verified`` ->
  ``approved`` | ``refused`` (closed reasons :class:`policies.RefusalReason` and a
  note) -> ``executing`` -> ``completed`` | ``held`` | ``failed``, each step with its
  time and who took it. :meth:`PrivacyService.submit` stores the request, due
  ``received_at + policy.request_days(kind)`` (the SLA per kind), ``received`` without
  an identity verification, else ``verified`` and (unless ``"approve": false``)
  approved by its filer and carried out at once; :meth:`~PrivacyService.verify`,
  :meth:`~PrivacyService.approve` and :meth:`~PrivacyService.refuse` take the other
  steps. Re-submitting the same ``request_id`` returns the stored request; one that
  ``failed`` is processed again and continues where it stopped (every step is
  idempotent). Only approved requests are ever carried out.
- ``erase``: a legal hold wins (policies.erasure_decision). Without holds: the subject
  key is destroyed first (crypto-shredding: every copy, backup and old version of
  every recording of the customer becomes unreadable at that instant), then every
  object version is deleted, then each row becomes a tombstone (state ``erased``,
  no subject_ref, call_id or agent_id) with its audit record and a signed receipt.
  With holds: the held recordings are kept (and restricted: no use but legal
  disclosure), the others are erased, the subject key is kept (the held recordings
  need it) and the request is ``held``; :meth:`PrivacyService.resume_held` (run by
  every sweep) finishes it once the holds are released.
- **Resuming**: :meth:`PrivacyService.resume_held` (every sweep, so also at worker
  start) also processes again every approved request left ``approved``, ``executing``
  (a crash inside processing) or ``failed``, and every request that still has deletion
  intents, after deleting objects an interrupted correction superseded. Every request
  type is idempotent: erase continues from its intents (receipts once), restrict and
  lift set only what differs, disclose signs its manifest again (a release already
  in the disclosure ledger for the request is not recorded twice), correct skips
  recordings already corrected.
- ``disclose``: every recording held about the customer (any state) with purposes,
  dates and state, and a **signed export manifest** (:mod:`storage.catalog.exports`)
  naming the recordings the policy releases for ``customer-disclosure`` (reference =
  the request id) and why the others are withheld; each release recorded in the
  disclosure ledger and the audit log. Nothing is decrypted or written to disk: a
  compliance officer downloads the ZIP from ``GET /v1/privacy-requests/{id}/export``
  (decrypted on the fly, until ``exports.expiry_days``; 410 after an erasure).
- The customer reference must be canonical (:mod:`storage.customer`), refused
  ``customer-ref-not-canonical`` otherwise; audit records name the customer only
  sealed under their subject key (:mod:`storage.subjectdetails`).
- ``erase`` also journals what it erases in the vault (:mod:`storage.erasures`),
  re-applied after a catalog restore (:mod:`streams.privacy.reapply`).
- ``restrict`` / ``lift-restriction``: ``Catalog.set_restricted`` on the customer's
  stored recordings (audited per recording).
- ``correct``: ``corrections`` may fix the customer reference (the recordings are
  re-keyed: decrypted and sealed again under the right customer's subject key, stored
  under a new object key, the old object deleted, so erasing the right customer later
  covers them) and ``queue`` / ``agent_id``. Audited with keyed before/after digests,
  never values. ``recording_ids`` limits it to some recordings (default: all stored).

Modules: this one has :class:`PrivacyService` (filing, dispatching, resuming);
the kinds and their one registry of handlers are in :mod:`streams.privacy.kinds`,
validation in :mod:`streams.privacy.input`, the handlers' shared collaborators in
:mod:`streams.privacy.context`, and one module per kind: ``disclose``, ``restrict``
(restrict, lift-restriction), ``erase``, ``correct``, ``terminate``
(contract-terminated).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from callvault.errors import CallvaultError
from policies import RefusalReason
from storage.catalog import AuditDraft, PrivacyRequest, PrivacyRequestStore, RequestStatus
from storage.catalog.audit import check_details
from storage.catalog.requests import RUNNABLE_STATUSES
from storage.errors import PrivacyRequestError, PrivacyRequestNotFound
from storage.subjectdetails import sealed_subject
from storage.types import RecordingState
from storage.vault import Vault
from streams.errors import PrivacyRequestRejected
from streams.metrics import Metrics
from streams.privacy.context import PrivacyContext, RequestHandler
from streams.privacy.input import parse_identity, parse_privacy_request
from streams.privacy.kinds import RequestKind, handler_class
from streams.retention import RetentionService
from streams.services import Services

__all__ = ["PrivacyService"]

log = logging.getLogger(__name__)


class PrivacyService:
    """Files privacy requests and hands each to the handler of its kind (see the module
    docstring); every collaborator comes from ``services``."""

    def __init__(
        self,
        services: Services,
        *,
        retention: RetentionService,
        actor: str,
        metrics: Metrics | None = None,
    ) -> None:
        self.ctx = PrivacyContext(
            services=services,
            retention=retention,
            actor=actor,
            vault=services.vault,
            metrics=metrics,
        )
        self._handlers: dict[RequestKind, RequestHandler] = {}

    @property
    def store(self) -> PrivacyRequestStore:
        return self.ctx.store

    @property
    def vault(self) -> Vault:
        return self.ctx.vault

    @vault.setter
    def vault(self, vault: Vault) -> None:
        self.ctx.vault = vault

    def handler(self, kind: RequestKind | str) -> RequestHandler:
        """The handler of ``kind`` (made once, over this service's context)."""
        kind = RequestKind(kind)
        if kind not in self._handlers:
            self._handlers[kind] = handler_class(kind)(self.ctx)
        return self._handlers[kind]

    # -- filing -----------------------------------------------------------------------------
    def submit(self, data: Any, *, requested_by: str) -> PrivacyRequest:
        """Validate and store a request; carry it out when it is approved at filing.

        A request without ``identity_verification`` stays ``received`` (then
        :meth:`verify`, :meth:`approve` or :meth:`refuse`); with it, it is ``verified``
        and, unless the body says ``"approve": false``, approved by its filer and carried
        out at once (what a request filed before the workflow did). ``contract-terminated``
        (from billing, no identity to verify) is always approved at filing.

        Raises:
            PrivacyRequestRejected: the request is malformed (nothing is stored).
            CallvaultError: the catalog or vault failed; the request is stored with
                status ``failed`` and is processed again when re-submitted.
        """
        ctx = self.ctx
        now = ctx.clock()
        parsed = parse_privacy_request(data, now=now)
        handler = self.handler(parsed.kind)
        subject_ref = ctx.keys.subject_ref(parsed.tenant, parsed.customer_ref)
        params: dict[str, Any] = handler.stored_params(parsed.tenant, parsed.kind_input)
        if parsed.recording_ids is not None:
            params["recording_ids"] = list(parsed.recording_ids)
        verified = parsed.verified_at is not None or not handler.needs_identity
        approved = verified and (parsed.approve or not handler.needs_identity)
        status = (
            RequestStatus.APPROVED
            if approved
            else RequestStatus.VERIFIED
            if parsed.verified_at is not None
            else RequestStatus.RECEIVED
        )
        request, created = ctx.store.create(
            PrivacyRequest(
                request_id=parsed.request_id,
                kind=parsed.kind.value,
                tenant=parsed.tenant,
                subject_ref=subject_ref,
                status=status,
                requested_by=requested_by,
                verified_by=parsed.verified_by,
                verification_method=parsed.verification_method,
                verified_at=parsed.verified_at,
                received_at=parsed.received_at,
                due_at=parsed.received_at + timedelta(days=ctx.policy.request_days(parsed.kind)),
                updated_at=now,
                params=params,
                decided_by=requested_by if approved else None,
                decided_at=now if approved else None,
            )
        )
        if created:
            ctx.catalog.audit.append(
                AuditDraft(
                    actor=f"user:{requested_by}",
                    action="privacy.received",
                    outcome="ok",
                    reason=parsed.kind.value,
                    details={
                        "request_id": request.request_id,
                        "type": parsed.kind.value,
                        "tenant": parsed.tenant,
                        # the customer, sealed under their key: shredded by an erasure
                        **sealed_subject(ctx.keys, subject_ref),
                        "verified_by": parsed.verified_by,
                        "verification_method": parsed.verification_method,
                        "due_at": request.due_at.isoformat(),
                        "status": status.value,
                    },
                )
            )
            if approved:
                ctx.audit(
                    request, "privacy.approved", "ok", {"by": requested_by, "at_filing": True}
                )
        elif request.subject_ref != subject_ref or request.kind != parsed.kind:
            raise PrivacyRequestRejected(
                "request-id-reused", f"request {request.request_id} exists for another request"
            )
        if request.status not in RUNNABLE_STATUSES:
            return request
        return self.process(request)

    # -- the workflow: verify, approve, refuse ----------------------------------------------
    def verify(self, request_id: str, identity: Any, *, by: str) -> PrivacyRequest:
        """Record the customer's verified identity (``{verified_by, method[, verified_at]}``):
        ``received`` -> ``verified``; audited ``privacy.verified``.

        Raises:
            PrivacyRequestNotFound: no such request.
            PrivacyRequestRejected: a malformed verification, or ``wrong-status``.
            CallvaultError: the catalog failed.
        """
        ctx = self.ctx
        verified_by, method, verified_at = parse_identity(identity, now=ctx.clock())
        request = ctx.store.get(request_id)
        try:
            done = ctx.store.verify(
                request, verified_by=verified_by, method=method, verified_at=verified_at
            )
        except PrivacyRequestError as exc:
            raise PrivacyRequestRejected("wrong-status", str(exc)) from None
        ctx.audit(done, "privacy.verified", "ok", {"by": by, "verified_by": verified_by,
                                                   "verification_method": method})  # fmt: skip
        self.refresh_gauges()
        return done

    def approve(self, request_id: str, *, by: str) -> PrivacyRequest:
        """Approve a verified request and carry it out (``approved`` -> ``executing`` ->
        ``completed`` | ``held``); audited ``privacy.approved``.

        Raises:
            PrivacyRequestNotFound: no such request.
            PrivacyRequestRejected: ``wrong-status`` (not verified, or decided already).
            CallvaultError: an infrastructure failure (the request is left ``failed``).
        """
        ctx = self.ctx
        request = ctx.store.get(request_id)
        try:
            approved = ctx.store.decide(request, by=by)
        except PrivacyRequestError as exc:
            raise PrivacyRequestRejected("wrong-status", str(exc)) from None
        ctx.audit(approved, "privacy.approved", "ok", {"by": by})
        return self.process(approved)

    def refuse(self, request_id: str, *, by: str, reason: str, note: str) -> PrivacyRequest:
        """Refuse a request that is not yet approved, for one of the closed reasons
        (:class:`policies.RefusalReason`) with a note (kept with the request, never in the
        audit log, which records the reason and the note's length); final.

        Raises:
            PrivacyRequestNotFound: no such request.
            PrivacyRequestRejected: ``bad-field`` (reason not in the list, no note, a note
                longer than 1000 characters), ``wrong-status``.
            AuditError: the note looks like personal data (an e-mail, a phone number).
            CallvaultError: the catalog failed.
        """
        ctx = self.ctx
        if reason not in set(RefusalReason):
            known = ", ".join(RefusalReason)
            raise PrivacyRequestRejected(
                "bad-field", f"refusal reason must be one of {known}, got {reason!r}"
            )
        if not isinstance(note, str) or not note.strip():
            raise PrivacyRequestRejected("bad-field", "a refusal needs a note saying why")
        note = note.strip()
        if len(note) > 1000:
            raise PrivacyRequestRejected("bad-field", "the note is longer than 1000 characters")
        check_details({"note": note})  # AuditError: it looks like personal data
        request = ctx.store.get(request_id)
        try:
            refused = ctx.store.decide(request, by=by, refusal_reason=reason, note=note)
        except PrivacyRequestError as exc:
            raise PrivacyRequestRejected("wrong-status", str(exc)) from None
        ctx.audit(refused, "privacy.refused", "ok", {"by": by, "refusal_reason": reason,
                                                     "note_chars": len(note)})  # fmt: skip
        self.refresh_gauges()
        return refused

    def get(self, request_id: str) -> PrivacyRequest:
        """The stored request.

        Raises:
            PrivacyRequestNotFound: no such request.
        """
        return self.ctx.store.get(request_id)

    def process(self, request: PrivacyRequest) -> PrivacyRequest:
        """Carry out a stored request (idempotent) with the handler of its kind.

        Raises:
            CallvaultError: an infrastructure failure (the request is left ``failed``).
        """
        ctx = self.ctx
        if request.status not in (*RUNNABLE_STATUSES, RequestStatus.HELD):
            return request  # not approved (or refused, or done): nothing to carry out
        handler = self.handler(request.kind)
        request = ctx.store.update(request, status=RequestStatus.EXECUTING)
        try:
            done = handler.execute(request)
        except CallvaultError as exc:
            log.error("privacy request %s failed: %s", request.request_id, exc)
            ctx.store.update(request, status=RequestStatus.FAILED, result={"error": str(exc)[:500]})
            ctx.audit(request, "privacy.failed", "failed", {"error": type(exc).__name__})
            self.refresh_gauges()
            raise
        ctx.audit(done, f"privacy.{done.status.value}", "ok", {"result": _summary(done.result)})
        self.refresh_gauges()
        return done

    def resume_held(self) -> list[str]:
        """Process again the erasures a legal hold blocked, and every request a crash or
        failure left open or with deletion intents (called by each sweep); returns the
        ids of held erasures that are now completed.

        Raises:
            CallvaultError: an infrastructure failure.
        """
        self.ctx.retention.finish_cleanups()
        finished: list[str] = []
        for request in self.ctx.store.list_requests(statuses=(RequestStatus.HELD,), kind="erase"):
            rows = self.ctx.rows(request, (RecordingState.STORED, RecordingState.EXPIRED))
            if not rows:
                continue
            if len(self.ctx.holds.holds_for(rows)) == len(rows):
                continue  # still every remaining recording held
            if self.process(request).status is RequestStatus.COMPLETED:
                finished.append(request.request_id)
        pending: list[PrivacyRequest] = []
        for request_id in dict.fromkeys(
            intent.request_id
            for intent in self.ctx.endoflife.pending_intents()
            if intent.request_id is not None
        ):
            try:
                pending.append(self.ctx.store.get(request_id))
            except PrivacyRequestNotFound:
                log.error("deletion intents of unknown privacy request %s", request_id)
        stuck = self.ctx.store.list_requests(statuses=RUNNABLE_STATUSES, limit=1000)
        seen: set[str] = set()
        for request in [*stuck, *pending]:
            if request.request_id in seen:
                continue
            seen.add(request.request_id)
            try:
                self.process(request)
            except CallvaultError:
                continue
        return finished

    def refresh_gauges(self) -> None:
        if self.ctx.metrics is None:
            return
        try:
            open_count, overdue = self.ctx.store.count_open(self.ctx.clock())
        except CallvaultError as exc:
            log.warning("privacy request gauges not refreshed: %s", exc)
            return
        self.ctx.metrics.privacy_requests_open.set(open_count)
        self.ctx.metrics.privacy_requests_overdue.set(overdue)


def _summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """Counts of a result (the audit record stays small)."""
    return {
        key: (len(value) if isinstance(value, (list, dict)) else value)
        for key, value in result.items()
        if key not in ("export_dir", "export")
    }
