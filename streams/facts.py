"""The one view the policy decisions get of a catalog row (no customer identifier)."""

from __future__ import annotations

from policies import RecordingFacts
from storage.types import RecordingRow, RecordingState

__all__ = ["facts_of"]


def facts_of(row: RecordingRow, *, held: bool = False) -> RecordingFacts:
    """The decision inputs of ``row``; ``held``: whether an active legal hold covers it
    (access decisions ignore holds, retention decisions do not)."""
    return RecordingFacts(
        recording_id=row.recording_id,
        tenant=row.tenant,
        purposes=tuple(row.purposes),
        state=RecordingState(row.state).value,
        restricted=row.restricted,
        held=held,
        retain_until=row.retain_until,
        started_at=row.started_at,
        ended_at=row.ended_at,
    )
