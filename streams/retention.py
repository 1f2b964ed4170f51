"""The retention sweep, retroactive rescheduling and contract termination.

What a caller may rely on:

- :meth:`RetentionService.sweep` deletes every recording that is due at ``now``
  (``retain_until <= now``: exactly at the boundary, never before) and not covered by
  an active legal hold. Per batch (``Vault.delete_many``: S3 multi-object delete of
  every version, so old versions do not outlive the deletion; the version the catalog
  kept is deleted by id, others are found by a listing per prefix, never per key):

  1. **mark**: a deletion intent per recording (durable), written by one statement
     that re-checks state and legal holds under the lock hold placement takes
     (``EndOfLifeStore.mark``): a hold placed after the due recordings were listed
     but before the marking commits keeps its recording;
  2. **delete** the vault objects of the recordings actually marked, every version.
     The per-recording data key exists only wrapped inside the object's header, so
     deleting every version of the object removes the data key with it (the
     subject key stays: it protects the customer's other recordings);
  3. **finish**: state ``expired``, one ``retention.expired`` audit record and one
     signed deletion receipt per recording, intents dropped: one transaction.

  Batches are pipelined: a thread deletes the objects of one batch while this thread
  finishes the previous one and marks the next (every catalog call on one thread).

  A crash between the steps leaves intents; the next sweep first drops (audited
  ``retention.intent-dropped``) the intents of recordings a legal hold now covers,
  then finishes the rest (deleting an already deleted object is fine), so nothing is
  lost, nothing held is deleted and nothing is left half-deleted. It also deletes
  objects a correction superseded that a crash left behind
  (:meth:`RetentionService.finish_cleanups`). A ``dry_run`` changes nothing and
  reports what would happen.
- Held recordings are reported (``SweepResult.held``) with the hold that won (the
  smallest hold id): hold id, reason, reference, placed by. Releasing the hold lets
  the next sweep delete them.
- **Retroactive schedules**: a digest of the policy's effective retention rules is
  kept in the catalog. :meth:`reschedule_if_policy_changed` (on worker start, at each
  sweep, and in the CLI) recomputes class and retain-until of every stored
  recording when the digest changed, one ``retention.rescheduled`` audit record per
  changed recording, and then stores the new digest (an interrupted run repeats).
- **Contract termination** (:meth:`terminate_contract`): the customer's recordings
  get ``retain_until = min(class rule, max(terminated_at, ended_at) + N days)``
  (policies.retention); recordings of that customer ingested later are caught up
  by the next sweep.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from callvault.errors import CallvaultError
from policies import (
    PolicyInputError,
    deletion_decision,
    expiry_cut,
    retain_until,
    retention_class_for,
    retention_rules_digest,
)
from storage.catalog.audit import AuditDraft
from storage.catalog.endoflife import ScheduleChange
from storage.catalog.holds import LegalHold, first_hold
from storage.catalog.receipts import DeletionReceipt
from storage.catalog.sql import to_db_time
from storage.subjectdetails import sealed_subject
from storage.types import RecordingRow, RecordingState
from streams.facts import facts_of
from streams.metrics import Metrics
from streams.services import Services

__all__ = [
    "RULES_DIGEST_SETTING",
    "RescheduleResult",
    "RetentionService",
    "SweepResult",
    "safe_sweep",
]

log = logging.getLogger(__name__)

RULES_DIGEST_SETTING = "retention_rules_digest"
DATA_KEY_NOTE = "removed with the object (the data key is stored only wrapped in its header)"


@dataclass
class SweepResult:
    """What one sweep did (or, with ``dry_run``, would do)."""

    dry_run: bool
    now: datetime
    expired: list[str] = field(default_factory=list)
    held: list[dict[str, Any]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    receipts: list[str] = field(default_factory=list)
    resumed: int = 0
    rescheduled: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "now": self.now.isoformat(),
            "expired": len(self.expired),
            "expired_ids": self.expired[:1000],
            "held": self.held[:1000],
            "failed": self.failed[:1000],
            "receipts": len(self.receipts),
            "resumed": self.resumed,
            "rescheduled": self.rescheduled,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class RescheduleResult:
    changed: int
    checked: int
    previous_digest: str | None
    digest: str
    skipped: list[str] = field(default_factory=list)  # rows the new policy cannot classify


class RetentionService:
    """Deletes recordings on schedule and keeps their schedules true to the policy."""

    def __init__(
        self,
        services: Services,
        *,
        actor: str,
        metrics: Metrics | None = None,
        batch_size: int = 1000,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        self.services = services
        self.catalog = services.catalog
        self.vault = services.vault
        self.keys = services.keys
        self.policy = services.policy
        self.clock = services.clock
        self.actor = actor
        self.metrics = metrics
        self.holds = services.holds
        self.receipts = services.receipts
        self.endoflife = services.endoflife
        self.signer = services.signer
        self.batch_size = batch_size

    # -- schedules ----------------------------------------------------------------------
    def schedule_for(
        self, row: RecordingRow, terminated_at: datetime | None
    ) -> tuple[str, datetime]:
        """(retention class, retain_until) the policy gives ``row`` now.

        Raises:
            PolicyInputError: the policy has no retention rule for the row's purposes.
        """
        retention_class = retention_class_for(row.purposes, self.policy)
        until = retain_until(
            row.started_at,
            row.ended_at,
            retention_class,
            self.policy,
            contract_terminated_at=terminated_at,
        )
        return retention_class.id, until

    def _changes(
        self, rows: list[RecordingRow], action: str, extra: dict[str, Any]
    ) -> tuple[list[ScheduleChange], list[str]]:
        terminations = self.endoflife.terminations(row.subject_ref for row in rows)
        changes: list[ScheduleChange] = []
        skipped: list[str] = []
        for row in rows:
            try:
                cls, until = self.schedule_for(row, terminations.get(row.subject_ref))
            except PolicyInputError as exc:
                log.warning("recording %s keeps its schedule: %s", row.recording_id, exc)
                skipped.append(row.recording_id)
                continue
            if cls == row.retention_class and until == row.retain_until:
                continue
            changes.append(
                ScheduleChange(
                    recording_id=row.recording_id,
                    retention_class=cls,
                    retain_until=until,
                    audit=AuditDraft(
                        actor=self.actor,
                        action=action,
                        outcome="ok",
                        reason="retention-rescheduled",
                        recording_id=row.recording_id,
                        details={
                            **extra,
                            "retention_class": [row.retention_class, cls],
                            "retain_until": [row.retain_until.isoformat(), until.isoformat()],
                        },
                    ),
                )
            )
        return changes, skipped

    def reschedule_if_policy_changed(
        self, *, force: bool = False, progress: Callable[[int], None] | None = None
    ) -> RescheduleResult:
        """Recompute every stored recording's schedule if the retention rules changed.

        ``progress(n)`` is called after each page of ``n`` recordings (fits tqdm.update).

        Raises:
            CatalogError / AuditError: the catalog failed (the digest is only stored
                after every page was applied, so a re-run completes the work).
        """
        digest = retention_rules_digest(self.policy)
        previous = self.endoflife.get_setting(RULES_DIGEST_SETTING)
        if previous == digest and not force:
            return RescheduleResult(0, 0, previous, digest)
        changed = checked = 0
        skipped: list[str] = []
        if previous is not None or force:
            extra = {"rules_digest": digest, "previous_digest": previous, "rule": "retention:due"}
            for page in self.endoflife.iter_stored():
                changes, page_skipped = self._changes(page, "retention.rescheduled", extra)
                changed += self.endoflife.reschedule(changes)
                checked += len(page)
                skipped.extend(page_skipped)
                if progress is not None:
                    progress(len(page))
        self.catalog.audit.append(
            AuditDraft(
                actor=self.actor,
                action="retention.rules-applied",
                outcome="ok",
                reason="policy-changed" if previous is not None else "first-start",
                details={
                    "rules_digest": digest,
                    "previous_digest": previous,
                    "rescheduled": changed,
                    "checked": checked,
                    "unclassifiable": len(skipped),
                },
            )
        )
        self.endoflife.set_setting(RULES_DIGEST_SETTING, digest)
        return RescheduleResult(changed, checked, previous, digest, skipped)

    def terminate_contract(
        self,
        *,
        tenant: str,
        subject_ref: str,
        terminated_at: datetime,
        request_id: str | None = None,
    ) -> tuple[datetime, int]:
        """Move the customer's stored recordings to the end-of-contract schedule.

        Returns (effective termination time, recordings rescheduled).

        Raises:
            CatalogError / AuditError: the catalog failed.
        """
        effective = self.endoflife.record_termination(tenant, subject_ref, terminated_at)
        rows = self.endoflife.rows_of_subject(tenant, subject_ref, [RecordingState.STORED])
        extra = {
            "rule": "retention:contract-termination",
            **sealed_subject(self.keys, subject_ref),
            "terminated_at": effective.isoformat(),
            "request_id": request_id,
        }
        changes, _ = self._changes(rows, "retention.contract-terminated", extra)
        return effective, self.endoflife.reschedule(changes)

    def _catch_up_terminations(self) -> int:
        """Recordings of former customers ingested after the termination was recorded."""
        rows = self.catalog.database.fetch_all(
            "SELECT r.recording_id FROM recordings r JOIN contract_terminations t "
            "ON t.subject_ref = r.subject_ref AND t.tenant = r.tenant "
            "WHERE r.state = 'stored' AND r.created_at >= t.recorded_at "
            "AND r.retain_until > t.terminated_at LIMIT 1000"
        )
        if not rows:
            return 0
        found = self.endoflife.rows_by_id(row[0] for row in rows)
        changes, _ = self._changes(
            list(found.values()),
            "retention.contract-terminated",
            {"rule": "retention:contract-termination", "late_ingest": True},
        )
        return self.endoflife.reschedule(changes)

    # -- the sweep ------------------------------------------------------------------------
    def sweep(
        self,
        *,
        now: datetime | None = None,
        dry_run: bool = False,
        progress: Callable[[int], None] | None = None,
        limit: int | None = None,
    ) -> SweepResult:
        """Delete what is due at ``now`` (default: the clock); see the module docstring.

        ``limit`` caps how many recordings this run expires (the rest waits for the
        next run). ``progress(n)`` is called after each batch of ``n`` recordings.

        Raises:
            CatalogError / AuditError / StorageError: the catalog or the vault failed;
                what was finished stays finished, the rest is resumed next time.
        """
        started = time.perf_counter()
        moment = now or self.clock()
        result = SweepResult(dry_run=dry_run, now=moment)
        if dry_run:
            cap = limit or 100_000
            result.expired = [row.recording_id for row in self._due(moment, cap)]
            if progress is not None:
                progress(len(result.expired))
        else:
            result.resumed = self._resume_intents(result)
            result.rescheduled = self.reschedule_if_policy_changed().changed
            result.rescheduled += self._catch_up_terminations()
            self._expire_due(moment, result, limit=limit, progress=progress)
        self._report_held(moment, result)
        result.seconds = time.perf_counter() - started
        if not dry_run and (result.expired or result.failed or result.held or result.resumed):
            self.catalog.audit.append(
                AuditDraft(
                    actor=self.actor,
                    action="retention.sweep",
                    outcome="ok" if not result.failed else "partial",
                    reason="retention-due",
                    details={
                        "expired": len(result.expired),
                        "held": len(result.held),
                        "held_by": sorted({h["hold"]["hold_id"] for h in result.held})[:100],
                        "failed": len(result.failed),
                        "resumed": result.resumed,
                        "now": to_db_time(moment),
                    },
                )
            )
        if self.metrics is not None and not dry_run:
            self.metrics.retention_sweep_seconds.observe(result.seconds)
            self.metrics.legal_holds_active.set(self.holds.count_active())
        return result

    def _expire_due(
        self,
        moment: datetime,
        result: SweepResult,
        *,
        limit: int | None,
        progress: Callable[[int], None] | None,
    ) -> None:
        """Batches of due recordings, pipelined: while the vault deletes the objects of
        one batch (a thread), this thread finishes the previous one in the catalog and
        marks the next. Every catalog call stays on this thread."""
        remaining = limit
        in_flight: tuple[list[RecordingRow], Future[set[str]]] | None = None
        with ThreadPoolExecutor(1, thread_name_prefix="retention-vault") as vault_io:
            while True:
                submitted = None
                if remaining is None or remaining > 0:
                    size = self.batch_size if remaining is None else min(self.batch_size, remaining)
                    due = self._due(moment, size)
                    if due:
                        if remaining is not None:
                            remaining -= len(due)
                        marked = self._mark(due)
                        if marked:
                            submitted = (marked, vault_io.submit(self._delete_objects, marked))
                        if progress is not None:
                            progress(len(due))
                if in_flight is not None and not self._complete(*in_flight, result):
                    remaining = 0  # the vault refused every object: try again next sweep
                in_flight = submitted
                if in_flight is None:
                    return

    def _mark(self, rows: list[RecordingRow]) -> list[RecordingRow]:
        """Deletion intents for ``rows``; returns the rows actually marked (a hold placed
        since ``due`` keeps its recording), as the catalog has them now."""
        marked = set(
            self.endoflife.mark(
                rows, reason="retention-due", rule="retention:due", actor=self.actor
            )
        )
        now = self.endoflife.objects_of(marked)  # a correction may have moved the object
        kept: list[RecordingRow] = []
        for row in rows:
            state, key, version = now.get(row.recording_id, (None, "", None))
            if row.recording_id not in marked or state is not RecordingState.STORED:
                continue
            if (key, version) != (row.object_key, row.object_version):
                row = dataclasses.replace(row, object_key=key, object_version=version)
            kept.append(row)
        return kept

    def _complete(
        self, rows: list[RecordingRow], deleting: Future[set[str]], result: SweepResult
    ) -> int:
        """Wait for the vault deletion of ``rows``, then finish the ones deleted: state,
        audit records and receipts in one commit. Returns how many expired.

        Raises:
            StorageError: the vault failed as a whole (the intents stay for the next run).
        """
        failed = deleting.result()
        done_rows = [row for row in rows if row.object_key not in failed]
        result.failed.extend(row.recording_id for row in rows if row.object_key in failed)
        if failed:
            log.error(
                "retention: the vault could not delete %d object(s); retried next sweep",
                len(failed),
            )
        expired = self._finish(done_rows)
        result.expired.extend(expired)
        result.receipts.extend(expired)
        if self.metrics is not None and expired:
            self.metrics.deletions.labels("retention").inc(len(expired))
        return len(expired)

    def _delete_objects(self, rows: list[RecordingRow]) -> set[str]:
        """Delete the rows' vault objects, every version: the versions the catalog kept by
        id, any other one found by the vault's listing per prefix (``Vault.delete_many``
        lists and deletes sorted runs of keys in parallel). Returns the keys that could
        not be deleted."""
        return set(
            self.vault.delete_many(
                [row.object_key for row in rows],
                versions={row.object_key: row.object_version for row in rows},
            )
        )

    def _finish(self, rows: list[RecordingRow]) -> list[str]:
        deleted_at = self.clock()
        clauses = self.policy.clauses_for_rule("retention:due")
        items: list[tuple[str, AuditDraft, DeletionReceipt]] = []
        for row in rows:
            receipt = self.signer.issue(
                recording_id=row.recording_id,
                tenant=row.tenant,
                reason="retention-due",
                rule="retention:due",
                clauses=clauses,
                deleted_at=deleted_at,
                actor=self.actor,
                effects={
                    "object_versions_deleted": True,
                    "data_key": DATA_KEY_NOTE,
                    "subject_key_destroyed": False,
                    "catalog_state": "expired",
                },
                facts={
                    "object_key": row.object_key,
                    "ciphertext_sha256": row.ciphertext_sha256,
                    "retention_class": row.retention_class,
                    "retain_until": to_db_time(row.retain_until),
                },
            )
            items.append(
                (
                    row.recording_id,
                    AuditDraft(
                        actor=self.actor,
                        action="retention.expired",
                        outcome="ok",
                        reason="retention-due",
                        recording_id=row.recording_id,
                        details={
                            "rule": "retention:due",
                            "clauses": list(clauses),
                            "retention_class": row.retention_class,
                            "retain_until": row.retain_until.isoformat(),
                            "object_key": row.object_key,
                            "receipt_id": receipt.receipt_id,
                        },
                    ),
                    receipt,
                )
            )
        return self.endoflife.finish_expiry(items)

    def finish_cleanups(self) -> int:
        """Delete vault objects a correction superseded that a crash left behind (their
        keys were recorded with the switch); returns how many were deleted.

        Raises:
            CatalogError: the catalog failed.
        """
        cleanups = self.endoflife.pending_cleanups()
        if not cleanups:
            return 0
        keys = [c.object_key for c in cleanups]
        failed = set(self.vault.delete_many(keys))
        done = [key for key in keys if key not in failed]
        self.endoflife.drop_cleanups(done)
        if failed:
            log.error("retention: %d superseded object(s) not deleted; retried", len(failed))
        if done:
            log.warning("retention: deleted %d superseded object(s)", len(done))
        return len(done)

    def _resume_intents(self, result: SweepResult) -> int:
        """Finish retention deletions a crash interrupted, except those of recordings a
        legal hold now covers (their intents are dropped, audited); erasures are the
        privacy service's: it resumes its own."""
        self.finish_cleanups()
        dropped = self.endoflife.drop_held_intents(self.actor)
        if dropped:
            log.warning(
                "retention: dropped %d interrupted deletion(s) of now held recordings",
                len(dropped),
            )
        intents = [i for i in self.endoflife.pending_intents() if i.request_id is None]
        if not intents:
            return 0
        rows = self.endoflife.rows_by_id(i.recording_id for i in intents)
        stored = [row for row in rows.values() if row.state == RecordingState.STORED]
        gone = [
            i.recording_id
            for i in intents
            if i.recording_id not in {r.recording_id for r in stored}
        ]
        self.endoflife.drop_intents(gone)
        if stored:
            failed = self._delete_objects(stored)
            result.failed.extend(r.recording_id for r in stored if r.object_key in failed)
            expired = self._finish([r for r in stored if r.object_key not in failed])
            result.expired.extend(expired)
            result.receipts.extend(expired)
            if self.metrics is not None and expired:
                self.metrics.deletions.labels("retention").inc(len(expired))
        log.warning("retention: finished %d interrupted deletion(s)", len(stored))
        return len(stored)

    def _due(self, moment: datetime, limit: int) -> list[RecordingRow]:
        """Up to ``limit`` recordings the expiry rule ends at ``moment``: the catalog's
        candidates past the rule's cutoff, each decided by ``deletion_decision`` with the
        holds that cover it now (a hold placed since the query keeps its recording)."""
        candidates = self.endoflife.due(expiry_cut(moment).cutoff, limit)
        covering = self.holds.holds_for(candidates)
        return [
            row
            for row in candidates
            if deletion_decision(
                facts_of(row, held=row.recording_id in covering),
                self.policy,
                moment,
                [hold.hold_id for hold in covering.get(row.recording_id, [])],
            ).delete
        ]

    def _report_held(self, moment: datetime, result: SweepResult) -> None:
        rows = self.endoflife.held_due(expiry_cut(moment).cutoff, 1000)
        by_recording = self.holds.holds_for(rows)
        for row in rows:
            hold: LegalHold | None = first_hold(by_recording.get(row.recording_id, []))
            if hold is None:
                continue
            result.held.append(
                {
                    "recording_id": row.recording_id,
                    "retain_until": row.retain_until.isoformat(),
                    "rule": "retention:legal-hold",
                    "hold": hold.summary(),
                }
            )


def safe_sweep(service: RetentionService) -> SweepResult | None:
    """One sweep for a timer: errors are logged (the next tick retries), never raised."""
    try:
        return service.sweep()
    except CallvaultError as exc:
        log.error("retention sweep failed: %s", exc)
        return None
