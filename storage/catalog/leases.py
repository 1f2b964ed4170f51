"""Leases: a job that must run in one worker at a time, whatever the number of workers.

The retention sweep, the landing reconciler, key rotation and the audit checkpoint
writer each take the lease of
their name before they run (``leases`` table, migration 13). Every worker process on
every host shares the catalog, so the lease is the one place where they agree who runs
a singleton job.

What a caller may rely on:

- :meth:`LeaseStore.acquire` is atomic across threads, processes and hosts: one row per
  name, taken by an upsert whose ``WHERE`` lets it through only for the holder itself
  (a renewal) or once the lease expired (a take-over). Of two workers asking at once
  exactly one gets it (SQLite: the ``BEGIN IMMEDIATE`` write lock; PostgreSQL: the
  row lock of ``ON CONFLICT DO UPDATE``, whose ``WHERE`` is re-checked on the row the
  winner committed).
- A lease is held until ``expires_at`` (the holder's clock plus ``ttl``): a holder that
  dies leaves it to expire, after which another takes it over. Clocks of the hosts
  should agree to well within the ttl (NTP); a holder renews long jobs
  (:meth:`acquire` again) and stops when a renewal fails.
- :meth:`release` ends a lease early (a clean stop); it never touches another
  holder's lease.
- Holder names must be unique per process (the worker uses ``<worker id>:<pid>``).

Raises: every method raises :class:`~storage.errors.CatalogError` when the database
fails (``CatalogUnavailable`` when it is unreachable).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from storage.catalog.sql import Database, from_db_time, to_db_time
from storage.errors import CatalogError, LeaseHeld

log = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_LEASE",
    "KEY_ROTATION_LEASE",
    "Lease",
    "LeaseStore",
    "RECONCILER_LEASE",
    "SWEEP_LEASE",
]

SWEEP_LEASE = "retention-sweep"
RECONCILER_LEASE = "landing-reconciler"
KEY_ROTATION_LEASE = "key-rotation"
#: Signing the audit checkpoints (storage.checkpoints): one writer at a time.
CHECKPOINT_LEASE = "audit-checkpoint"


@dataclass(frozen=True)
class Lease:
    """Who holds the lease ``name``, since when and until when."""

    name: str
    holder: str
    acquired_at: datetime
    expires_at: datetime


def _utcnow() -> datetime:
    return datetime.now(UTC)


class LeaseStore:
    """Named leases in the catalog (see the module docstring)."""

    def __init__(self, database: Database, clock: Callable[[], datetime] = _utcnow) -> None:
        self._database = database
        self._clock = clock

    def acquire(self, name: str, holder: str, ttl: timedelta) -> bool:
        """Take or renew the lease ``name`` for ``holder`` until now + ``ttl``; False
        when another holder's lease has not expired yet."""
        if ttl <= timedelta(0):
            raise ValueError("a lease needs a positive ttl")
        if not name or not holder:
            raise ValueError("a lease needs a name and a holder")
        now = self._clock()
        at, until = to_db_time(now), to_db_time(now + ttl)
        with self._database.transaction() as tx:
            changed = tx.execute(
                "INSERT INTO leases (name, holder, acquired_at, expires_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET "
                "acquired_at = CASE WHEN leases.holder = excluded.holder "
                "THEN leases.acquired_at ELSE excluded.acquired_at END, "
                "holder = excluded.holder, expires_at = excluded.expires_at "
                "WHERE leases.holder = excluded.holder OR leases.expires_at <= ?",
                (name, holder, at, until, at),
            )
        return changed > 0

    @contextlib.contextmanager
    def holding(self, name: str, holder: str, ttl: timedelta) -> Iterator[None]:
        """Hold the lease ``name`` for the duration of the block, renewed every third of
        ``ttl`` by a background thread, released at the end.

        Raises:
            LeaseHeld: another holder has it (its name and expiry in the message).
        """
        if not self.acquire(name, holder, ttl):
            lease = self.get(name)
            other = f"{lease.holder} until {lease.expires_at:%Y-%m-%dT%H:%M:%SZ}" if lease else "?"
            raise LeaseHeld(f"{name} is running elsewhere (lease held by {other})")
        done = threading.Event()

        def renew() -> None:
            while not done.wait(ttl.total_seconds() / 3):
                try:
                    if not self.acquire(name, holder, ttl):
                        log.error("lease %s was lost to another holder", name)
                        return
                except CatalogError as exc:
                    log.warning("lease %s not renewed (%s); retrying", name, exc)

        renewer = threading.Thread(target=renew, name=f"lease-{name}", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            done.set()
            renewer.join(5)
            with contextlib.suppress(CatalogError):
                self.release(name, holder)

    def release(self, name: str, holder: str) -> bool:
        """End ``holder``'s lease ``name`` now; False when it held none."""
        with self._database.transaction() as tx:
            return (
                tx.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder)) > 0
            )

    def get(self, name: str) -> Lease | None:
        """The lease ``name`` as stored (it may have expired), or None."""
        row = self._database.fetch_one(
            "SELECT name, holder, acquired_at, expires_at FROM leases WHERE name = ?", (name,)
        )
        if row is None:
            return None
        return Lease(str(row[0]), str(row[1]), from_db_time(row[2]), from_db_time(row[3]))

    def held_by(self, name: str, holder: str) -> bool:
        """Whether ``holder`` holds an unexpired lease ``name`` now."""
        lease = self.get(name)
        return lease is not None and lease.holder == holder and lease.expires_at > self._clock()
