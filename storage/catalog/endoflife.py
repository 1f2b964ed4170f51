"""End-of-life bookkeeping of recordings: schedules, contract terminations, deletion
intents, expiry and erasure tombstones (tables of migration 3).

What a caller may rely on:

- **Crash safety of a deletion** is built from three steps, each durable before the
  next: :meth:`EndOfLifeStore.mark` writes a *deletion intent* per recording and
  returns the ids it marked; the caller then deletes the vault objects (every
  version) of those ids only; :meth:`EndOfLifeStore.finish_expiry`
  / :meth:`EndOfLifeStore.finish_erasure` change the catalog state, append the audit
  records, store the signed receipts and drop the intents, in ONE transaction. A
  crash between the steps leaves intents behind: :meth:`pending_intents` returns
  them and the caller re-runs the (idempotent) object deletion and the finish.
  A recording with an intent is never half-deleted: it either still has its object
  and ``stored`` state, or it reaches ``expired`` / ``erased`` with its receipt.
- **Legal holds win over intents**: :meth:`mark` inserts the intents with one
  ``INSERT ... SELECT`` that re-checks state and holds, under the audit-head lock that
  :class:`~storage.catalog.holds.HoldStore` takes to place a hold, so a hold placed before the
  marking transaction commits keeps its recordings out (whatever ``due`` returned
  earlier). A hold placed later cannot stop the deletion already under way, but
  after a crash :meth:`drop_held_intents` (run before intents are resumed) drops and
  audits (``retention.intent-dropped``) the intents of recordings now held.
- **Superseded objects**: when :meth:`update_fields` switches a recording's
  ``object_key``, the old key is recorded in ``object_cleanups`` in the same
  transaction; the caller deletes the old object and calls :meth:`drop_cleanups`, and
  :meth:`pending_cleanups` returns what a crash left for the resume path.
- :meth:`due` returns STORED recordings with ``retain_until <= cutoff`` (the cutoff of
  the expiry rule, ``policies.expiry_cut``) that no active
  legal hold covers and that have no pending intent, oldest first; :meth:`held_due`
  the ones a hold keeps. Both are single queries (holds are matched in SQL).
- **Tombstones**: :meth:`finish_erasure` turns a row into a tombstone without
  personal data: state ``erased``, ``subject_ref``, ``call_id`` and ``agent_id``
  emptied, the restriction flag cleared. It keeps the recording id, tenant, queue,
  direction, call times and duration (for the anonymous statistics and the receipt),
  purposes, retention class, object key (a keyed hash), subject key id (of a
  destroyed key) and the ciphertext digest and sizes.
- Contract terminations are kept per subject (``subject_ref``, earliest termination
  wins); :meth:`reschedule` batch-updates retention class and retain-until with one
  audit record per changed recording, and queues the changed recordings for the
  vault mirror (their tags) in the same transaction.
- A small key/value table (``retention_settings``) holds e.g. the digest of the
  retention rules the schedules were computed with.

Errors: :class:`~storage.errors.CatalogError` (database failures, bad arguments),
:class:`~storage.errors.AuditError` (audit drafts).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from storage.catalog.audit import AuditDraft
from storage.catalog.catalog import Catalog
from storage.catalog.holdsql import hold_match_sql
from storage.catalog.receipts import DeletionReceipt, ReceiptStore
from storage.catalog.rows import recording_from_row, recording_select
from storage.catalog.sql import from_db_time, to_db_time
from storage.catalog.vaultsync import TAGS, VaultSyncQueue
from storage.errors import CatalogError
from storage.types import RecordingRow, RecordingState

__all__ = [
    "DeletionIntent",
    "EndOfLifeStore",
    "ObjectCleanup",
    "ScheduleChange",
    "past_cutoff_sql",
    "past_cutoff_params",
]

_IN_CHUNK = 500
_SELECT = recording_select("r")


def past_cutoff_sql(alias: str = "r") -> str:
    """The catalog's form of the expiry rule's cut (``policies.ExpiryCut``): stored, and
    ``retain_until`` at or before the cutoff; parameters from :func:`past_cutoff_params`."""
    return f"{alias}.state = ? AND {alias}.retain_until <= ?"


def past_cutoff_params(cutoff: datetime) -> tuple[str, str]:
    """The parameters of :func:`past_cutoff_sql`.

    Raises:
        CatalogError: ``cutoff`` is naive.
    """
    return RecordingState.STORED.value, to_db_time(cutoff)


@dataclass(frozen=True)
class DeletionIntent:
    """A recording whose deletion was decided but not yet finished."""

    recording_id: str
    object_key: str
    reason: str
    rule: str
    request_id: str | None
    actor: str
    marked_at: datetime


@dataclass(frozen=True)
class ObjectCleanup:
    """A vault object a correction superseded, still to be deleted."""

    object_key: str
    recording_id: str
    reason: str
    actor: str
    created_at: datetime


@dataclass(frozen=True)
class ScheduleChange:
    """A new retention class / retain-until for one recording, with its audit record."""

    recording_id: str
    retention_class: str
    retain_until: datetime
    audit: AuditDraft


class EndOfLifeStore:
    """Schedules, intents, expiry and tombstones over the catalog database."""

    def __init__(
        self,
        catalog: Catalog,
        receipts: ReceiptStore | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._catalog = catalog
        self._db = catalog.database
        self._receipts = receipts or ReceiptStore(catalog)
        self._clock = clock or (lambda: datetime.now(UTC))

    # -- settings -----------------------------------------------------------------------
    def get_setting(self, name: str) -> str | None:
        """The stored value of ``name`` or ``None``.

        Raises:
            CatalogError: the database failed.
        """
        row = self._db.fetch_one("SELECT value FROM retention_settings WHERE name = ?", (name,))
        return None if row is None else str(row[0])

    def set_setting(self, name: str, value: str) -> None:
        """Store ``value`` under ``name`` (insert or replace).

        Raises:
            CatalogError: the database failed.
        """
        with self._db.transaction() as tx:
            tx.execute(
                "INSERT INTO retention_settings (name, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at",
                (name, value, to_db_time(self._clock())),
            )

    # -- contract terminations ----------------------------------------------------------
    def record_termination(
        self, tenant: str, subject_ref: str, terminated_at: datetime
    ) -> datetime:
        """Remember that ``subject_ref``'s contract terminated; return the effective
        (earliest recorded) termination time.

        Raises:
            CatalogError: empty ids, a naive datetime, or a database failure.
        """
        if not tenant or not subject_ref:
            raise CatalogError("a contract termination needs a tenant and a subject_ref")
        stamp = to_db_time(terminated_at)
        with self._db.transaction() as tx:
            tx.execute(
                "INSERT INTO contract_terminations "
                "(subject_ref, tenant, terminated_at, recorded_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (subject_ref) DO UPDATE SET terminated_at = "
                "CASE WHEN excluded.terminated_at < contract_terminations.terminated_at "
                "THEN excluded.terminated_at ELSE contract_terminations.terminated_at END",
                (subject_ref, tenant, stamp, to_db_time(self._clock())),
            )
            row = tx.fetch_one(
                "SELECT terminated_at FROM contract_terminations WHERE subject_ref = ?",
                (subject_ref,),
            )
        assert row is not None
        return from_db_time(row[0])

    def terminations(self, subject_refs: Iterable[str] | None = None) -> dict[str, datetime]:
        """Termination times by subject_ref (all, or only for ``subject_refs``).

        Raises:
            CatalogError: the database failed.
        """
        if subject_refs is None:
            rows = self._db.fetch_all(
                "SELECT subject_ref, terminated_at FROM contract_terminations"
            )
        else:
            refs = sorted({ref for ref in subject_refs if ref})
            rows = []
            for start in range(0, len(refs), _IN_CHUNK):
                chunk = refs[start : start + _IN_CHUNK]
                rows.extend(
                    self._db.fetch_all(
                        "SELECT subject_ref, terminated_at FROM contract_terminations "
                        f"WHERE subject_ref IN ({', '.join('?' for _ in chunk)})",
                        chunk,
                    )
                )
        return {ref: from_db_time(at) for ref, at in rows}

    # -- queries ------------------------------------------------------------------------
    def due(self, cutoff: datetime, limit: int) -> list[RecordingRow]:
        """Up to ``limit`` STORED recordings with ``retain_until <= cutoff`` that no active
        legal hold covers and that have no pending intent, oldest first.

        ``cutoff`` comes from the expiry rule (``policies.expiry_cut(now).cutoff``); the
        caller decides on each row with ``policies.deletion_decision``.

        Raises:
            CatalogError: ``limit`` < 1, naive ``cutoff``, or a database failure.
        """
        return self._due(cutoff, limit, held=False)

    def held_due(self, cutoff: datetime, limit: int) -> list[RecordingRow]:
        """STORED recordings past ``cutoff`` that an active legal hold keeps.

        Raises:
            CatalogError: as :meth:`due`.
        """
        return self._due(cutoff, limit, held=True)

    def _due(self, cutoff: datetime, limit: int, *, held: bool) -> list[RecordingRow]:
        if not isinstance(limit, int) or limit < 1:
            raise CatalogError(f"limit must be a positive integer, got {limit!r}")
        rows = self._db.fetch_all(
            f"{_SELECT} WHERE {past_cutoff_sql('r')} AND "
            f"{'' if held else 'NOT '}{hold_match_sql('r')} AND NOT EXISTS "
            "(SELECT 1 FROM deletion_intents i WHERE i.recording_id = r.recording_id) "
            "ORDER BY r.retain_until, r.recording_id LIMIT ?",
            (*past_cutoff_params(cutoff), limit),
        )
        return [recording_from_row(values) for values in rows]

    def count_overdue(self, cutoff: datetime) -> tuple[int, int]:
        """(unheld, held) counts of STORED recordings with ``retain_until <= cutoff``.

        The first is the ``past retain-until and not deleted`` gauge: normally 0.

        Raises:
            CatalogError: the database failed.
        """
        row = self._db.fetch_one(
            f"SELECT COALESCE(SUM(CASE WHEN {hold_match_sql('r')} THEN 0 ELSE 1 END), 0), "
            f"COALESCE(SUM(CASE WHEN {hold_match_sql('r')} THEN 1 ELSE 0 END), 0) "
            f"FROM recordings r WHERE {past_cutoff_sql('r')}",
            past_cutoff_params(cutoff),
        )
        assert row is not None
        return int(row[0]), int(row[1])

    def rows_by_id(self, recording_ids: Iterable[str]) -> dict[str, RecordingRow]:
        """Catalog rows of ``recording_ids`` (any state), by id; unknown ids are absent.

        Raises:
            CatalogError: the database failed.
        """
        ids = list(dict.fromkeys(recording_ids))
        found: dict[str, RecordingRow] = {}
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            for values in self._db.fetch_all(
                f"{_SELECT} WHERE r.recording_id IN ({', '.join('?' for _ in chunk)})", chunk
            ):
                row = recording_from_row(values)
                found[row.recording_id] = row
        return found

    def rows_erased_elsewhere(
        self, subject_key_ids: Iterable[str], object_keys: Iterable[str]
    ) -> list[RecordingRow]:
        """Stored or expired recordings sealed under one of ``subject_key_ids`` or kept
        under one of ``object_keys``: what an erasure journaled outside the catalog
        erased and a restored catalog brought back.

        Raises:
            CatalogError: the database failed.
        """
        found: dict[str, RecordingRow] = {}
        live = (RecordingState.STORED.value, RecordingState.EXPIRED.value)
        for column, values in (("subject_key_id", subject_key_ids), ("object_key", object_keys)):
            items = list(dict.fromkeys(values))
            for start in range(0, len(items), _IN_CHUNK):
                chunk = items[start : start + _IN_CHUNK]
                for row_values in self._db.fetch_all(
                    f"{_SELECT} WHERE r.state IN (?, ?) AND "
                    f"r.{column} IN ({', '.join('?' for _ in chunk)})",
                    [*live, *chunk],
                ):
                    row = recording_from_row(row_values)
                    found[row.recording_id] = row
        return list(found.values())

    def objects_of(
        self, recording_ids: Iterable[str]
    ) -> dict[str, tuple[RecordingState, str, str | None]]:
        """(state, object key, object version) of ``recording_ids`` as the catalog has them
        now, by id (a light query: what a deletion needs, not the whole row).

        Raises:
            CatalogError: the database failed.
        """
        ids = list(dict.fromkeys(recording_ids))
        found: dict[str, tuple[RecordingState, str, str | None]] = {}
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            for rid, state, key, version in self._db.fetch_all(
                "SELECT recording_id, state, object_key, object_version FROM recordings "
                f"WHERE recording_id IN ({', '.join('?' for _ in chunk)})",
                chunk,
            ):
                found[rid] = (RecordingState(state), key, version)
        return found

    def rows_of_subject(
        self, tenant: str, subject_ref: str, states: Sequence[RecordingState] | None = None
    ) -> list[RecordingRow]:
        """Every recording of a subject (optionally only in ``states``), by start time.

        Raises:
            CatalogError: the database failed.
        """
        sql = f"{_SELECT} WHERE r.tenant = ? AND r.subject_ref = ?"
        params: list[Any] = [tenant, subject_ref]
        if states is not None:
            sql += f" AND r.state IN ({', '.join('?' for _ in states)})"
            params.extend(RecordingState(s).value for s in states)
        sql += " ORDER BY r.started_at, r.recording_id"
        return [recording_from_row(values) for values in self._db.fetch_all(sql, params)]

    def iter_stored(self, page: int = 500) -> Iterable[list[RecordingRow]]:
        """Pages of STORED recordings in recording_id order (for a full reschedule).

        Raises:
            CatalogError: the database failed.
        """
        after = ""
        while True:
            rows = [
                recording_from_row(values)
                for values in self._db.fetch_all(
                    f"{_SELECT} WHERE r.state = ? AND r.recording_id > ? "
                    "ORDER BY r.recording_id LIMIT ?",
                    (RecordingState.STORED.value, after, page),
                )
            ]
            if rows:
                yield rows
            if len(rows) < page:
                return
            after = rows[-1].recording_id

    def count_stored(self) -> int:
        """How many recordings are STORED.

        Raises:
            CatalogError: the database failed.
        """
        row = self._db.fetch_one(
            "SELECT COUNT(*) FROM recordings WHERE state = ?", (RecordingState.STORED.value,)
        )
        return int(row[0]) if row else 0

    # -- schedule -----------------------------------------------------------------------
    def reschedule(self, changes: Sequence[ScheduleChange]) -> int:
        """Apply new classes / retain-until to STORED recordings, audited, in one commit.

        Returns how many rows changed (a recording no longer stored is left alone and
        its audit record is not written).

        Raises:
            CatalogError / AuditError: nothing is written.
        """
        if not changes:
            return 0
        now = to_db_time(self._clock())
        with self._db.transaction() as tx:
            self._catalog.audit.lock_head(tx)
            stored = self._stored_ids(tx, [c.recording_id for c in changes])
            todo = [c for c in changes if c.recording_id in stored]
            tx.executemany(
                "UPDATE recordings SET retention_class = ?, retain_until = ?, updated_at = ? "
                "WHERE recording_id = ? AND state = ?",
                [
                    (
                        c.retention_class,
                        to_db_time(c.retain_until),
                        now,
                        c.recording_id,
                        RecordingState.STORED.value,
                    )
                    for c in todo
                ],
            )
            self._catalog.audit.append_many([c.audit for c in todo], tx=tx)
            # the vault's retention-class / retain-until tags follow (storage.mirror)
            VaultSyncQueue(self._db, clock=self._clock).enqueue(
                [c.recording_id for c in todo], TAGS, tx=tx
            )
        return len(todo)

    def _stored_ids(self, tx: Any, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            rows = tx.fetch_all(
                f"SELECT recording_id FROM recordings WHERE state = ? AND recording_id IN "
                f"({', '.join('?' for _ in chunk)})",
                [RecordingState.STORED.value, *chunk],
            )
            found.update(row[0] for row in rows)
        return found

    # -- deletion: mark, (delete objects), finish ---------------------------------------
    def mark(
        self,
        rows: Sequence[RecordingRow],
        *,
        reason: str,
        rule: str,
        actor: str,
        request_id: str | None = None,
        states: Sequence[RecordingState] = (RecordingState.STORED,),
    ) -> list[str]:
        """Record deletion intents for those of ``rows`` that are (still) in ``states``
        and that no active legal hold covers, re-checked in the marking transaction
        under the lock hold placement takes (idempotent per recording). Returns, in
        the order of ``rows``, the ids that now carry an intent: delete only those.

        Raises:
            CatalogError / AuditError: the database failed (nothing is marked).
        """
        if not rows:
            return []
        now = to_db_time(self._clock())
        ids = list(dict.fromkeys(r.recording_id for r in rows))
        state_marks = ", ".join("?" for _ in states)
        state_values = [RecordingState(s).value for s in states]
        hold = hold_match_sql("r")
        marked: set[str] = set()
        with self._db.transaction() as tx:
            self._catalog.audit.lock_head(tx)  # serializes with HoldStore.place
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = ids[start : start + _IN_CHUNK]
                among = ", ".join("?" for _ in chunk)
                tx.execute(
                    "INSERT INTO deletion_intents "
                    "(recording_id, object_key, reason, rule, request_id, actor, marked_at) "
                    "SELECT r.recording_id, r.object_key, ?, ?, ?, ?, ? FROM recordings r "
                    f"WHERE r.recording_id IN ({among}) AND r.state IN ({state_marks}) "
                    f"AND NOT {hold} ON CONFLICT (recording_id) DO NOTHING",
                    [reason, rule, request_id, actor, now, *chunk, *state_values],
                )
                found = tx.fetch_all(
                    "SELECT i.recording_id FROM deletion_intents i JOIN recordings r "
                    f"ON r.recording_id = i.recording_id WHERE i.recording_id IN ({among}) "
                    f"AND r.state IN ({state_marks}) AND NOT {hold}",
                    [*chunk, *state_values],
                )
                marked.update(row[0] for row in found)
        return [rid for rid in ids if rid in marked]

    def drop_held_intents(self, actor: str) -> list[DeletionIntent]:
        """Drop the intents of recordings an active legal hold now covers (a hold placed
        after a crash left the intent), each with a ``retention.intent-dropped`` audit
        record, in one transaction under the hold lock. Returns the dropped intents.

        Raises:
            CatalogError / AuditError: nothing is dropped.
        """
        with self._db.transaction() as tx:
            self._catalog.audit.lock_head(tx)
            rows = tx.fetch_all(
                "SELECT i.recording_id, i.object_key, i.reason, i.rule, i.request_id, "
                "i.actor, i.marked_at FROM deletion_intents i JOIN recordings r "
                f"ON r.recording_id = i.recording_id WHERE {hold_match_sql('r')} "
                "ORDER BY i.marked_at, i.recording_id"
            )
            dropped = [
                DeletionIntent(rid, key, reason, rule, req, who, from_db_time(at))
                for rid, key, reason, rule, req, who, at in rows
            ]
            if not dropped:
                return []
            tx.executemany(
                "DELETE FROM deletion_intents WHERE recording_id = ?",
                [(i.recording_id,) for i in dropped],
            )
            self._catalog.audit.append_many(
                [
                    AuditDraft(
                        actor=actor,
                        action="retention.intent-dropped",
                        outcome="ok",
                        reason="legal-hold",
                        recording_id=i.recording_id,
                        details={
                            "rule": "retention:legal-hold",
                            "intent_reason": i.reason,
                            "intent_rule": i.rule,
                            "request_id": i.request_id,
                        },
                    )
                    for i in dropped
                ],
                tx=tx,
            )
        return dropped

    def pending_intents(self, *, request_id: str | None = None) -> list[DeletionIntent]:
        """Intents left by an interrupted deletion (all, or one request's), oldest first.

        Raises:
            CatalogError: the database failed.
        """
        sql = (
            "SELECT recording_id, object_key, reason, rule, request_id, actor, marked_at "
            "FROM deletion_intents"
        )
        params: tuple[Any, ...] = ()
        if request_id is not None:
            sql += " WHERE request_id = ?"
            params = (request_id,)
        sql += " ORDER BY marked_at, recording_id"
        return [
            DeletionIntent(rid, key, reason, rule, req, actor, from_db_time(at))
            for rid, key, reason, rule, req, actor, at in self._db.fetch_all(sql, params)
        ]

    def pending_cleanups(self) -> list[ObjectCleanup]:
        """Superseded objects not yet deleted (a crash after a correction), oldest first.

        Raises:
            CatalogError: the database failed.
        """
        return [
            ObjectCleanup(key, rid, reason, actor, from_db_time(at))
            for key, rid, reason, actor, at in self._db.fetch_all(
                "SELECT object_key, recording_id, reason, actor, created_at "
                "FROM object_cleanups ORDER BY created_at, object_key"
            )
        ]

    def drop_cleanups(self, object_keys: Iterable[str]) -> None:
        """Forget cleanup records whose objects were deleted.

        Raises:
            CatalogError: the database failed.
        """
        keys = list(object_keys)
        if not keys:
            return
        with self._db.transaction() as tx:
            tx.executemany("DELETE FROM object_cleanups WHERE object_key = ?", [(k,) for k in keys])

    def drop_intents(self, recording_ids: Iterable[str]) -> None:
        """Forget intents (e.g. of recordings that turned out not to be stored any more).

        Raises:
            CatalogError: the database failed.
        """
        ids = list(recording_ids)
        if not ids:
            return
        with self._db.transaction() as tx:
            tx.executemany(
                "DELETE FROM deletion_intents WHERE recording_id = ?", [(i,) for i in ids]
            )

    def finish_expiry(self, items: Sequence[tuple[str, AuditDraft, DeletionReceipt]]) -> list[str]:
        """``stored -> expired`` for each (recording id, audit draft, receipt), with the
        receipts, in one commit; drops their intents. Recordings no longer STORED are
        skipped (no audit record, no receipt). Returns the ids that expired.

        Raises:
            CatalogError / AuditError: nothing is written.
        """
        return self._finish(items, RecordingState.EXPIRED, (RecordingState.STORED,), scrub=False)

    def finish_erasure(self, items: Sequence[tuple[str, AuditDraft, DeletionReceipt]]) -> list[str]:
        """``stored|expired -> erased`` tombstones (see the module docstring) with their
        audit records and receipts, in one commit; drops their intents. Already erased
        recordings are skipped. Returns the ids erased now.

        Raises:
            CatalogError / AuditError: nothing is written.
        """
        return self._finish(
            items,
            RecordingState.ERASED,
            (RecordingState.STORED, RecordingState.EXPIRED),
            scrub=True,
        )

    def _finish(
        self,
        items: Sequence[tuple[str, AuditDraft, DeletionReceipt]],
        target: RecordingState,
        sources: tuple[RecordingState, ...],
        *,
        scrub: bool,
    ) -> list[str]:
        if not items:
            return []
        now = to_db_time(self._clock())
        ids = [rid for rid, _, _ in items]
        marks = ", ".join("?" for _ in sources)
        with self._db.transaction() as tx:
            self._catalog.audit.lock_head(tx)
            eligible: set[str] = set()
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = ids[start : start + _IN_CHUNK]
                rows = tx.fetch_all(
                    f"SELECT recording_id FROM recordings WHERE state IN ({marks}) "
                    f"AND recording_id IN ({', '.join('?' for _ in chunk)})",
                    [*(s.value for s in sources), *chunk],
                )
                eligible.update(row[0] for row in rows)
            todo = [item for item in items if item[0] in eligible]
            if scrub:
                tx.executemany(
                    "UPDATE recordings SET state = ?, subject_ref = '', call_id = '', "
                    "agent_id = '', restricted = 0, updated_at = ? WHERE recording_id = ?",
                    [(target.value, now, rid) for rid, _, _ in todo],
                )
            else:
                tx.executemany(
                    "UPDATE recordings SET state = ?, updated_at = ? WHERE recording_id = ?",
                    [(target.value, now, rid) for rid, _, _ in todo],
                )
            self._catalog.audit.append_many([draft for _, draft, _ in todo], tx=tx)
            self._receipts.insert_many([receipt for _, _, receipt in todo], tx=tx)
            tx.executemany(
                "DELETE FROM deletion_intents WHERE recording_id = ?", [(rid,) for rid in ids]
            )
        return [rid for rid, _, _ in todo]

    # -- corrections ----------------------------------------------------------------------
    def update_fields(
        self, recording_id: str, changes: dict[str, Any], *, audit: AuditDraft
    ) -> None:
        """Change ``queue`` / ``agent_id`` / ``subject_ref`` / ``subject_key_id`` /
        ``object_key`` / ``object_version`` / ``ciphertext_sha256`` / ``stored_size`` of
        one recording, audited.

        A changed ``object_key`` records the old key in ``object_cleanups`` in the same
        transaction (see the module docstring).

        Raises:
            CatalogError: an unknown field, an unknown recording, or a database failure.
        """
        allowed = {
            "queue",
            "agent_id",
            "subject_ref",
            "subject_key_id",
            "object_key",
            "object_version",
            "ciphertext_sha256",
            "stored_size",
        }
        unknown = set(changes) - allowed
        if unknown or not changes:
            raise CatalogError(f"cannot correct field(s) {sorted(unknown) or 'none'}")
        columns = sorted(changes)
        now = to_db_time(self._clock())
        with self._db.transaction() as tx:
            self._catalog.audit.lock_head(tx)
            if "object_key" in changes:
                old = tx.fetch_one(
                    "SELECT object_key FROM recordings WHERE recording_id = ?"
                    + tx.dialect.for_update,
                    (recording_id,),
                )
                if old is not None and old[0] != changes["object_key"]:
                    tx.execute(
                        "INSERT INTO object_cleanups "
                        "(object_key, recording_id, reason, actor, created_at) "
                        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (object_key) DO NOTHING",
                        (old[0], recording_id, "superseded", audit.actor, now),
                    )
            changed = tx.execute(
                f"UPDATE recordings SET {', '.join(f'{c} = ?' for c in columns)}, updated_at = ? "
                "WHERE recording_id = ?",
                [*(changes[c] for c in columns), now, recording_id],
            )
            if changed == 0:
                raise CatalogError(f"recording {recording_id!r} is not in the catalog")
            self._catalog.audit.append(audit, tx=tx)
