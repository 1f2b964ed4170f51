"""The ``disclose`` request: list the customer's recordings and export the audio the
policy releases for ``customer-disclosure`` (see :mod:`streams.privacy`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from policies import AccessRequest, Principal, decide_access
from storage.catalog.audit import AuditDraft
from storage.catalog.requests import PrivacyRequest, RequestStatus
from storage.catalog.sql import to_db_time
from storage.errors import KeyDestroyed, RecordingNotFound
from storage.types import RecordingRow, RecordingState
from streams.facts import facts_of
from streams.privacy.context import BaseHandler

__all__ = ["DiscloseHandler"]


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
    """``disclose``: a listing, WAV files and ``manifest.json`` under the export root
    (``<data_dir>/exports/<request_id>/``)."""

    def execute(self, request: PrivacyRequest) -> PrivacyRequest:
        rows = self.ctx.rows(request)
        held = self.ctx.holds.holds_for(rows)
        folder = self.ctx.services.config.data_dir / "exports" / request.request_id
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
            try:
                audio = self.ctx.keys.open_recording(self.ctx.vault.get(row.object_key))
            except (RecordingNotFound, KeyDestroyed) as exc:
                withheld.append({"recording_id": row.recording_id, "reason": type(exc).__name__})
                continue
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = folder / f"{row.recording_id}.wav"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(audio)
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
            "summary": _summary(rows, exported, withheld),
            "export_dir": str(folder) if rows else None,
        }
        return self.ctx.store.update(
            request,
            status=RequestStatus.COMPLETED,
            result=result,
            progress={"listed": len(rows), "exported": len(exported)},
        )
