"""The ``erase`` request: crypto-shredding, object deletion, tombstones and receipts;
a legal hold wins (see :mod:`streams.privacy`).

Order of effects: deletion intents (``EndOfLifeStore.mark``, which re-checks holds: a
recording a hold covers by then is reported held) and the marked ids in the request's
``progress``; the erasure journaled in the vault (the subject key ids and object keys it
erases, signed: :mod:`storage.erasures`, re-applied after a catalog restore; once done,
a second entry adds the ids of the signed receipts); the
subject key destroyed; the objects deleted; the tombstones, audit
records and receipts in one commit; the request's status. Re-running after a crash at
any point continues (the intents are found again, receipts are issued once, and the
result counts what earlier runs erased).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from policies import erasure_decision
from storage.catalog.audit import AuditDraft
from storage.catalog.holds import first_hold
from storage.catalog.receipts import DeletionReceipt, ReceiptSigner
from storage.catalog.requests import PrivacyRequest, RequestStatus
from storage.erasures import ErasureEntry
from storage.errors import StorageError
from storage.types import RecordingRow, RecordingState
from streams.facts import facts_of
from streams.privacy.context import BaseHandler
from streams.privacy.deadletters import DeadLettersErased, erase_dead_letters

__all__ = ["EraseHandler", "erasure_items"]


class EraseHandler(BaseHandler):
    """``erase``: every recording of the customer, or the held ones kept and restricted."""

    def execute(self, request: PrivacyRequest) -> PrivacyRequest:
        rows = self.ctx.rows(request, (RecordingState.STORED, RecordingState.EXPIRED))
        covering = self.ctx.holds.holds_for(rows)
        now = self.ctx.clock()
        erasable: list[RecordingRow] = []
        held: list[dict[str, Any]] = []
        for row in rows:
            hold_ids = [hold.hold_id for hold in covering.get(row.recording_id, [])]
            decision = erasure_decision(facts_of(row), self.ctx.policy, now, hold_ids)
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
            self.ctx.catalog.set_restricted(
                held_stored,
                True,
                audit=AuditDraft(
                    actor=self.ctx.actor,
                    action="privacy.restricted",
                    outcome="ok",
                    reason="legal-hold",
                    details={"request_id": request.request_id, "rule": "retention:legal-hold"},
                ),
            )
        partial_scope = request.params.get("recording_ids") is not None
        marked = set(
            self.ctx.endoflife.mark(
                erasable,
                reason="erasure-requested",
                rule="retention:erasure",
                actor=self.ctx.actor,
                request_id=request.request_id,
                states=(RecordingState.STORED, RecordingState.EXPIRED),
            )
        )
        late = [row for row in erasable if row.recording_id not in marked]
        for row_id, holds in self.ctx.holds.holds_for(late).items():  # held since listed
            hold = first_hold(holds)
            held.append(
                {
                    "recording_id": row_id,
                    "rule": "retention:legal-hold",
                    "reason": "legal-hold",
                    "hold": hold.summary() if hold else None,
                }
            )
        erasable = [row for row in erasable if row.recording_id in marked]
        shred = not held and not partial_scope
        earlier = sorted(set(request.progress.get("marked", [])) | marked)
        request = self.ctx.store.update(
            request, progress={**request.progress, "marked": earlier, "shred": shred}
        )
        # Journaled outside the catalog before any effect, so that a catalog restored
        # from an older backup gets the same erasure again (storage.erasures).
        key_ids: set[str] = set()
        if shred:
            live = self.ctx.catalog.get_subject_key(request.subject_ref)
            key_ids = {row.subject_key_id for row in rows} | ({live.key_id} if live else set())
        journaled = ErasureEntry(
            request_id=request.request_id,
            tenant=request.tenant,
            erased_at=now,
            subject_key_ids=tuple(sorted(key_ids)),
            object_keys=tuple(sorted(row.object_key for row in erasable)),
        )
        if key_ids or erasable:
            self.ctx.services.erasure_journal().record(journaled)
        destroyed = False
        dead = DeadLettersErased()
        if shred:
            # Their dead letters (and the landing audio those kept) first, while the
            # originals can still be opened for the files they name.
            dead = erase_dead_letters(
                self.ctx.services, key_ids, actor=self.ctx.actor, request_id=request.request_id
            )
            # Crypto-shred next: from here on no copy anywhere can be decrypted.
            destroyed = self.ctx.keys.destroy_subject(request.subject_ref)
        failed = set(
            self.ctx.vault.delete_many(
                [row.object_key for row in erasable],
                versions={row.object_key: row.object_version for row in erasable},
            )
        )
        if failed:
            raise StorageError(
                f"the vault could not delete {len(failed)} object(s); retry the request"
            )
        erased = self._finish_erasure(request, erasable, destroyed or shred)
        if self.ctx.metrics is not None and erased:
            self.ctx.metrics.deletions.labels("erasure").inc(len(erased))
        previous = request.result.get("erased", []) if isinstance(request.result, dict) else []
        # what an interrupted earlier run marked and finished counts too
        finished = [
            rid
            for rid, row in self.ctx.endoflife.rows_by_id(earlier).items()
            if row.state is RecordingState.ERASED
        ]
        all_erased = sorted(set(previous) | set(erased) | set(finished))
        key_destroyed = bool(
            destroyed
            or request.result.get("subject_key_destroyed")
            or (shred and self.ctx.catalog.get_subject_key(request.subject_ref) is None and earlier)
        )
        before = request.result if isinstance(request.result, dict) else {}
        result = {
            "erased": all_erased,
            "held": held,
            "subject_key_destroyed": key_destroyed,
            "dead_letters_removed": int(before.get("dead_letters_removed", 0)) + dead.removed,
            "landing_files_removed": int(before.get("landing_files_removed", 0))
            + dead.landing_files_removed,
            "landing_files_kept": int(before.get("landing_files_kept", 0))
            + dead.landing_files_kept,
            "receipts": [
                r.receipt_id
                for rid in all_erased
                for r in self.ctx.receipts.for_recording(rid)
                if r.payload.get("request_id") == request.request_id
            ],
        }
        if erased:  # the signed receipts' ids beside what the erasure did (same effects)
            self.ctx.services.erasure_journal().record(
                replace(
                    journaled,
                    erased_at=self.ctx.clock(),
                    receipt_ids=tuple(
                        r.receipt_id
                        for rid in erased
                        for r in self.ctx.receipts.for_recording(rid)
                        if r.payload.get("request_id") == request.request_id
                    ),
                )
            )
        status = RequestStatus.HELD if held else RequestStatus.COMPLETED
        return self.ctx.store.update(
            request,
            status=status,
            result=result,
            progress={"erased": len(all_erased), "held": len(held)},
        )

    def _finish_erasure(
        self, request: PrivacyRequest, rows: list[RecordingRow], key_gone: bool
    ) -> list[str]:
        items = erasure_items(
            self.ctx.signer,
            rows,
            request_id=request.request_id,
            actor=self.ctx.actor,
            reason="erasure-requested",
            clauses=self.ctx.policy.clauses_for_rule("retention:erasure"),
            deleted_at=self.ctx.clock(),
            effects={
                "object_versions_deleted": True,
                "data_key": "removed with the object",
                "subject_key_destroyed": key_gone,
                "catalog_state": "erased",
                "tombstone": "no subject_ref, call_id or agent_id",
            },
        )
        return self.ctx.endoflife.finish_erasure(items)


def erasure_items(
    signer: ReceiptSigner,
    rows: list[RecordingRow],
    *,
    request_id: str,
    actor: str,
    reason: str,
    clauses: tuple[str, ...],
    deleted_at: datetime,
    effects: dict[str, Any],
) -> list[tuple[str, AuditDraft, DeletionReceipt]]:
    """Per recording: a signed receipt and its ``privacy.erased`` audit record, for
    ``EndOfLifeStore.finish_erasure`` (the tombstones, in one commit)."""
    items: list[tuple[str, AuditDraft, DeletionReceipt]] = []
    for row in rows:
        receipt = signer.issue(
            recording_id=row.recording_id,
            tenant=row.tenant,
            reason=reason,
            rule="retention:erasure",
            clauses=clauses,
            deleted_at=deleted_at,
            actor=actor,
            request_id=request_id,
            effects=effects,
            facts={
                "object_key": row.object_key,
                "ciphertext_sha256": row.ciphertext_sha256,
                "retention_class": row.retention_class,
                "previous_state": row.state.value,
            },
        )
        draft = AuditDraft(
            actor=actor,
            action="privacy.erased",
            outcome="ok",
            reason=reason,
            recording_id=row.recording_id,
            details={
                "request_id": request_id,
                "rule": "retention:erasure",
                "clauses": list(clauses),
                "subject_key_destroyed": bool(effects.get("subject_key_destroyed")),
                "receipt_id": receipt.receipt_id,
            },
        )
        items.append((row.recording_id, draft, receipt))
    return items
