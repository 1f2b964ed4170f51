"""Outbox cursors (table ``outbox_cursors``, migration 10): how far a log kept in the
catalog was published to a topic, so that publishing resumes where it stopped.

The audit log is the outbox of the ``callvault.audit`` topic: its records are read
from the catalog in seq order and the cursor names the last one the topic holds
(``published_seq``) and that record's topic offset (``topic_offset``, -1 for none), so
that a topic that lost records (a broker that lost its memory) or got records from
elsewhere is noticed. One worker publishes at a time: :meth:`OutboxCursors.take`
gives the cursor to ``holder`` for ``lease`` when nobody else holds it (or the other
holder's lease lapsed); only the holder's :meth:`advance` moves it.

Raises:
    CatalogError: from every method, when the database fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from storage.catalog.sql import Database, to_db_time

__all__ = ["OutboxCursor", "OutboxCursors"]


@dataclass(frozen=True)
class OutboxCursor:
    name: str
    published_seq: int
    topic_offset: int  # offset of the record published_seq names; -1: nothing published


class OutboxCursors:
    """The ``outbox_cursors`` table."""

    def __init__(self, database: Database, *, clock: Callable[[], datetime] | None = None):
        self._database = database
        self._clock = clock or (lambda: datetime.now(UTC))

    def get(self, name: str) -> OutboxCursor:
        """The cursor (``published_seq`` 0 and ``topic_offset`` -1 if it never moved)."""
        row = self._database.fetch_one(
            "SELECT published_seq, topic_offset FROM outbox_cursors WHERE name = ?", (name,)
        )
        if row is None:
            return OutboxCursor(name, 0, -1)
        return OutboxCursor(name, int(str(row[0])), int(str(row[1])))

    def take(self, name: str, holder: str, *, lease: timedelta) -> OutboxCursor | None:
        """Hold the cursor for ``lease`` from now (or renew it); ``None`` when another
        holder's lease has not lapsed."""
        now = self._clock()
        until = to_db_time(now + lease)
        with self._database.transaction() as tx:
            tx.execute(
                "INSERT INTO outbox_cursors (name, published_seq, topic_offset, holder, "
                "lease_until, updated_at) VALUES (?, 0, -1, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                "lease_until = excluded.lease_until "
                "WHERE outbox_cursors.holder = excluded.holder "
                "OR outbox_cursors.lease_until < ?",
                (name, holder, until, to_db_time(now), to_db_time(now)),
            )
            row = tx.fetch_one(
                "SELECT published_seq, topic_offset, holder FROM outbox_cursors WHERE name = ?",
                (name,),
            )
        if row is None or str(row[2]) != holder:
            return None
        return OutboxCursor(name, int(str(row[0])), int(str(row[1])))

    def advance(self, name: str, holder: str, published_seq: int, topic_offset: int) -> bool:
        """Move the cursor (forwards, or back when the topic lost records); only its
        holder can. Returns whether it moved."""
        with self._database.transaction() as tx:
            changed = tx.execute(
                "UPDATE outbox_cursors SET published_seq = ?, topic_offset = ?, updated_at = ? "
                "WHERE name = ? AND holder = ?",
                (published_seq, topic_offset, to_db_time(self._clock()), name, holder),
            )
        return changed == 1

    def release(self, name: str, holder: str) -> None:
        """Give the cursor up (a stopping worker), so another may take it at once."""
        with self._database.transaction() as tx:
            tx.execute(
                "UPDATE outbox_cursors SET lease_until = ? WHERE name = ? AND holder = ?",
                (to_db_time(datetime(2000, 1, 1, tzinfo=UTC)), name, holder),
            )
