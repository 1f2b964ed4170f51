"""The vault mirror queue (table ``vault_sync``, migration 8): recordings whose object
tags or legal hold in the vault must be brought in line with the catalog.

What a caller may rely on:

- Every change the vault mirrors is queued **in the transaction of the change**, so no
  crash between the catalog commit and the vault call can lose it: a reschedule queues
  :data:`TAGS` (``EndOfLifeStore.reschedule``), placing or releasing a legal hold
  queues :data:`HOLD` for the stored recordings it covers (``HoldStore``), storing a
  recording an active hold already covers queues :data:`HOLD`
  (``Catalog.store_recordings``). :meth:`VaultSyncQueue.enqueue_stored` queues every
  stored recording (``callvault vault sync --all``).
- An entry is one row per recording; queuing it again ORs the needs together and gives
  it a new ``token``. :meth:`VaultSyncQueue.done` removes an entry only if its token is
  still the one :meth:`VaultSyncQueue.pending` returned, so a change queued while the
  mirror was working is done again, never dropped.
- The consumer is :class:`storage.mirror.VaultMirror`; what it writes is whatever the
  catalog says *when it runs* (entries carry no desired state), so running it twice,
  or after a crash, is harmless.

Errors: :class:`~storage.errors.CatalogError` (database failures).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from storage.catalog.sql import Database, Transaction, to_db_time

__all__ = ["TAGS", "HOLD", "SyncItem", "VaultSyncQueue", "enqueue_select", "new_token"]

TAGS = 1  # the retention-class / retain-until / legal-hold tags
HOLD = 2  # the Object Lock legal hold of every version (and the tags)
_IN_CHUNK = 500

_UPSERT = (
    "ON CONFLICT (recording_id) DO UPDATE SET needs = vault_sync.needs | excluded.needs, "
    "token = excluded.token, queued_at = excluded.queued_at"
)


def new_token() -> str:
    """A fresh token for one enqueue (what :meth:`VaultSyncQueue.done` compares)."""
    return secrets.token_hex(8)


def enqueue_select(select: str) -> str:
    """``INSERT INTO vault_sync ... <select> ON CONFLICT ...``; ``select`` yields
    (recording_id, needs, token, queued_at) rows."""
    return f"INSERT INTO vault_sync (recording_id, needs, token, queued_at) {select} {_UPSERT}"


@dataclass(frozen=True)
class SyncItem:
    """One queued recording: what needs mirroring, and the token it was queued with."""

    recording_id: str
    needs: int
    token: str


class VaultSyncQueue:
    """The ``vault_sync`` table."""

    def __init__(self, database: Database, *, clock: Callable[[], datetime] | None = None):
        self._db = database
        self._clock = clock or (lambda: datetime.now(UTC))

    def enqueue(
        self, recording_ids: Iterable[str], needs: int, *, tx: Transaction | None = None
    ) -> None:
        """Queue ``recording_ids`` (inside ``tx`` when given).

        Raises:
            CatalogError: the database failed.
        """
        rows = [(rid, needs, new_token(), to_db_time(self._clock())) for rid in recording_ids]
        if not rows:
            return
        sql = (
            f"INSERT INTO vault_sync (recording_id, needs, token, queued_at) "
            f"VALUES (?, ?, ?, ?) {_UPSERT}"
        )
        if tx is not None:
            tx.executemany(sql, rows)
            return
        with self._db.transaction() as own:
            own.executemany(sql, rows)

    def enqueue_stored(self, needs: int) -> int:
        """Queue every stored recording; returns how many.

        Raises:
            CatalogError: the database failed.
        """
        with self._db.transaction() as tx:
            return tx.execute(
                enqueue_select(
                    "SELECT recording_id, ?, ?, ? FROM recordings WHERE state = 'stored'"
                ),
                (needs, new_token(), to_db_time(self._clock())),
            )

    def pending(
        self, limit: int = 1000, *, after: str = "", needs: int | None = None
    ) -> list[SyncItem]:
        """Up to ``limit`` queued recordings with ids after ``after``, in id order (only
        those that need any of ``needs``, when given).

        Raises:
            CatalogError: the database failed.
        """
        where = "recording_id > ?"
        params: list[object] = [after]
        if needs is not None:
            where += " AND (needs & ?) != 0"
            params.append(needs)
        return [
            SyncItem(rid, int(found), token)
            for rid, found, token in self._db.fetch_all(
                f"SELECT recording_id, needs, token FROM vault_sync WHERE {where} "
                "ORDER BY recording_id LIMIT ?",
                (*params, limit),
            )
        ]

    def done(self, items: Sequence[SyncItem]) -> None:
        """Forget ``items`` unless they were queued again since :meth:`pending`.

        Raises:
            CatalogError: the database failed.
        """
        if not items:
            return
        with self._db.transaction() as tx:
            tx.executemany(
                "DELETE FROM vault_sync WHERE recording_id = ? AND token = ?",
                [(item.recording_id, item.token) for item in items],
            )

    def count(self) -> int:
        """How many recordings are queued.

        Raises:
            CatalogError: the database failed.
        """
        row = self._db.fetch_one("SELECT COUNT(*) FROM vault_sync")
        return int(row[0]) if row else 0
