"""The catalog: what is stored, for whom, for which purposes, until when.

What a caller may rely on:

- ``open_catalog(url, migrate=True)`` opens (and migrates) a SQLite or PostgreSQL catalog;
  ``Catalog(database)`` wraps an already open :class:`storage.catalog.sql.Database`. Both are
  safe to share between the asyncio thread and worker threads (one connection per
  thread); every call blocks.
- Writes that come with an audit record (:meth:`Catalog.store_recordings`,
  :meth:`Catalog.set_state`, :meth:`Catalog.set_restricted`) commit the change and the
  record in one transaction, under the audit log's lock: both or neither, and the
  check-then-write is race-free across workers.
- ``recording_id`` is the idempotency key: storing an existing id changes nothing and
  appends no audit record.
- Subject keys: at most one *live* key (``destroyed_at`` is null) per ``subject_ref``,
  enforced by the database; :meth:`Catalog.put_subject_key` returns the live key that
  won when two writers race.
- Listing is keyset-paginated in (``started_at``, ``recording_id``) order (or the
  reverse, ``newest_first``); pass
  ``after=listing_cursor(last_row_of_previous_page)`` to continue. Pages never overlap
  or skip rows, even while rows are added.
- ``daily_stats`` holds only (day, tenant, queue, count, total duration): anonymous
  figures that survive the recordings' expiry and erasure.
- Errors: :class:`CatalogError` (database failures, bad arguments, forbidden state
  changes), :class:`RecordingNotFound`, :class:`KeyDestroyed`, and :class:`AuditError`
  from the audit part of a write.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from types import TracebackType
from typing import Any

from storage.catalog.audit import AuditDraft, AuditLog
from storage.catalog.holdsql import hold_match_sql
from storage.catalog.migrations import apply_migrations
from storage.catalog.rows import (
    recording_from_row,
    recording_insert,
    recording_params,
    recording_select,
)
from storage.catalog.sql import (
    MAX_CURSOR_CHARS,
    Database,
    Row,
    SqlTimeouts,
    Transaction,
    from_db_time,
    open_database,
    to_db_time,
)
from storage.catalog.vaultsync import HOLD, enqueue_select, new_token
from storage.errors import CatalogError, KeyDestroyed, RecordingNotFound
from storage.types import AuditEntry, RecordingRow, RecordingState, SubjectKeyRecord

__all__ = ["Catalog", "DailyStat", "listing_cursor", "open_catalog"]

_MAX_LIMIT = 1000
_IN_CHUNK = 500  # ids per IN (...) list: well under SQLite's parameter limit

_SELECT = recording_select()
_KEY_COLUMNS = "key_id, subject_ref, tenant, wrapped_key, master_key_id, created_at, destroyed_at"

_STATS_UPSERT = """
INSERT INTO daily_stats (day, tenant, queue, recordings, duration_ms) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (day, tenant, queue) DO UPDATE SET
    recordings = daily_stats.recordings + excluded.recordings,
    duration_ms = daily_stats.duration_ms + excluded.duration_ms
"""

# Tombstones stay tombstones: a recording never comes back to STORED.
_ALLOWED_STATE_CHANGES = frozenset(
    {
        (RecordingState.STORED, RecordingState.EXPIRED),
        (RecordingState.STORED, RecordingState.ERASED),
        (RecordingState.EXPIRED, RecordingState.ERASED),
    }
)


@dataclass(frozen=True)
class DailyStat:
    """Anonymous counters for one (UTC day of ``started_at``, tenant, queue)."""

    day: date
    tenant: str
    queue: str
    recordings: int
    duration_ms: int


def listing_cursor(row: RecordingRow) -> str:
    """The opaque ``after`` cursor that continues a listing after ``row``."""
    raw = json.dumps([to_db_time(row.started_at), row.recording_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        if len(cursor) > MAX_CURSOR_CHARS:  # ours have about 100
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        started_at, recording_id = json.loads(raw)
        from_db_time(started_at)
        if not isinstance(recording_id, str):
            raise TypeError("recording id")
    except (binascii.Error, ValueError, TypeError, RecursionError, CatalogError) as exc:
        raise CatalogError(f"invalid listing cursor {cursor[:40]!r}") from exc
    return started_at, recording_id


def _key_from_row(values: Row) -> SubjectKeyRecord:
    key_id, subject_ref, tenant, wrapped, master_key_id, created_at, destroyed_at = values
    return SubjectKeyRecord(
        key_id=key_id,
        subject_ref=subject_ref,
        tenant=tenant,
        wrapped_key=None if wrapped is None else bytes(wrapped),
        master_key_id=master_key_id,
        created_at=from_db_time(created_at),
        destroyed_at=None if destroyed_at is None else from_db_time(destroyed_at),
    )


def _bind(draft: AuditDraft, recording_id: str) -> AuditDraft:
    """The draft, about ``recording_id`` (filled in when the caller left it empty)."""
    if not isinstance(draft, AuditDraft):
        raise CatalogError(f"expected an AuditDraft, got {type(draft).__name__}")
    if draft.recording_id is None:
        return replace(draft, recording_id=recording_id)
    if draft.recording_id != recording_id:
        raise CatalogError(
            f"audit draft is about {draft.recording_id!r}, not about {recording_id!r}"
        )
    return draft


class Catalog:
    """Recordings, subject keys and anonymous statistics, plus the audit log beside them."""

    def __init__(
        self,
        database: Database,
        *,
        audit: AuditLog | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._database = database
        self._clock = clock or (lambda: datetime.now(UTC))
        self._audit = audit if audit is not None else AuditLog(database, clock=self._clock)

    @property
    def database(self) -> Database:
        """The database this catalog lives in."""
        return self._database

    @property
    def audit(self) -> AuditLog:
        """The audit log stored in the same database."""
        return self._audit

    def migrate(self) -> list[int]:
        """Bring the schema up to date; returns the versions applied now (idempotent).

        Raises:
            CatalogError: a migration failed or the database is newer than this code.
        """
        return apply_migrations(self._database)

    def close(self) -> None:
        """Close the database connections."""
        self._database.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- subject keys (the protocol storage/keys.py relies on) --------------------------

    def get_subject_key(self, subject_ref: str) -> SubjectKeyRecord | None:
        """The live key of ``subject_ref``, or ``None``.

        Raises:
            CatalogError: the database failed.
        """
        row = self._database.fetch_one(
            f"SELECT {_KEY_COLUMNS} FROM subject_keys "
            "WHERE subject_ref = ? AND destroyed_at IS NULL",
            (subject_ref,),
        )
        return None if row is None else _key_from_row(row)

    def get_subject_key_by_id(self, key_id: str) -> SubjectKeyRecord | None:
        """The key ``key_id``, live or destroyed, or ``None``.

        Raises:
            CatalogError: the database failed.
        """
        row = self._database.fetch_one(
            f"SELECT {_KEY_COLUMNS} FROM subject_keys WHERE key_id = ?", (key_id,)
        )
        return None if row is None else _key_from_row(row)

    def put_subject_key(self, record: SubjectKeyRecord) -> SubjectKeyRecord:
        """Insert ``record`` unless its subject already has a live key; return the live key.

        When two writers race for the same subject, exactly one insert wins and both
        get the winner back.

        Raises:
            CatalogError: ``record`` is destroyed or has no wrapped key, its key_id is
                already used by a destroyed key, or the database failed.
        """
        if record.destroyed_at is not None or not isinstance(record.wrapped_key, bytes):
            raise CatalogError("put_subject_key takes a live key (wrapped_key set, not destroyed)")
        with self._database.transaction() as tx:
            tx.execute(
                f"INSERT INTO subject_keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL) "
                "ON CONFLICT DO NOTHING",
                (
                    record.key_id,
                    record.subject_ref,
                    record.tenant,
                    record.wrapped_key,
                    record.master_key_id,
                    to_db_time(record.created_at),
                ),
            )
            row = tx.fetch_one(
                f"SELECT {_KEY_COLUMNS} FROM subject_keys "
                "WHERE subject_ref = ? AND destroyed_at IS NULL",
                (record.subject_ref,),
            )
        if row is None:
            raise CatalogError(f"subject key id {record.key_id!r} is already used")
        return _key_from_row(row)

    def put_subject_keys(self, records: Sequence[SubjectKeyRecord]) -> list[SubjectKeyRecord]:
        """:meth:`put_subject_key` for many subjects in ONE transaction (one commit):
        ingest creates the keys of a batch's new customers together.

        Returns the live key of each record's subject, in order.

        Raises:
            CatalogError: as :meth:`put_subject_key`.
        """
        for record in records:
            if record.destroyed_at is not None or not isinstance(record.wrapped_key, bytes):
                raise CatalogError(
                    "put_subject_keys takes live keys (wrapped_key set, not destroyed)"
                )
        winners: list[SubjectKeyRecord] = []
        with self._database.transaction() as tx:
            tx.executemany(
                f"INSERT INTO subject_keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL) "
                "ON CONFLICT DO NOTHING",
                [
                    (
                        r.key_id,
                        r.subject_ref,
                        r.tenant,
                        r.wrapped_key,
                        r.master_key_id,
                        to_db_time(r.created_at),
                    )
                    for r in records
                ],
            )
            for record in records:
                row = tx.fetch_one(
                    f"SELECT {_KEY_COLUMNS} FROM subject_keys "
                    "WHERE subject_ref = ? AND destroyed_at IS NULL",
                    (record.subject_ref,),
                )
                if row is None:
                    raise CatalogError(f"subject key id {record.key_id!r} is already used")
                winners.append(_key_from_row(row))
        return winners

    def destroy_subject_key(self, key_id: str) -> None:
        """Crypto-shred: drop the wrapped key, stamp ``destroyed_at`` and empty
        ``subject_ref``, so the row no longer links the destroyed key to its customer's
        pseudonym (nothing looks a destroyed key up by subject; see storage/README.md).

        Destroying an already destroyed key changes nothing.

        Raises:
            CatalogError: no key ``key_id`` exists, or the database failed.
        """
        with self._database.transaction() as tx:
            changed = tx.execute(
                "UPDATE subject_keys SET wrapped_key = NULL, destroyed_at = ?, subject_ref = '' "
                "WHERE key_id = ? AND destroyed_at IS NULL",
                (to_db_time(self._clock()), key_id),
            )
            if (
                changed == 0
                and tx.fetch_one("SELECT 1 FROM subject_keys WHERE key_id = ?", (key_id,)) is None
            ):
                raise CatalogError(f"no subject key {key_id!r} to destroy")

    def replace_wrapped_subject_key(
        self, key_id: str, wrapped_key: bytes, master_key_id: str
    ) -> None:
        """Store ``key_id`` re-wrapped under another master key (master key rotation).

        Raises:
            KeyDestroyed: the key was destroyed meanwhile (it stays destroyed).
            CatalogError: no key ``key_id`` exists, bad arguments, or the database failed.
        """
        if not isinstance(wrapped_key, bytes) or not wrapped_key or not master_key_id:
            raise CatalogError(
                "replace_wrapped_subject_key needs wrapped bytes and a master key id"
            )
        with self._database.transaction() as tx:
            changed = tx.execute(
                "UPDATE subject_keys SET wrapped_key = ?, master_key_id = ? "
                "WHERE key_id = ? AND destroyed_at IS NULL",
                (wrapped_key, master_key_id, key_id),
            )
            if changed == 0:
                exists = tx.fetch_one("SELECT 1 FROM subject_keys WHERE key_id = ?", (key_id,))
                if exists is None:
                    raise CatalogError(f"no subject key {key_id!r} to re-wrap")
                raise KeyDestroyed(f"subject key {key_id!r} was destroyed")

    def iter_subject_keys(self) -> Iterator[SubjectKeyRecord]:
        """Every subject key (live and destroyed) in key_id order, read in pages.

        Raises:
            CatalogError: the database failed.
        """
        after = ""
        while True:
            rows = self._database.fetch_all(
                f"SELECT {_KEY_COLUMNS} FROM subject_keys WHERE key_id > ? "
                "ORDER BY key_id LIMIT 500",
                (after,),
            )
            for row in rows:
                yield _key_from_row(row)
            if len(rows) < 500:
                return
            after = rows[-1][0]

    # -- recordings ---------------------------------------------------------------------

    def get_recording(self, recording_id: str) -> RecordingRow | None:
        """The catalog row of ``recording_id`` (any state), or ``None``.

        Raises:
            CatalogError: the database failed.
        """
        row = self._database.fetch_one(f"{_SELECT} WHERE recording_id = ?", (recording_id,))
        return None if row is None else recording_from_row(row)

    def recording_ids_present(self, ids: Iterable[str]) -> set[str]:
        """Which of ``ids`` are in the catalog (any state): the batch idempotency check.

        Raises:
            CatalogError: the database failed.
        """
        return self._present(self._database.fetch_all, list(dict.fromkeys(ids)))

    @staticmethod
    def _present(fetch: Callable[[str, Sequence[Any]], list[Row]], ids: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            marks = ", ".join("?" for _ in chunk)
            rows = fetch(
                f"SELECT recording_id FROM recordings WHERE recording_id IN ({marks})", chunk
            )
            found.update(row[0] for row in rows)
        return found

    def store_recordings(self, items: Sequence[tuple[RecordingRow, AuditDraft]]) -> list[bool]:
        """Insert each new recording with its audit record and statistics, in ONE commit.

        Returns one flag per item: ``True`` when inserted, ``False`` when the
        recording_id was already there (or earlier in the same batch); for those
        nothing is written. A draft's ``recording_id`` is filled in when left ``None``.

        Raises:
            CatalogError: a malformed row (naive datetime, bad purposes) or a database
                failure; nothing of the batch is written.
            AuditError: a draft is invalid or carries personal data; nothing is written.
        """
        prepared = [
            (row, _bind(draft, row.recording_id), recording_params(row)) for row, draft in items
        ]
        if not prepared:
            return []
        with self._database.transaction() as tx:
            self._audit.lock_head(tx)
            existing = self._present(tx.fetch_all, [row.recording_id for row, _, _ in prepared])
            flags: list[bool] = []
            new: list[tuple[RecordingRow, AuditDraft, tuple[Any, ...]]] = []
            for item in prepared:
                fresh = item[0].recording_id not in existing
                flags.append(fresh)
                if fresh:
                    existing.add(item[0].recording_id)
                    new.append(item)
            tx.executemany(recording_insert(), [params for _, _, params in new])
            self._audit.append_many([draft for _, draft, _ in new], tx=tx)
            stats: dict[tuple[str, str, str], list[int]] = {}
            for row, _, _ in new:
                day = row.started_at.astimezone(UTC).date().isoformat()
                counters = stats.setdefault((day, row.tenant, row.queue), [0, 0])
                counters[0] += 1
                counters[1] += int(row.duration_ms)
            tx.executemany(_STATS_UPSERT, [(*key, n, ms) for key, (n, ms) in stats.items()])
            self._queue_held(tx, [row.recording_id for row, _, _ in new])
        return flags

    def _queue_held(self, tx: Transaction, recording_ids: list[str]) -> None:
        """Queue the new recordings an active legal hold already covers (a customer held
        before this call) for the vault mirror, which sets their S3 legal hold."""
        stamp = (new_token(), to_db_time(self._clock()))
        for start in range(0, len(recording_ids), _IN_CHUNK):
            chunk = recording_ids[start : start + _IN_CHUNK]
            tx.execute(
                enqueue_select(
                    f"SELECT r.recording_id, {HOLD}, ?, ? FROM recordings r "
                    f"WHERE r.recording_id IN ({', '.join('?' for _ in chunk)}) "
                    f"AND {hold_match_sql('r')}"
                ),
                (*stamp, *chunk),
            )

    def list_recordings(
        self,
        *,
        tenant: str | None = None,
        agent_id: str | None = None,
        queue: str | None = None,
        started_from: datetime | None = None,
        started_to: datetime | None = None,
        states: Sequence[RecordingState] | None = (RecordingState.STORED,),
        subject_ref: str | None = None,
        purpose: str | None = None,
        restricted: bool | None = None,
        after: str | None = None,
        limit: int = 50,
        call_id: str | None = None,
        recording_id: str | None = None,
        direction: str | None = None,
        min_duration_ms: int | None = None,
        max_duration_ms: int | None = None,
        newest_first: bool = False,
    ) -> list[RecordingRow]:
        """One page of recordings in (started_at, recording_id) order, or the reverse
        with ``newest_first``.

        Filters combine with AND; ``started_from`` is inclusive, ``started_to``
        exclusive; ``min_duration_ms`` / ``max_duration_ms`` are inclusive;
        ``states=None`` means any state; ``purpose`` keeps recordings whose purposes
        include it; ``after`` is a :func:`listing_cursor` of a page in the same order.

        Raises:
            CatalogError: ``limit`` outside 1..1000, empty ``states``, a bad cursor or
                naive datetime, or a database failure.
        """
        if not isinstance(limit, int) or not 1 <= limit <= _MAX_LIMIT:
            raise CatalogError(f"limit must be between 1 and {_MAX_LIMIT}, got {limit!r}")
        where: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("tenant", tenant),
            ("agent_id", agent_id),
            ("queue", queue),
            ("subject_ref", subject_ref),
            ("call_id", call_id),
            ("recording_id", recording_id),
            ("direction", direction),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        for bound, millis in (
            ("duration_ms >= ?", min_duration_ms),
            ("duration_ms <= ?", max_duration_ms),
        ):
            if millis is not None:
                where.append(bound)
                params.append(int(millis))
        if started_from is not None:
            where.append("started_at >= ?")
            params.append(to_db_time(started_from))
        if started_to is not None:
            where.append("started_at < ?")
            params.append(to_db_time(started_to))
        if states is not None:
            wanted = [RecordingState(state).value for state in states]
            if not wanted:
                raise CatalogError("states must name at least one state (or be None for any)")
            where.append(f"state IN ({', '.join('?' for _ in wanted)})")
            params.extend(wanted)
        if purpose is not None:
            where.append(self._database.dialect.contains("purposes"))
            params.append(json.dumps(purpose))
        if restricted is not None:
            where.append("restricted = ?")
            params.append(1 if restricted else 0)
        if after is not None:
            cursor_started, cursor_id = _decode_cursor(after)
            beyond = "<" if newest_first else ">"
            where.append(f"(started_at {beyond} ? OR (started_at = ? AND recording_id {beyond} ?))")
            params.extend((cursor_started, cursor_started, cursor_id))
        sql = _SELECT
        if where:
            sql += " WHERE " + " AND ".join(where)
        order = "DESC" if newest_first else "ASC"
        sql += f" ORDER BY started_at {order}, recording_id {order} LIMIT ?"
        params.append(limit)
        return [recording_from_row(row) for row in self._database.fetch_all(sql, params)]

    def set_state(self, recording_id: str, state: RecordingState, *, audit: AuditDraft) -> None:
        """Change a recording's state together with its audit record (atomically).

        Allowed: stored -> expired, stored -> erased, expired -> erased, and the same
        state again (audited, so a retried request leaves a trace).

        Raises:
            RecordingNotFound: no such recording.
            CatalogError: the change is not allowed (e.g. erased -> stored).
            AuditError: the draft is invalid.
        """
        target = RecordingState(state)
        draft = _bind(audit, recording_id)
        with self._database.transaction() as tx:
            self._audit.lock_head(tx)
            row = tx.fetch_one(
                "SELECT state FROM recordings WHERE recording_id = ?" + tx.dialect.for_update,
                (recording_id,),
            )
            if row is None:
                raise RecordingNotFound(f"recording {recording_id!r} is not in the catalog")
            current = RecordingState(row[0])
            if current != target and (current, target) not in _ALLOWED_STATE_CHANGES:
                raise CatalogError(
                    f"recording {recording_id!r} cannot go from {current} to {target}"
                )
            tx.execute(
                "UPDATE recordings SET state = ?, updated_at = ? WHERE recording_id = ?",
                (target.value, to_db_time(self._clock()), recording_id),
            )
            self._audit.append(draft, tx=tx)

    def set_restricted(
        self, recording_ids: Iterable[str], restricted: bool, *, audit: AuditDraft
    ) -> None:
        """Restrict (or lift the restriction of) recordings; one audit record per recording.

        All or nothing: if any id is unknown, nothing changes.

        Raises:
            RecordingNotFound: an id is not in the catalog.
            CatalogError: the draft names another recording, or the database failed.
            AuditError: the draft is invalid.
        """
        ids = list(dict.fromkeys(recording_ids))
        drafts = [_bind(audit, recording_id) for recording_id in ids]
        if not ids:
            return
        with self._database.transaction() as tx:
            self._audit.lock_head(tx)
            present = self._present(tx.fetch_all, ids)
            missing = [recording_id for recording_id in ids if recording_id not in present]
            if missing:
                raise RecordingNotFound(
                    f"{len(missing)} recording(s) not in the catalog, e.g. {missing[0]!r}"
                )
            now = to_db_time(self._clock())
            flag = 1 if restricted else 0
            tx.executemany(
                "UPDATE recordings SET restricted = ?, updated_at = ? WHERE recording_id = ?",
                [(flag, now, recording_id) for recording_id in ids],
            )
            self._audit.append_many(drafts, tx=tx)

    def daily_stats(
        self,
        *,
        tenant: str | None = None,
        queue: str | None = None,
        day_from: date | None = None,
        day_to: date | None = None,
    ) -> list[DailyStat]:
        """Anonymous per-day counters, ordered by (day, tenant, queue); days inclusive.

        Raises:
            CatalogError: the database failed.
        """
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("tenant", tenant), ("queue", queue)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if day_from is not None:
            where.append("day >= ?")
            params.append(day_from.isoformat())
        if day_to is not None:
            where.append("day <= ?")
            params.append(day_to.isoformat())
        sql = "SELECT day, tenant, queue, recordings, duration_ms FROM daily_stats"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY day, tenant, queue"
        return [
            DailyStat(date.fromisoformat(day), tenant_, queue_, int(count), int(duration))
            for day, tenant_, queue_, count, duration in self._database.fetch_all(sql, params)
        ]


def open_catalog(
    url: str,
    *,
    migrate: bool = False,
    on_append: Callable[[AuditEntry], None] | None = None,
    clock: Callable[[], datetime] | None = None,
    timeouts: SqlTimeouts | None = None,
) -> Catalog:
    """Open the catalog at ``url`` (``sqlite:///abs/path`` or ``postgresql://...``;
    PostgreSQL connections bounded by ``timeouts``, see :class:`SqlTimeouts`).

    ``migrate=True`` applies pending migrations (idempotent; the worker does this at
    start, or calls :meth:`Catalog.migrate`); read-only tools leave the schema alone.
    ``on_append`` is handed to the catalog's :class:`AuditLog` (``catalog.audit``), which
    is called with every committed entry, including those written by
    :meth:`Catalog.store_recordings` / :meth:`Catalog.set_state` / ``set_restricted``.

    Raises:
        ConfigError: the URL is malformed or names an unsupported database.
        CatalogError: the database cannot be opened or migrated.
    """
    database = open_database(url, timeouts=timeouts)
    try:
        catalog = Catalog(
            database, audit=AuditLog(database, on_append=on_append, clock=clock), clock=clock
        )
        if migrate:
            catalog.migrate()
    except BaseException:
        database.close()
        raise
    return catalog
