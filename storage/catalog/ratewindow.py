"""The access rate window in the catalog: distinct recordings a principal was released
per sliding window, counted across every worker (``access_rate_window``, migration 13).

The decision (limit, what counts) is the rate guard's (``streams/http/rateguard.py``);
this module only keeps the window where every worker process and host sees it, so that
N workers do not allow N x the limit and a restart forgets nothing.

What a caller may rely on:

- :meth:`AccessRateWindow.admit` is atomic across workers: one principal's check and
  count run under one lock (SQLite: the ``BEGIN IMMEDIATE`` write lock; PostgreSQL: a
  transaction-scoped advisory lock on the principal), so two workers admitting the
  last free slot at once let exactly one through.
- Entries older than the window are dropped on the next call for that principal; rows
  hold the principal key (role, org, staff user) and recording ids, no customer data.

Raises: :class:`~storage.errors.CatalogError` when the database fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from storage.catalog.sql import Database, Transaction, from_db_time, to_db_time

__all__ = ["AccessRateWindow", "WindowVerdict", "REFRESH_AFTER"]

#: A recording counted this recently is not refreshed again (a player's Range requests).
REFRESH_AFTER = timedelta(minutes=1)


@dataclass(frozen=True)
class WindowVerdict:
    """``allowed``; ``used`` distinct recordings in the window after this call;
    ``oldest`` the time of the oldest entry (when a slot frees up), None if empty."""

    allowed: bool
    used: int
    oldest: datetime | None


class AccessRateWindow:
    """Distinct recordings per principal in a sliding window, in the catalog."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def admit(
        self,
        principal: str,
        recording_id: str,
        now: datetime,
        horizon: datetime,
        limit: int | None,
    ) -> WindowVerdict:
        """Count ``recording_id`` for ``principal`` at ``now`` (entries at or before
        ``horizon`` no longer count) unless ``limit`` distinct recordings are counted
        already; re-counting a recording in the window only refreshes it (and a player's
        Range requests within :data:`REFRESH_AFTER` of the last refresh write nothing)."""
        at = to_db_time(now)
        seen = self._database.fetch_one(
            "SELECT last_at FROM access_rate_window WHERE principal = ? AND recording_id = ?",
            (principal, recording_id),
        )
        if seen is not None and from_db_time(seen[0]) > max(horizon, now - REFRESH_AFTER):
            # Seeking in a recording counted a moment ago: no write transaction needed.
            used, oldest = self._count(self._database, principal, horizon)
            return WindowVerdict(True, used, oldest)
        with self._database.transaction() as tx:
            self._lock(tx, principal)
            tx.execute(
                "DELETE FROM access_rate_window WHERE principal = ? AND last_at <= ?",
                (principal, to_db_time(horizon)),
            )
            again = tx.execute(
                "UPDATE access_rate_window SET last_at = ? "
                "WHERE principal = ? AND recording_id = ?",
                (at, principal, recording_id),
            )
            used, oldest = self._count(tx, principal, horizon)
            if again:
                return WindowVerdict(True, used, oldest)
            if limit is not None and used >= limit:
                return WindowVerdict(False, used, oldest)
            tx.execute(
                "INSERT INTO access_rate_window (principal, recording_id, last_at) "
                "VALUES (?, ?, ?)",
                (principal, recording_id, at),
            )
            return WindowVerdict(True, used + 1, oldest or now)

    def used(self, principal: str, horizon: datetime) -> int:
        """Distinct recordings counted for ``principal`` after ``horizon``."""
        row = self._database.fetch_one(
            "SELECT COUNT(*) FROM access_rate_window WHERE principal = ? AND last_at > ?",
            (principal, to_db_time(horizon)),
        )
        return int(row[0]) if row else 0

    @staticmethod
    def _lock(tx: Transaction, principal: str) -> None:
        if tx.dialect.name == "postgresql":
            tx.fetch_all("SELECT pg_advisory_xact_lock(hashtextextended(?, 7))", (principal,))
        # SQLite: BEGIN IMMEDIATE already holds the database's write lock.

    @staticmethod
    def _count(
        reader: Transaction | Database, principal: str, horizon: datetime
    ) -> tuple[int, datetime | None]:
        row = reader.fetch_one(
            "SELECT COUNT(*), MIN(last_at) FROM access_rate_window "
            "WHERE principal = ? AND last_at > ?",
            (principal, to_db_time(horizon)),
        )
        if row is None or not row[0]:
            return 0, None
        return int(row[0]), from_db_time(row[1])
