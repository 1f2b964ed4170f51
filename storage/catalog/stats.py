"""Catalog-wide governance counts for monitoring (no identifiers, only numbers).

What a caller may rely on:

- :func:`governance_counts` runs aggregate queries against the catalog database
  (SQLite or PostgreSQL) and returns a :class:`GovernanceCounts`: how many recordings
  are stored per retention class, and how many are *overdue*, i.e. still stored
  although past the expiry rule's cutoff (``policies.expiry_cut(now).cutoff``; the
  condition is the catalog's one form of it, :func:`storage.catalog.endoflife.past_cutoff_sql`).
- Legal holds legitimately keep a recording past its retain-until. The holds feature
  lives elsewhere, so the caller passes ``held``: a function that, given recording ids,
  returns those an active hold covers; they are not counted as overdue. Overdue
  recordings are normally none, so the ids are only read when the count is non-zero
  (at most ``sample`` of them; beyond that the count is an upper bound).
- The result carries retention class names (a bounded set from the policy file) and
  counts only: safe to export as metric labels.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime

from storage.catalog.endoflife import past_cutoff_params, past_cutoff_sql
from storage.catalog.sql import Database
from storage.types import RecordingState

__all__ = ["GovernanceCounts", "HeldFilter", "governance_counts"]

#: Given recording ids, the subset an active legal hold covers.
HeldFilter = Callable[[Collection[str]], Collection[str]]

_STORED_BY_CLASS = (
    "SELECT retention_class, COUNT(*) FROM recordings WHERE state = ? GROUP BY retention_class"
)
_OVERDUE_COUNT = f"SELECT COUNT(*) FROM recordings r WHERE {past_cutoff_sql('r')}"
_OVERDUE_IDS = (
    f"SELECT r.recording_id FROM recordings r WHERE {past_cutoff_sql('r')} "
    "ORDER BY r.retain_until, r.recording_id LIMIT ?"
)


@dataclass(frozen=True)
class GovernanceCounts:
    """Numbers the governance gauges show."""

    stored_by_class: dict[str, int]
    overdue: int
    held_past_retention: int = 0

    @property
    def stored(self) -> int:
        return sum(self.stored_by_class.values())


def governance_counts(
    database: Database, cutoff: datetime, *, held: HeldFilter | None = None, sample: int = 10_000
) -> GovernanceCounts:
    """Count stored recordings per retention class and the overdue ones at ``cutoff``
    (the expiry rule's cutoff for now).

    Raises:
        CatalogError: ``cutoff`` is naive, or the database failed.
    """
    stored = RecordingState.STORED.value
    past = past_cutoff_params(cutoff)
    by_class = {
        str(cls): int(count) for cls, count in database.fetch_all(_STORED_BY_CLASS, (stored,))
    }
    row = database.fetch_one(_OVERDUE_COUNT, past)
    overdue = int(row[0]) if row else 0
    held_count = 0
    if overdue and held is not None:
        ids = [str(r[0]) for r in database.fetch_all(_OVERDUE_IDS, (*past, sample))]
        held_count = len(set(held(ids)) & set(ids))
    return GovernanceCounts(
        stored_by_class=by_class, overdue=overdue - held_count, held_past_retention=held_count
    )
