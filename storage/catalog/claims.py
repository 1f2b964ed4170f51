"""Landing claims: which recording owns which landing file (table ``landing_claims``).

A landing file is named by a keyed hash of its canonical URI (``landing_key``; the URI
itself, which PBXs often build from phone numbers, is never stored). The first event
whose audio verified (its sha256 matched) claims the file for its ``recording_id``;
from then on no other recording id may store, decline or delete it
(``landing-claimed``), whatever sha256 it declares. What a caller may rely on:

- :meth:`LandingClaims.claim` is atomic per file: of two recordings racing for one
  file (two workers, one transaction each) exactly one wins; the claim of the same
  recording id again is a no-op. A ``released`` claim (the file was deleted after its
  recording was stored or declined) is taken over by the next claimant, so a PBX that
  reuses file names keeps working.
- States: ``claimed`` (being ingested, or stored and not yet deleted from landing),
  ``dead-lettered`` (the event went to the DLQ; the file is kept for an operator and
  the reconciler no longer re-announces it), ``released``.
- Re-announcements by the landing reconciler are counted per file
  (:meth:`may_announce` / :meth:`announced`) so that a file is re-announced a bounded
  number of times, with back-off, across restarts.

Raises:
    CatalogError: from every method, when the database fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from storage.catalog.sql import Database, Transaction, from_db_time, to_db_time

__all__ = ["ClaimState", "LandingClaim", "LandingClaims"]


class ClaimState(StrEnum):
    CLAIMED = "claimed"
    DEAD_LETTERED = "dead-lettered"
    RELEASED = "released"


@dataclass(frozen=True)
class LandingClaim:
    landing_key: str
    recording_id: str
    tenant: str
    state: ClaimState
    reason: str
    claimed_at: datetime
    updated_at: datetime


_COLUMNS = "landing_key, recording_id, tenant, state, reason, claimed_at, updated_at"
_CLAIM = (
    "INSERT INTO landing_claims (landing_key, recording_id, tenant, state, reason, claimed_at, "
    "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (landing_key) DO UPDATE SET recording_id = excluded.recording_id, "
    "tenant = excluded.tenant, state = excluded.state, reason = excluded.reason, "
    "claimed_at = excluded.claimed_at, updated_at = excluded.updated_at "
    "WHERE landing_claims.state = 'released' OR landing_claims.recording_id = excluded.recording_id"
)


def _claim_of(row: tuple[object, ...]) -> LandingClaim:
    return LandingClaim(
        landing_key=str(row[0]),
        recording_id=str(row[1]),
        tenant=str(row[2]),
        state=ClaimState(str(row[3])),
        reason=str(row[4]),
        claimed_at=from_db_time(str(row[5])),
        updated_at=from_db_time(str(row[6])),
    )


class LandingClaims:
    """The ``landing_claims`` and ``landing_announcements`` tables."""

    def __init__(self, database: Database, *, clock: Callable[[], datetime] | None = None):
        self._database = database
        self._clock = clock or (lambda: datetime.now(UTC))

    # -- reading ------------------------------------------------------------------------
    def get(self, landing_keys: Iterable[str]) -> dict[str, LandingClaim]:
        """The claims of these files (files nobody claimed are absent)."""
        keys = list(dict.fromkeys(landing_keys))
        found: dict[str, LandingClaim] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            rows = self._database.fetch_all(
                f"SELECT {_COLUMNS} FROM landing_claims WHERE landing_key IN ({marks})", chunk
            )
            for row in rows:
                claim = _claim_of(row)
                found[claim.landing_key] = claim
        return found

    def of_recording(self, recording_id: str) -> list[LandingClaim]:
        """Every claim ``recording_id`` holds (normally one)."""
        rows = self._database.fetch_all(
            f"SELECT {_COLUMNS} FROM landing_claims WHERE recording_id = ?", (recording_id,)
        )
        return [_claim_of(row) for row in rows]

    # -- claiming -----------------------------------------------------------------------
    def claim(
        self,
        items: Sequence[tuple[str, str, str]],
        *,
        state: ClaimState = ClaimState.CLAIMED,
        reason: str = "",
        tx: Transaction | None = None,
    ) -> dict[str, str]:
        """Claim ``(landing_key, recording_id, tenant)`` files; return ``{landing_key:
        owner}`` for every file, whoever owns it now (the caller compares the owner with
        its recording id: another owner means ``landing-claimed``)."""
        if not items:
            return {}
        if tx is None:
            with self._database.transaction() as own:
                return self.claim(items, state=state, reason=reason, tx=own)
        now = to_db_time(self._clock())
        tx.executemany(
            _CLAIM, [(key, rid, tenant, str(state), reason, now, now) for key, rid, tenant in items]
        )
        keys = [key for key, _, _ in items]
        owners: dict[str, str] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            sql = (
                "SELECT landing_key, recording_id FROM landing_claims "
                f"WHERE landing_key IN ({marks})"
            )
            for key, owner in tx.fetch_all(sql, chunk):
                owners[str(key)] = str(owner)
        return owners

    def set_state(
        self,
        items: Iterable[tuple[str, str]],
        state: ClaimState,
        *,
        reason: str = "",
        tx: Transaction | None = None,
    ) -> None:
        """Move the claims ``(landing_key, recording_id)`` (only those that recording
        holds) to ``state``."""
        rows = [(str(state), reason, to_db_time(self._clock()), key, rid) for key, rid in items]
        if not rows:
            return
        sql = (
            "UPDATE landing_claims SET state = ?, reason = ?, updated_at = ? "
            "WHERE landing_key = ? AND recording_id = ?"
        )
        if tx is not None:
            tx.executemany(sql, rows)
            return
        with self._database.transaction() as own:
            own.executemany(sql, rows)

    # -- re-announcements ---------------------------------------------------------------
    def may_announce(
        self, landing_key: str, *, limit: int, backoff: timedelta, now: datetime | None = None
    ) -> bool:
        """Whether the reconciler may re-announce this file now: fewer than ``limit``
        announcements so far, and ``backoff * 2**(n-1)`` passed since the last one."""
        row = self._database.fetch_one(
            "SELECT announcements, last_announced_at FROM landing_announcements "
            "WHERE landing_key = ?",
            (landing_key,),
        )
        if row is None:
            return limit > 0
        count, last = int(row[0]), from_db_time(str(row[1]))
        if count >= limit:
            return False
        current = now or self._clock()
        wait: timedelta = backoff * (2 ** max(0, count - 1))
        return bool(current - last >= wait)

    def announced(self, landing_key: str, *, now: datetime | None = None) -> int:
        """Count one re-announcement of the file; return how many there were."""
        at = to_db_time(now or self._clock())
        with self._database.transaction() as tx:
            tx.execute(
                "INSERT INTO landing_announcements (landing_key, announcements, "
                "last_announced_at) VALUES (?, 1, ?) ON CONFLICT (landing_key) DO UPDATE SET "
                "announcements = landing_announcements.announcements + 1, "
                "last_announced_at = excluded.last_announced_at",
                (landing_key, at),
            )
            row = tx.fetch_one(
                "SELECT announcements FROM landing_announcements WHERE landing_key = ?",
                (landing_key,),
            )
        return int(row[0]) if row else 0
