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
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from callvault.errors import CallvaultError
from policies import AccessRequest, Policy, Principal, decide_access, erasure_decision
from storage.audit import AuditDraft
from storage.catalog import Catalog
from storage.disclosures import DisclosureLedger
from storage.errors import KeyDestroyed, RecordingNotFound, StorageError
from storage.holds import HoldStore, first_hold
from storage.keys import KeyService
from storage.lifecycle import LifecycleStore
from storage.receipts import DeletionReceipt, ReceiptSigner, ReceiptStore
from storage.requests import (
    PrivacyRequest,
    PrivacyRequestStore,
    RequestStatus,
)
from storage.restrictions import SubjectRestrictions
from storage.sql import to_db_time
from storage.types import RecordingRow, RecordingState
from storage.vault import Vault
from streams.errors import StreamError
from streams.metrics import Metrics
from streams.retention import RetentionService, facts_of

__all__ = [
    "REQUEST_TYPES",
    "VERIFICATION_METHODS",
    "PrivacyRequestRejected",
    "PrivacyService",
    "RequestInput",
    "parse_privacy_request",
]

log = logging.getLogger(__name__)

REQUEST_TYPES = (
    "disclose",
    "restrict",
    "lift-restriction",
    "erase",
    "correct",
    "contract-terminated",
)
#: How a compliance officer verified the customer's identity (closed list).
VERIFICATION_METHODS = ("id-document", "account-authentication", "callback", "in-person", "postal")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$")
_CORRECTABLE = ("customer_ref", "queue", "agent_id")
_MAX_IDS = 1000


class PrivacyRequestRejected(StreamError):
    """A privacy request is malformed; ``reason`` is a stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True)
class RequestInput:
    """A validated request (still with the raw customer reference; never stored)."""

    request_id: str
    kind: str
    tenant: str
    customer_ref: str
    verified_by: str | None
    verification_method: str | None
    verified_at: datetime | None
    received_at: datetime
    terminated_at: datetime | None = None
    corrections: dict[str, str] = field(default_factory=dict)
    recording_ids: tuple[str, ...] | None = None


def _time(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise PrivacyRequestRejected("bad-field", f"{name} must be an ISO 8601 timestamp")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PrivacyRequestRejected("bad-field", f"{name} is not an ISO 8601 timestamp") from None
    if parsed.tzinfo is None:
        raise PrivacyRequestRejected("bad-field", f"{name} needs a time zone (e.g. +00:00)")
    return parsed


def _text(data: Mapping[str, Any], name: str, *, limit: int = 256) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        raise PrivacyRequestRejected("missing-field", f"{name} is required (a non-empty string)")
    if len(value) > limit:
        raise PrivacyRequestRejected("bad-field", f"{name} is longer than {limit} characters")
    return value.strip()


def parse_privacy_request(data: Any, *, now: datetime) -> RequestInput:
    """Validate one request body (see the module docstring).

    Raises:
        PrivacyRequestRejected: with reason ``malformed``, ``unknown-type``,
            ``missing-field``, ``bad-field`` or ``identity-not-verified``.
    """
    if isinstance(data, (bytes, str)):
        try:
            data = json.loads(data)
        except ValueError:
            raise PrivacyRequestRejected("malformed", "the request is not JSON") from None
    if not isinstance(data, dict):
        raise PrivacyRequestRejected("malformed", "the request must be a JSON object")
    kind = data.get("type")
    if kind not in REQUEST_TYPES:
        raise PrivacyRequestRejected(
            "unknown-type", f"type must be one of {', '.join(REQUEST_TYPES)}, got {kind!r}"
        )
    tenant = _text(data, "tenant", limit=64)
    customer_ref = _text(data, "customer_ref")
    request_id = data.get("request_id") or f"pr_{secrets.token_hex(10)}"
    if not isinstance(request_id, str) or not _REQUEST_ID.match(request_id):
        raise PrivacyRequestRejected(
            "bad-field", "request_id must be 1-64 letters, digits or . _ : - (no spaces)"
        )
    received_at = _time(data["received_at"], "received_at") if "received_at" in data else now
    if received_at > now + timedelta(minutes=5):
        raise PrivacyRequestRejected("bad-field", "received_at is in the future")
    verified_by = method = None
    verified_at: datetime | None = None
    identity = data.get("identity_verification")
    if kind != "contract-terminated" or identity is not None:
        if not isinstance(identity, dict):
            raise PrivacyRequestRejected(
                "identity-not-verified",
                "identity_verification {verified_by, method} is required: the customer's "
                "identity must be verified before a request is handled",
            )
        verified_by = _text(identity, "verified_by", limit=128)
        if not _USER.match(verified_by):
            raise PrivacyRequestRejected("bad-field", "verified_by must be a user id")
        method = identity.get("method")
        if method not in VERIFICATION_METHODS:
            raise PrivacyRequestRejected(
                "identity-not-verified",
                f"identity_verification.method must be one of {', '.join(VERIFICATION_METHODS)}",
            )
        verified_at = (
            _time(identity["verified_at"], "identity_verification.verified_at")
            if "verified_at" in identity
            else now
        )
    terminated_at = None
    if kind == "contract-terminated":
        if "terminated_at" not in data:
            raise PrivacyRequestRejected("missing-field", "terminated_at is required")
        terminated_at = _time(data["terminated_at"], "terminated_at")
    corrections: dict[str, str] = {}
    if kind == "correct":
        raw = data.get("corrections")
        if not isinstance(raw, dict) or not raw:
            raise PrivacyRequestRejected(
                "missing-field", f"corrections must name at least one of {', '.join(_CORRECTABLE)}"
            )
        for key, value in raw.items():
            if key not in _CORRECTABLE:
                raise PrivacyRequestRejected("bad-field", f"cannot correct {key!r}")
            if not isinstance(value, str) or not value.strip() or len(value) > 256:
                raise PrivacyRequestRejected(
                    "bad-field", f"corrections.{key} must be a non-empty string"
                )
            corrections[key] = value.strip()
        if corrections.get("customer_ref") == customer_ref:
            raise PrivacyRequestRejected(
                "bad-field", "corrections.customer_ref equals customer_ref"
            )
    recording_ids = None
    if "recording_ids" in data:
        ids = data["recording_ids"]
        if (
            not isinstance(ids, list)
            or not ids
            or len(ids) > _MAX_IDS
            or not all(isinstance(i, str) and i for i in ids)
        ):
            raise PrivacyRequestRejected(
                "bad-field", f"recording_ids must be a list of 1-{_MAX_IDS} recording ids"
            )
        recording_ids = tuple(dict.fromkeys(ids))
    return RequestInput(
        request_id=request_id,
        kind=kind,
        tenant=tenant,
        customer_ref=customer_ref,
        verified_by=verified_by,
        verification_method=method,
        verified_at=verified_at,
        received_at=received_at,
        terminated_at=terminated_at,
        corrections=corrections,
        recording_ids=recording_ids,
    )


def _rows_json(rows: list[RecordingRow], held: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "recording_id": row.recording_id,
            "started_at": row.started_at.isoformat(),
            "ended_at": row.ended_at.isoformat(),
            "purposes": list(row.purposes),
            "state": row.state.value,
            "restricted": row.restricted,
            "retention_class": row.retention_class,
            "retain_until": row.retain_until.isoformat(),
            "legal_hold": row.recording_id in held,
        }
        for row in rows
    ]


class PrivacyService:
    """Files and carries out privacy requests (see the module docstring)."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        vault: Vault,
        keys: KeyService,
        policy: Policy,
        clock: Callable[[], datetime],
        retention: RetentionService,
        export_root: Path,
        actor: str,
        metrics: Metrics | None = None,
    ) -> None:
        self.catalog = catalog
        self.vault = vault
        self.keys = keys
        self.policy = policy
        self.clock = clock
        self.retention = retention
        self.export_root = export_root
        self.actor = actor
        self.metrics = metrics
        self.store = PrivacyRequestStore(catalog, clock=clock)
        self.holds: HoldStore = retention.holds
        self.lifecycle: LifecycleStore = retention.lifecycle
        self.receipts = ReceiptStore(catalog)
        self.signer = ReceiptSigner(keys.keyring)
        self.ledger = DisclosureLedger(catalog.database, catalog.audit, clock=clock)
        self.restrictions = SubjectRestrictions(catalog.database)

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
        """Process again the erasures a legal hold blocked (called by each sweep); returns
        the ids of requests that are now completed.

        Raises:
            CallvaultError: an infrastructure failure.
        """
        finished: list[str] = []
        for request in self.store.list_requests(statuses=(RequestStatus.HELD,), kind="erase"):
            rows = self._rows(request, (RecordingState.STORED, RecordingState.EXPIRED))
            if not rows:
                continue
            if len(self.holds.holds_for(rows)) == len(rows):
                continue  # still every remaining recording held
            if self.process(request).status is RequestStatus.COMPLETED:
                finished.append(request.request_id)
        for request in self.store.list_requests(statuses=(RequestStatus.FAILED,)):
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
    def _digest(self, tenant: str, name: str, value: str) -> str:
        """Keyed digest of a corrected value: comparable, not reversible."""
        return self.keys.keyring.pseudonymize(tenant, f"correction:{name}:{value}")[:32]

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

    def _rows(
        self, request: PrivacyRequest, states: tuple[RecordingState, ...] | None = None
    ) -> list[RecordingRow]:
        rows = self.lifecycle.rows_of_subject(request.tenant, request.subject_ref, states)
        wanted = request.params.get("recording_ids")
        if wanted is not None:
            rows = [row for row in rows if row.recording_id in set(wanted)]
        return rows

    # -- the request types ----------------------------------------------------------------------
    def _disclose(self, request: PrivacyRequest) -> PrivacyRequest:
        rows = self._rows(request)
        held = self.holds.holds_for(rows)
        folder = self.export_root / request.request_id
        officer = Principal(
            user=request.verified_by or request.requested_by, role="compliance-officer"
        )
        access = AccessRequest("download", "customer-disclosure", reference=request.request_id)
        exported: list[dict[str, Any]] = []
        withheld: list[dict[str, str]] = []
        now = self.clock()
        for row in rows:
            if row.state is not RecordingState.STORED:
                continue
            decision = decide_access(officer, access, facts_of(row), self.policy, now)
            if not decision.allowed:
                withheld.append({"recording_id": row.recording_id, "reason": str(decision.reason)})
                continue
            try:
                audio = self.keys.open_recording(self.vault.get(row.object_key))
            except (RecordingNotFound, KeyDestroyed) as exc:
                withheld.append({"recording_id": row.recording_id, "reason": type(exc).__name__})
                continue
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = folder / f"{row.recording_id}.wav"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(audio)
            self.ledger.record(
                recording_id=row.recording_id,
                tenant=row.tenant,
                actor=f"user:{officer.user}",
                role=officer.role,
                org=None,
                purpose="customer-disclosure",
                legal_basis=None,
                reference=request.request_id,
                mode="download",
                audit=AuditDraft(
                    actor=f"user:{officer.user}",
                    action="access.granted",
                    outcome="granted",
                    reason=str(decision.reason),
                    recording_id=row.recording_id,
                    details={
                        "purpose": "customer-disclosure",
                        "reference": request.request_id,
                        "rule": decision.rule,
                        "mode": "export",
                    },
                ),
            )
            exported.append(
                {"recording_id": row.recording_id, "file": path.name, "bytes": len(audio)}
            )
        listing = _rows_json(rows, held)
        if rows:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            manifest = folder / "manifest.json"
            fd = os.open(manifest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump(
                    {
                        "request_id": request.request_id,
                        "recordings": listing,
                        "exported": exported,
                        "withheld": withheld,
                        "generated_at": to_db_time(now),
                    },
                    out,
                    indent=2,
                )
        result = {
            "recordings": listing,
            "exported": exported,
            "withheld": withheld,
            "export_dir": str(folder) if rows else None,
        }
        return self.store.update(
            request,
            status=RequestStatus.COMPLETED,
            result=result,
            progress={"listed": len(rows), "exported": len(exported)},
        )

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

    def _erase(self, request: PrivacyRequest) -> PrivacyRequest:
        rows = self._rows(request, (RecordingState.STORED, RecordingState.EXPIRED))
        covering = self.holds.holds_for(rows)
        now = self.clock()
        erasable: list[RecordingRow] = []
        held: list[dict[str, Any]] = []
        for row in rows:
            hold_ids = [hold.hold_id for hold in covering.get(row.recording_id, [])]
            decision = erasure_decision(facts_of(row), self.policy, now, hold_ids)
            if decision.delete:
                erasable.append(row)
            else:
                hold = first_hold(covering.get(row.recording_id, []))
                held.append(
                    {
                        "recording_id": row.recording_id,
                        "rule": decision.rule,
                        "reason": str(decision.reason),
                        "hold": hold.summary() if hold else None,
                    }
                )
        held_stored = [
            row.recording_id
            for row in rows
            if row.recording_id in covering
            and row.state is RecordingState.STORED
            and not row.restricted
        ]
        if held_stored:  # the customer asked us to stop: kept only for the law, so unused
            self.catalog.set_restricted(
                held_stored,
                True,
                audit=AuditDraft(
                    actor=self.actor,
                    action="privacy.restricted",
                    outcome="ok",
                    reason="legal-hold",
                    details={"request_id": request.request_id, "rule": "retention:legal-hold"},
                ),
            )
        partial_scope = request.params.get("recording_ids") is not None
        self.lifecycle.mark(
            erasable,
            reason="erasure-requested",
            rule="retention:erasure",
            actor=self.actor,
            request_id=request.request_id,
        )
        destroyed = False
        if not held and not partial_scope:
            # Crypto-shred first: from here on no copy anywhere can be decrypted.
            destroyed = self.keys.destroy_subject(request.subject_ref)
        failed = set(self.vault.delete_many([row.object_key for row in erasable]))
        if failed:
            raise StorageError(
                f"the vault could not delete {len(failed)} object(s); retry the request"
            )
        erased = self._finish_erasure(
            request, erasable, destroyed or (not held and not partial_scope)
        )
        if self.metrics is not None and erased:
            self.metrics.deletions.labels("erasure").inc(len(erased))
        previous = request.result.get("erased", []) if isinstance(request.result, dict) else []
        all_erased = sorted(set(previous) | set(erased))
        result = {
            "erased": all_erased,
            "held": held,
            "subject_key_destroyed": bool(destroyed or request.result.get("subject_key_destroyed")),
            "receipts": [r.receipt_id for rid in erased for r in self.receipts.for_recording(rid)],
        }
        status = RequestStatus.HELD if held else RequestStatus.COMPLETED
        return self.store.update(
            request,
            status=status,
            result=result,
            progress={"erased": len(all_erased), "held": len(held)},
        )

    def _finish_erasure(
        self, request: PrivacyRequest, rows: list[RecordingRow], key_gone: bool
    ) -> list[str]:
        clauses = self.policy.clauses_for_rule("retention:erasure")
        deleted_at = self.clock()
        items: list[tuple[str, AuditDraft, DeletionReceipt]] = []
        for row in rows:
            receipt = self.signer.issue(
                recording_id=row.recording_id,
                tenant=row.tenant,
                reason="erasure-requested",
                rule="retention:erasure",
                clauses=clauses,
                deleted_at=deleted_at,
                actor=self.actor,
                request_id=request.request_id,
                effects={
                    "object_versions_deleted": True,
                    "data_key": "removed with the object",
                    "subject_key_destroyed": key_gone,
                    "catalog_state": "erased",
                    "tombstone": "no subject_ref, call_id or agent_id",
                },
                facts={
                    "object_key": row.object_key,
                    "ciphertext_sha256": row.ciphertext_sha256,
                    "retention_class": row.retention_class,
                    "previous_state": row.state.value,
                },
            )
            items.append(
                (
                    row.recording_id,
                    AuditDraft(
                        actor=self.actor,
                        action="privacy.erased",
                        outcome="ok",
                        reason="erasure-requested",
                        recording_id=row.recording_id,
                        details={
                            "request_id": request.request_id,
                            "rule": "retention:erasure",
                            "clauses": list(clauses),
                            "subject_key_destroyed": key_gone,
                            "receipt_id": receipt.receipt_id,
                        },
                    ),
                    receipt,
                )
            )
        return self.lifecycle.finish_erasure(items)

    def _correct(self, request: PrivacyRequest) -> PrivacyRequest:
        corrections = request.params.get("corrections", {})
        new_subject = request.params.get("new_subject_ref")
        metadata = request.params.get("set", {})
        rows = self._rows(request, (RecordingState.STORED,))
        changed: list[str] = []
        for row in rows:
            before: dict[str, str] = {}
            after: dict[str, str] = {}
            changes: dict[str, Any] = {}
            for key in ("queue", "agent_id"):
                if key in metadata and getattr(row, key) != metadata[key]:
                    before[key] = self._digest(row.tenant, key, getattr(row, key))
                    after[key] = corrections[key]
                    changes[key] = metadata[key]
            if new_subject is not None and row.subject_ref != new_subject:
                changes.update(self._rekey(row, new_subject))
                before["subject_ref"] = row.subject_ref  # pseudonyms: keyed hashes already
                after["subject_ref"] = new_subject
            if not changes:
                continue
            self.lifecycle.update_fields(
                row.recording_id,
                changes,
                audit=AuditDraft(
                    actor=self.actor,
                    action="privacy.corrected",
                    outcome="ok",
                    reason="requests.revision",
                    recording_id=row.recording_id,
                    details={
                        "request_id": request.request_id,
                        "fields": sorted(before),
                        "before_digests": before,
                        "after_digests": after,
                    },
                ),
            )
            if "object_key" in changes:
                self.vault.delete(row.object_key)
            changed.append(row.recording_id)
        return self.store.update(
            request,
            status=RequestStatus.COMPLETED,
            result={"corrected": changed, "fields": sorted(corrections)},
            progress={"corrected": len(changed)},
        )

    def _rekey(self, row: RecordingRow, new_subject: str) -> dict[str, Any]:
        """Seal the audio again under ``new_subject``'s key, under a new object key."""
        blob = self.vault.get(row.object_key)
        audio = self.keys.open_recording(blob)
        tags = self.vault.head(row.object_key).tags
        sealed = self.keys.seal_recording(
            recording_id=row.recording_id,
            tenant=row.tenant,
            subject_ref=new_subject,
            plaintext=audio,
        )
        digest = self.keys.keyring.pseudonymize(
            row.tenant, f"object:{row.recording_id}:{sealed.subject_key_id}"
        )
        key = f"rec/{row.tenant}/{digest[:2]}/{digest}.cvlt"
        self.vault.put(key, sealed.blob, tags=tags)
        return {
            "subject_ref": new_subject,
            "subject_key_id": sealed.subject_key_id,
            "object_key": key,
            "ciphertext_sha256": hashlib.sha256(sealed.blob).hexdigest(),
            "stored_size": len(sealed.blob),
        }

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
