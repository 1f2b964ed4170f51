"""Helpers of the audio ingest tests: one event through the real pipeline, and what was
stored of it."""

from __future__ import annotations

import json
from typing import Any

from callvault.services import Services
from storage.crypto.envelope import parse_header
from storage.types import RecordingRow
from streams.ingest import IngestPipeline

__all__ = ["store"]


def store(services: Services, event: dict[str, Any]) -> tuple[RecordingRow, bytes, str]:
    """Ingest ``event`` (it must be stored); return its row, the decrypted stored audio
    and the Content-Type sealed in the object's header."""
    pipeline = IngestPipeline.over(services, actor="worker:test")
    try:
        (outcome,) = pipeline.process_batch([json.dumps(event).encode()])
    finally:
        pipeline.close()
    assert outcome.status == "stored", outcome
    row = services.catalog.get_recording(event["recording_id"])
    assert row is not None
    blob = services.vault.get(row.object_key)
    return row, services.keys.open_recording(blob), parse_header(blob)[0].content_type
