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
- :meth:`PrivacyService.submit` stores the request (status ``received``, due
  ``received_at + policy.request_response_days``), processes it, and returns it with
  its status, progress and result. Re-submitting the same ``request_id`` returns the
  stored request; one that ``failed`` is processed again and continues where it
  stopped (every step is idempotent).
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
  start) also processes again every request left ``received``, ``in-progress`` (a
  crash inside processing) or ``failed``, and every request that still has deletion
  intents, after deleting objects an interrupted correction superseded. Every request
  type is idempotent: erase continues from its intents (receipts once), restrict and
  lift set only what differs, disclose writes its export again (a release already in
  the disclosure ledger for the request is not recorded twice), correct skips
  recordings already corrected.
- ``disclose``: every recording held about the customer (any state) with purposes,
  dates and state, and the decrypted audio of those the policy releases for
  ``customer-disclosure`` (reference = the request id) written as WAV files with a
  ``manifest.json`` under ``<data_dir>/exports/<request_id>/`` (mode 0600/0700), each
  release recorded in the disclosure ledger and the audit log.
- ``restrict`` / ``lift-restriction``: ``Catalog.set_restricted`` on the customer's
  stored recordings (audited per recording).
- ``correct``: ``corrections`` may fix the customer reference (the recordings are
  re-keyed: decrypted and sealed again under the right customer's subject key, stored
  under a new object key, the old object deleted, so erasing the right customer later
  covers them) and ``queue`` / ``agent_id``. Audited with keyed before/after digests,
  never values. ``recording_ids`` limits it to some recordings (default: all stored).

Modules: this one has :class:`PrivacyService` (filing, processing, restrict,
contract-terminated); validation is in :mod:`streams.privacy_input`, the constructor
and shared helpers in :mod:`streams.privacy_base`, and the larger request types in
:mod:`streams.privacy_export` (disclose), :mod:`streams.privacy_erasure` (erase) and
:mod:`streams.privacy_correction` (correct).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from callvault.errors import CallvaultError
from storage.catalog.audit import AuditDraft
from storage.catalog.requests import PrivacyRequest, PrivacyRequestNotFound, RequestStatus
from storage.types import RecordingState
from streams.privacy_correction import RecordCorrection
from streams.privacy_erasure import SubjectErasure
from streams.privacy_export import DisclosureExport
from streams.privacy_input import (
    REQUEST_TYPES,
    VERIFICATION_METHODS,
    PrivacyRequestRejected,
    RequestInput,
    parse_privacy_request,
)

__all__ = [
    "REQUEST_TYPES",
    "VERIFICATION_METHODS",
    "PrivacyRequestRejected",
    "PrivacyService",
    "RequestInput",
    "parse_privacy_request",
]

log = logging.getLogger(__name__)


class PrivacyService(DisclosureExport, SubjectErasure, RecordCorrection):
    """Files and carries out privacy requests (see the module docstring); the
    constructor and shared helpers are :class:`streams.privacy_base.PrivacyBase`."""

    # -- filing -----------------------------------------------------------------------------
    def submit(self, data: Any, *, requested_by: str) -> PrivacyRequest:
        """Validate, store and carry out a request; return it with its outcome.

        Raises:
            PrivacyRequestRejected: the request is malformed (nothing is stored).
            CallvaultError: the catalog or vault failed; the request is stored with
                status ``failed`` and is processed again when re-submitted.
        """
        now = self.clock()
        parsed = parse_privacy_request(data, now=now)
        subject_ref = self.keys.subject_ref(parsed.tenant, parsed.customer_ref)
        params: dict[str, Any] = {}
        if parsed.terminated_at is not None:
            params["terminated_at"] = parsed.terminated_at.isoformat()
        if parsed.recording_ids is not None:
            params["recording_ids"] = list(parsed.recording_ids)
        if parsed.corrections:
            params["corrections"] = {
                key: self._digest(parsed.tenant, key, value)
                for key, value in parsed.corrections.items()
            }
            if "customer_ref" in parsed.corrections:
                params["new_subject_ref"] = self.keys.subject_ref(
                    parsed.tenant, parsed.corrections["customer_ref"]
                )
            for key in ("queue", "agent_id"):
                if key in parsed.corrections:
                    # operational metadata, not a customer identifier: kept to apply it
                    params.setdefault("set", {})[key] = parsed.corrections[key]
        request, created = self.store.create(
            PrivacyRequest(
                request_id=parsed.request_id,
                kind=parsed.kind,
                tenant=parsed.tenant,
                subject_ref=subject_ref,
                status=RequestStatus.RECEIVED,
                requested_by=requested_by,
                verified_by=parsed.verified_by,
                verification_method=parsed.verification_method,
                verified_at=parsed.verified_at,
                received_at=parsed.received_at,
                due_at=parsed.received_at + timedelta(days=self.policy.request_response_days),
                updated_at=now,
                params=params,
            )
        )
        if created:
            self.catalog.audit.append(
                AuditDraft(
                    actor=f"user:{requested_by}",
                    action="privacy.received",
                    outcome="ok",
                    reason=parsed.kind,
                    details={
                        "request_id": request.request_id,
                        "type": parsed.kind,
                        "tenant": parsed.tenant,
                        "subject_ref": subject_ref,
                        "verified_by": parsed.verified_by,
                        "verification_method": parsed.verification_method,
                        "due_at": request.due_at.isoformat(),
                    },
                )
            )
        elif request.subject_ref != subject_ref or request.kind != parsed.kind:
            raise PrivacyRequestRejected(
                "request-id-reused", f"request {request.request_id} exists for another request"
            )
        if request.status in (RequestStatus.COMPLETED, RequestStatus.HELD):
            return request
        return self.process(request)

    def get(self, request_id: str) -> PrivacyRequest:
        """The stored request.

        Raises:
            PrivacyRequestNotFound: no such request.
        """
        return self.store.get(request_id)

    def process(self, request: PrivacyRequest) -> PrivacyRequest:
        """Carry out a stored request (idempotent); see the module docstring.

        Raises:
            CallvaultError: an infrastructure failure (the request is left ``failed``).
        """
        handler: dict[str, Callable[[PrivacyRequest], PrivacyRequest]] = {
            "disclose": self._disclose,
            "restrict": lambda r: self._restrict(r, True),
            "lift-restriction": lambda r: self._restrict(r, False),
            "erase": self._erase,
            "correct": self._correct,
            "contract-terminated": self._terminate,
        }
        request = self.store.update(request, status=RequestStatus.IN_PROGRESS)
        try:
            done = handler[request.kind](request)
        except CallvaultError as exc:
            log.error("privacy request %s failed: %s", request.request_id, exc)
            self.store.update(
                request, status=RequestStatus.FAILED, result={"error": str(exc)[:500]}
            )
            self._audit(request, "privacy.failed", "failed", {"error": type(exc).__name__})
            self.refresh_gauges()
            raise
        self._audit(done, f"privacy.{done.status.value}", "ok", {"result": _summary(done.result)})
        self.refresh_gauges()
        return done

    def resume_held(self) -> list[str]:
        """Process again the erasures a legal hold blocked, and every request a crash or
        failure left open or with deletion intents (called by each sweep); returns the
        ids of held erasures that are now completed.

        Raises:
            CallvaultError: an infrastructure failure.
        """
        self.retention.finish_cleanups()
        finished: list[str] = []
        for request in self.store.list_requests(statuses=(RequestStatus.HELD,), kind="erase"):
            rows = self._rows(request, (RecordingState.STORED, RecordingState.EXPIRED))
            if not rows:
                continue
            if len(self.holds.holds_for(rows)) == len(rows):
                continue  # still every remaining recording held
            if self.process(request).status is RequestStatus.COMPLETED:
                finished.append(request.request_id)
        pending: list[PrivacyRequest] = []
        for request_id in dict.fromkeys(
            intent.request_id
            for intent in self.lifecycle.pending_intents()
            if intent.request_id is not None
        ):
            try:
                pending.append(self.store.get(request_id))
            except PrivacyRequestNotFound:
                log.error("deletion intents of unknown privacy request %s", request_id)
        stuck = self.store.list_requests(
            statuses=(RequestStatus.RECEIVED, RequestStatus.IN_PROGRESS, RequestStatus.FAILED),
            limit=1000,
        )
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
        if self.metrics is None:
            return
        try:
            open_count, overdue = self.store.count_open(self.clock())
        except CallvaultError as exc:
            log.warning("privacy request gauges not refreshed: %s", exc)
            return
        self.metrics.privacy_requests_open.set(open_count)
        self.metrics.privacy_requests_overdue.set(overdue)

    # -- helpers ------------------------------------------------------------------------------
    def _audit(
        self, request: PrivacyRequest, action: str, outcome: str, details: dict[str, Any]
    ) -> None:
        self.catalog.audit.append(
            AuditDraft(
                actor=self.actor,
                action=action,
                outcome=outcome,
                reason=request.kind,
                details={
                    "request_id": request.request_id,
                    "subject_ref": request.subject_ref,
                    **details,
                },
            )
        )

    # -- the request types (disclose, erase, correct: see the mixins) --------------------------
    def _restrict(self, request: PrivacyRequest, flag: bool) -> PrivacyRequest:
        if request.params.get("recording_ids") is None:
            # The whole customer: recordings ingested later are restricted too.
            if flag:
                self.restrictions.restrict(
                    subject_ref=request.subject_ref,
                    tenant=request.tenant,
                    request_id=request.request_id,
                    at=self.clock(),
                )
            else:
                self.restrictions.lift(request.subject_ref)
        rows = [
            row for row in self._rows(request, (RecordingState.STORED,)) if row.restricted != flag
        ]
        if rows:
            self.catalog.set_restricted(
                [row.recording_id for row in rows],
                flag,
                audit=AuditDraft(
                    actor=self.actor,
                    action="privacy.restricted" if flag else "privacy.restriction-lifted",
                    outcome="ok",
                    reason="requests.cessation",
                    details={"request_id": request.request_id, "rule": "access:restriction"},
                ),
            )
        changed = [row.recording_id for row in rows]
        return self.store.update(
            request,
            status=RequestStatus.COMPLETED,
            result={"changed": changed, "restricted": flag},
            progress={"changed": len(changed)},
        )

    def _terminate(self, request: PrivacyRequest) -> PrivacyRequest:
        terminated_at = datetime.fromisoformat(str(request.params["terminated_at"]))
        effective, changed = self.retention.terminate_contract(
            tenant=request.tenant,
            subject_ref=request.subject_ref,
            terminated_at=terminated_at,
            request_id=request.request_id,
        )
        return self.store.update(
            request,
            status=RequestStatus.COMPLETED,
            result={"terminated_at": effective.isoformat(), "rescheduled": changed},
            progress={"rescheduled": changed},
        )


def _summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """Counts of a result (the audit record stays small)."""
    return {
        key: (len(value) if isinstance(value, (list, dict)) else value)
        for key, value in result.items()
        if key != "export_dir"
    }
