"""The ``disclose`` request: list the customer's recordings and prepare the export of
the audio the policy releases for ``customer-disclosure`` (see :mod:`streams.privacy`).

Nothing is decrypted here and nothing is written to disk: the export is a **signed
manifest** (:mod:`storage.catalog.exports`) naming the recordings released (with their
object key, ciphertext digest and stored format), the ones withheld and why, and the
listing of everything held about the customer. ``GET /v1/privacy-requests/{id}/export``
streams the ZIP, decrypting on the fly, to a compliance officer until the manifest
expires (``exports.expiry_days`` in the policy, default 7); after an erasure it answers
410.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from policies import AccessRequest, Principal, decide_access
from storage.catalog.audit import AuditDraft
from storage.catalog.requests import PrivacyRequest, RequestStatus
from storage.types import RecordingRow, RecordingState
from streams.facts import facts_of
from streams.privacy.context import BaseHandler

__all__ = ["DiscloseHandler", "export_url", "remove_legacy_exports"]

log = logging.getLogger(__name__)


def export_url(request_id: str) -> str:
    """Where the export of ``request_id`` is downloaded."""
    return f"/v1/privacy-requests/{request_id}/export"


def remove_legacy_exports(data_dir: Path) -> bool:
    """Delete ``<data_dir>/exports/``, where disclosures of earlier versions wrote
    decrypted WAVs: no plaintext audio stays on a worker's disk. True if it existed."""
    folder = data_dir / "exports"
    if not folder.exists():
        return False
    shutil.rmtree(folder)
    log.warning("removed the plaintext exports of an earlier version under the data dir")
    return True


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


def _withheld(row: RecordingRow, reason: str, held: Mapping[str, Any]) -> dict[str, str]:
    """Why a stored recording is not exported, in words an officer can pass on: a
    recording a legal hold keeps is restricted to legal disclosure (an erasure waits)."""
    if row.recording_id in held and reason == "recording-restricted":
        return {
            "recording_id": row.recording_id,
            "reason": "legal-hold",
            "note": "kept under a legal hold and restricted to legal disclosure until it "
            "is released; ask the privacy office's counsel",
        }
    if reason == "recording-restricted":
        return {
            "recording_id": row.recording_id,
            "reason": reason,
            "note": "the customer asked to stop using it",
        }
    return {"recording_id": row.recording_id, "reason": reason}


def _summary(
    rows: list[RecordingRow], exported: list[dict[str, Any]], withheld: list[dict[str, str]]
) -> str:
    """``exported 0 of 7 stored recordings (7 withheld: legal-hold 7); 1 not stored``."""
    stored = sum(1 for row in rows if row.state is RecordingState.STORED)
    text = f"exported {len(exported)} of {stored} stored recordings"
    if withheld:
        counts: dict[str, int] = {}
        for item in withheld:
            counts[item["reason"]] = counts.get(item["reason"], 0) + 1
        why = ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items()))
        text += f" ({len(withheld)} withheld: {why})"
    if len(rows) > stored:
        text += f"; {len(rows) - stored} no longer stored (expired or erased)"
    return text


class DiscloseHandler(BaseHandler):
    """``disclose``: a listing and a signed export manifest; no files."""

    def execute(self, request: PrivacyRequest) -> PrivacyRequest:
        rows = self.ctx.rows(request)
        held = self.ctx.holds.holds_for(rows)
        officer = Principal(
            user=request.decided_by or request.verified_by or request.requested_by,
            role="compliance-officer",
            tenant=request.tenant,  # the request's tenant, never another's recordings
        )
        access = AccessRequest("download", "customer-disclosure", reference=request.request_id)
        exported: list[dict[str, Any]] = []
        withheld: list[dict[str, str]] = []
        now = self.ctx.clock()
        for row in rows:
            if row.state is not RecordingState.STORED:
                continue
            decision = decide_access(officer, access, facts_of(row), self.ctx.policy, now)
            if not decision.allowed:
                withheld.append(_withheld(row, str(decision.reason), held))
                continue
            already = any(  # a resumed request: this release is on record already
                d.reference == request.request_id and d.purpose == "customer-disclosure"
                for d in self.ctx.ledger.list(recording_id=row.recording_id, limit=1000)
            )
            if not already:
                self.ctx.ledger.record(
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
                {
                    "recording_id": row.recording_id,
                    "object_key": row.object_key,
                    "object_version": row.object_version,
                    "ciphertext_sha256": row.ciphertext_sha256,
                    "stored_size": row.stored_size,
                    "audio_bytes": row.audio_bytes,
                    "audio_format": row.audio_format,
                }
            )
        listing = _rows_json(rows, held)
        expires_at = now + timedelta(days=self.ctx.policy.export_expiry_days)
        export = self.ctx.services.exports().save(
            request_id=request.request_id,
            tenant=request.tenant,
            subject_ref=request.subject_ref,
            expires_at=expires_at,
            manifest={"recordings": listing, "exported": exported, "withheld": withheld},
        )
        result = {
            "recordings": listing,
            "exported": [
                {"recording_id": e["recording_id"], "bytes": e["audio_bytes"]} for e in exported
            ],
            "withheld": withheld,
            "export": {
                "export_id": export.export_id,
                "url": export_url(request.request_id),
                "expires_at": export.expires_at.isoformat(),
                "recordings": len(exported),
            },
            "summary": _summary(rows, exported, withheld),
        }
        return self.ctx.store.update(
            request,
            status=RequestStatus.COMPLETED,
            result=result,
            progress={"listed": len(rows), "exported": len(exported)},
        )
