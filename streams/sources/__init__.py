"""Telephony sources: what real PBXs and contact-center platforms emit, as events.

One adapter per source turns its native notification into a ``RecordingCompleted``
event for the core path (``callvault.recordings``): S3 object notifications
(:mod:`~streams.sources.s3`), Twilio's RecordingStatusCallback
(:mod:`~streams.sources.twilio`), Amazon Connect recordings joined with their CTRs
(:mod:`~streams.sources.connect`) and the PBX end-of-recording hook ``callvault
announce`` (:mod:`~streams.sources.announce`). See README.md beside this file.
"""

from streams.sources.base import (
    CallDefaults,
    SkipReason,
    SourceOutcome,
    SourceReason,
    build_event,
    call_fields,
)
from streams.sources.config import SourceBindings, load_sources, parse_sources
from streams.sources.router import CONNECT_CTR_TOPIC, S3_EVENTS_TOPIC, Sources

__all__ = [
    "CallDefaults",
    "SkipReason",
    "SourceOutcome",
    "SourceReason",
    "SourceBindings",
    "Sources",
    "S3_EVENTS_TOPIC",
    "CONNECT_CTR_TOPIC",
    "build_event",
    "call_fields",
    "load_sources",
    "parse_sources",
]
