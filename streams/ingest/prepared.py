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
    #: False: an in-process caller that vouches for the landing file (the importer, for
    #: a manifest row without a sha256) claims no digest; the audio is taken as the file
    #: holds it, and nothing hashes it (the event's sha256 is a placeholder).
    digests_claimed: bool = True
    subject_key: SubjectKeyRecord | None = None  # the batch's lookup of the live key

    @property
    def ref(self) -> LandingRef:
        """The recording's first landing file (its sidecar's)."""
        return self.refs[0]

    def expected_digests(self) -> list[str | None]:
        """The sha256 each landing file must have, in channel order (``None``: any)."""
        if not self.digests_claimed:
            return [None] * len(self.refs)
        return [digest for _, digest in self.event.audio.files]

    @property
    def landing_key(self) -> str:
        return self.landing_keys[0]

    def claim_rows(self) -> list[tuple[str, str, str]]:
        """``(landing key, recording id, tenant)`` of every file, for the claims."""
        rid, tenant = self.event.recording_id, self.event.tenant
        return [(key, rid, tenant) for key in self.landing_keys]

    def release_rows(self) -> list[tuple[str, str]]:
        return [(key, self.event.recording_id) for key in self.landing_keys]
