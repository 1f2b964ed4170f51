"""The record one event carries through the ingest pipeline, from validation to the
catalog commit (:class:`Prepared`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from policies import IngestDecision
from storage.landing import LandingRef
from storage.types import RecordingRow, SubjectKeyRecord
from streams.events import RecordingEvent


@dataclass
class Prepared:
    event: RecordingEvent
    refs: tuple[LandingRef, ...]  # the landing files, one per leg (the first names it)
    decision: IngestDecision
    subject_ref: str
    landing_keys: tuple[str, ...]  # keyed names of the landing files (claims)
    payload: bytes | str | dict[str, Any] = field(repr=False, default=b"")
    restricted: bool = False  # the customer asked to stop use: stored, but unusable
    row: RecordingRow | None = None
    bytes_in: int = 0
    verified: bool = False  # the landing audio matched the event's sha256
    subject_key: SubjectKeyRecord | None = None  # the batch's lookup of the live key

    @property
    def ref(self) -> LandingRef:
        """The recording's first landing file (its sidecar's)."""
        return self.refs[0]

    @property
    def landing_key(self) -> str:
        return self.landing_keys[0]

    def claim_rows(self) -> list[tuple[str, str, str]]:
        """``(landing key, recording id, tenant)`` of every file, for the claims."""
        rid, tenant = self.event.recording_id, self.event.tenant
        return [(key, rid, tenant) for key in self.landing_keys]

    def release_rows(self) -> list[tuple[str, str]]:
        return [(key, self.event.recording_id) for key in self.landing_keys]
