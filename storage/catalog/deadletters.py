"""Dead letters: the index of ``callvault.dlq`` that an operator acts on (table
``dead_letters``).

One row per distinct dead-lettered record (the ``entry_id`` is derived from the
record, so the same poison event arriving again bumps ``attempts`` instead of adding
rows). A row keeps the original record key and, sealed, its value (inline, or in the
vault under ``blob_key`` when large), so it can be replayed even after the broker lost
its topics. The value is sealed under its customer's subject key (``subject_key_id``,
migration 14: an erasure shreds it) when the event names a canonical customer
reference, else under the master keyring (``subject_key_id`` NULL). Nothing in a row
is readable personal data: the reason code, a detail written for humans without
values, ids and offsets.

Raises:
    CatalogError: from every method, when the database fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from storage.catalog.sql import Database, Transaction, from_db_time, to_db_time

__all__ = ["DeadLetter", "DeadLetterDraft", "DeadLetterState", "DeadLetterStore"]


class DeadLetterState(StrEnum):
    OPEN = "open"
    REPLAYED = "replayed"


@dataclass(frozen=True, kw_only=True)
class DeadLetterDraft:
    """What the ingest agent records for one dead-lettered record."""

    entry_id: str
    reason: str
    detail: str
    source_topic: str
    source_partition: int | None
    source_offset: int | None
    original_key: bytes | None
    sealed_value: bytes | None  # inline, or None when in the vault
    blob_key: str | None
    value_size: int
    recording_id: str | None = None
    tenant: str | None = None
    #: The subject key the value is sealed under (None: sealed under the master keyring).
    subject_key_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class DeadLetter(DeadLetterDraft):
    """A recorded entry: the draft plus when it was seen, how often, and its state."""

    first_seen: datetime
    last_seen: datetime
    attempts: int
    state: DeadLetterState
    replayed_at: datetime | None
    replayed_by: str | None


_COLUMNS = (
    "entry_id, reason, detail, source_topic, source_partition, source_offset, original_key, "
    "sealed_value, blob_key, value_size, recording_id, tenant, first_seen, last_seen, "
    "attempts, state, replayed_at, replayed_by, subject_key_id"
)
_UPSERT = (
    "INSERT INTO dead_letters (entry_id, reason, detail, source_topic, source_partition, "
    "source_offset, original_key, sealed_value, blob_key, value_size, recording_id, tenant, "
    "first_seen, last_seen, attempts, state, subject_key_id) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 'open', ?) "
    # The value is sealed afresh each time: after an erasure, a new attempt of the same
    # event is sealed under the customer's new key, not left under the destroyed one.
    "ON CONFLICT (entry_id) DO UPDATE SET reason = excluded.reason, "
    "sealed_value = excluded.sealed_value, blob_key = excluded.blob_key, "
    "subject_key_id = excluded.subject_key_id, "
    "detail = excluded.detail, source_topic = excluded.source_topic, "
    "source_partition = excluded.source_partition, source_offset = excluded.source_offset, "
    "last_seen = excluded.last_seen, attempts = dead_letters.attempts + 1, state = 'open'"
)


def _bytes(value: object) -> bytes | None:
    if value is None:
        return None
    assert isinstance(value, bytes | bytearray | memoryview)
    return bytes(value)


def _letter(row: tuple[object, ...]) -> DeadLetter:
    return DeadLetter(
        entry_id=str(row[0]),
        reason=str(row[1]),
        detail=str(row[2]),
        source_topic=str(row[3]),
        source_partition=None if row[4] is None else int(str(row[4])),
        source_offset=None if row[5] is None else int(str(row[5])),
        original_key=_bytes(row[6]),
        sealed_value=_bytes(row[7]),
        blob_key=None if row[8] is None else str(row[8]),
        value_size=int(str(row[9])),
        recording_id=None if row[10] is None else str(row[10]),
        tenant=None if row[11] is None else str(row[11]),
        first_seen=from_db_time(str(row[12])),
        last_seen=from_db_time(str(row[13])),
        attempts=int(str(row[14])),
        state=DeadLetterState(str(row[15])),
        replayed_at=None if row[16] is None else from_db_time(str(row[16])),
        replayed_by=None if row[17] is None else str(row[17]),
        subject_key_id=None if row[18] is None else str(row[18]),
    )


class DeadLetterStore:
    """The ``dead_letters`` table."""

    def __init__(self, database: Database, *, clock: Callable[[], datetime] | None = None):
        self._database = database
        self._clock = clock or (lambda: datetime.now(UTC))

    def record(
        self, drafts: list[DeadLetterDraft], *, tx: Transaction | None = None
    ) -> list[DeadLetter]:
        """Insert each draft, or count one more attempt of an entry already there
        (re-opening it if it was replayed); return the rows as they are now."""
        if not drafts:
            return []
        if tx is None:
            with self._database.transaction() as own:
                return self.record(drafts, tx=own)
        now = to_db_time(self._clock())
        tx.executemany(
            _UPSERT,
            [
                (
                    d.entry_id, d.reason, d.detail[:500], d.source_topic, d.source_partition,
                    d.source_offset, d.original_key, d.sealed_value, d.blob_key, d.value_size,
                    d.recording_id, d.tenant, now, now, d.subject_key_id,
                )
                for d in drafts
            ],
        )  # fmt: skip
        out: list[DeadLetter] = []
        for draft in drafts:
            row = tx.fetch_one(
                f"SELECT {_COLUMNS} FROM dead_letters WHERE entry_id = ?", (draft.entry_id,)
            )
            assert row is not None
            out.append(_letter(row))
        return out

    def get(self, entry_id: str) -> DeadLetter | None:
        row = self._database.fetch_one(
            f"SELECT {_COLUMNS} FROM dead_letters WHERE entry_id = ?", (entry_id,)
        )
        return None if row is None else _letter(row)

    def sealed_under(self, key_ids: Iterable[str]) -> list[DeadLetter]:
        """Every entry whose original is sealed under one of these subject keys (the
        dead letters of a customer being erased), oldest first."""
        wanted = sorted(set(key_ids))
        out: list[DeadLetter] = []
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            rows = self._database.fetch_all(
                f"SELECT {_COLUMNS} FROM dead_letters WHERE subject_key_id IN ({marks}) "
                "ORDER BY first_seen, entry_id",
                tuple(chunk),
            )
            out.extend(_letter(row) for row in rows)
        return out

    def delete(self, entry_ids: Iterable[str], *, tx: Transaction) -> int:
        """Remove these entries (an erasure: their originals are shredded); returns how
        many there were."""
        removed = 0
        ids = sorted(set(entry_ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            removed += tx.execute(
                f"DELETE FROM dead_letters WHERE entry_id IN ({marks})", tuple(chunk)
            )
        return removed

    def list(
        self,
        *,
        reason: str | None = None,
        state: DeadLetterState | None = DeadLetterState.OPEN,
        recording_id: str | None = None,
        limit: int = 100,
        tenant: str | None = None,
    ) -> list[DeadLetter]:
        """Entries, most recently seen first (of one ``tenant`` only, when given: an
        event too malformed to name a tenant is of none)."""
        where, params = ["1 = 1"], []
        if tenant is not None:
            where.append("tenant = ?")
            params.append(tenant)
        if reason is not None:
            where.append("reason = ?")
            params.append(reason)
        if state is not None:
            where.append("state = ?")
            params.append(str(state))
        if recording_id is not None:
            where.append("recording_id = ?")
            params.append(recording_id)
        rows = self._database.fetch_all(
            f"SELECT {_COLUMNS} FROM dead_letters WHERE {' AND '.join(where)} "
            "ORDER BY last_seen DESC, entry_id LIMIT ?",
            (*params, max(1, min(limit, 10_000))),
        )
        return [_letter(row) for row in rows]

    def mark_replayed(self, entry_id: str, *, by: str, tx: Transaction | None = None) -> bool:
        """Mark an open entry replayed; False when it was not open (replayed already)."""
        sql = (
            "UPDATE dead_letters SET state = 'replayed', replayed_at = ?, replayed_by = ? "
            "WHERE entry_id = ? AND state = 'open'"
        )
        params = (to_db_time(self._clock()), by, entry_id)
        if tx is not None:
            return tx.execute(sql, params) > 0
        with self._database.transaction() as own:
            return own.execute(sql, params) > 0

    def open_count(self) -> int:
        row = self._database.fetch_one("SELECT COUNT(*) FROM dead_letters WHERE state = 'open'")
        return int(row[0]) if row else 0
