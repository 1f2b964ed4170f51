"""The ``RecordingCompleted`` event (schema ``callvault.recording.v1``) and its validation.

Events arrive as raw bytes so that a malformed message becomes a DLQ entry with a
reason instead of a decoding error inside faust. :func:`parse_recording_event`
either returns a :class:`RecordingEvent` or raises :class:`EventRejected` with a
stable reason code (see :class:`RejectReason`); it raises nothing else, whatever the
input. The ``detail`` of a rejection names the offending field, never its value when
that value may be personal data.

Bounds (:mod:`streams.bounds`): at most :data:`MAX_EVENT_BYTES` of JSON nested at most
:data:`~streams.bounds.MAX_JSON_DEPTH` deep; no string (keys included) with a lone
surrogate, NUL or a control character; call times inside the
:class:`~streams.bounds.TimeWindow` (default 2000-01-01 to now + 1 day).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from storage.audio import SUPPORTED_FORMATS
from storage.customer import NOT_CANONICAL, customer_ref_problem
from streams.bounds import DEFAULT_WINDOW, TimeWindow, check_tree, load_json, parse_instant
from streams.errors import EventRejected, InputRejected

__all__ = [
    "SCHEMA_V1",
    "CALL_FIELDS",
    "RECORDING_ID",
    "TENANT",
    "MAX_EVENT_BYTES",
    "AUDIO_FORMATS",
    "RejectReason",
    "AudioRef",
    "RecordingEvent",
    "parse_recording_event",
]

SCHEMA_V1 = "callvault.recording.v1"
MAX_EVENT_BYTES = 64 * 1024
MAX_CALL = timedelta(hours=24)
MAX_PCI_PAUSES = 200
AUDIO_FORMATS = SUPPORTED_FORMATS
DIRECTIONS = frozenset({"inbound", "outbound", "internal"})
CONSENTS = frozenset({"notified", "granted", "declined"})

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
RECORDING_ID = _ID
_TENANT = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
TENANT = _TENANT
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_PURPOSE = re.compile(r"^[a-z][a-z0-9-]{0,63}$")

#: The event's plain text and time fields, in the contract's order.
CALL_FIELDS = (
    "recording_id",
    "call_id",
    "tenant",
    "started_at",
    "ended_at",
    "agent_id",
    "customer_ref",
    "queue",
    "direction",
)
_FIELDS = frozenset({"schema", *CALL_FIELDS, "consent", "purposes", "audio", "pci_pauses"})
_OPTIONAL = frozenset({"purposes", "pci_pauses"})


class RejectReason(StrEnum):
    """Why an event went to ``callvault.dlq`` (stable codes, used in metrics and audit)."""

    MALFORMED = "malformed"  # not JSON / not an object / too large
    SCHEMA = "schema"  # missing, unknown or ill-typed fields
    SCHEMA_VERSION = "schema-version"
    INVALID_FIELD = "invalid-field"  # a field fails its rule (ids, times, formats)
    UNKNOWN_PURPOSE = "unknown-purpose"
    URI_INVALID = "uri-invalid"
    URI_OUTSIDE_LANDING = "uri-outside-landing"
    LANDING_MISSING = "landing-missing"
    LANDING_TOO_LARGE = "landing-too-large"
    LANDING_NOT_REGULAR = "landing-not-regular"  # a FIFO, socket or device
    LANDING_UNSAFE = "landing-unsafe"  # hard links, or replaced while opened
    LANDING_UNREADABLE = "landing-unreadable"  # permissions, or S3 refuses this object
    LANDING_CLAIMED = "landing-claimed"  # the audio belongs to another recording id
    SHA256_MISMATCH = "sha256-mismatch"
    AUDIO_UNDECODABLE = "audio-undecodable"
    AUDIO_UNSUPPORTED = "audio-unsupported"
    AUDIO_MISLABELLED = "audio-mislabelled"  # the container is not the declared format
    AUDIO_TOO_LONG = "audio-too-long"  # decodes to more than the declared call allows
    PCI_OUT_OF_RANGE = "pci-out-of-range"
    CUSTOMER_REF_NOT_CANONICAL = NOT_CANONICAL  # storage.customer: NFC, no outer space
    INTERNAL_ERROR = "internal-error"  # an unexpected failure; detail: the exception type


@dataclass(frozen=True)
class AudioRef:
    uri: str
    format: str
    sha256: str


@dataclass(frozen=True)
class RecordingEvent:
    """A validated ``RecordingCompleted`` event. ``customer_ref`` is personal data:
    it is pseudonymized on ingest and never logged, tagged or put in metrics."""

    recording_id: str
    call_id: str
    tenant: str
    started_at: datetime
    ended_at: datetime
    agent_id: str
    customer_ref: str
    queue: str
    direction: str
    consent: str
    purposes: tuple[str, ...] | None
    audio: AudioRef
    pci_pauses: tuple[tuple[int, int], ...]
    raw: Mapping[str, Any]

    @property
    def duration_ms(self) -> int:
        return int((self.ended_at - self.started_at) / timedelta(milliseconds=1))


def _names(names: list[str]) -> str:
    """A bounded list of field names for a detail (a sender chooses them)."""
    shown = ", ".join(name[:40] for name in names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _reject(reason: RejectReason, detail: str) -> EventRejected:
    return EventRejected(str(reason), detail)


def _text(data: Mapping[str, Any], name: str, pattern: re.Pattern[str] | None = None) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise _reject(RejectReason.SCHEMA, f"{name}: expected a non-empty string")
    if pattern is not None and not pattern.match(value):
        raise _reject(RejectReason.INVALID_FIELD, f"{name}: does not match {pattern.pattern}")
    return value


def _time(data: Mapping[str, Any], name: str, window: TimeWindow, now: datetime) -> datetime:
    raw = _text(data, name)
    try:
        value = parse_instant(raw)
    except ValueError as exc:
        raise _reject(RejectReason.INVALID_FIELD, f"{name}: {exc}") from None
    problem = window.problem(value, now)
    if problem:
        raise _reject(RejectReason.INVALID_FIELD, f"{name} {problem}")
    return value


def _choice(data: Mapping[str, Any], name: str, allowed: frozenset[str]) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise _reject(RejectReason.SCHEMA, f"{name}: expected a string")
    if value not in allowed:
        raise _reject(RejectReason.INVALID_FIELD, f"{name}: must be one of {sorted(allowed)}")
    return value


def _load(payload: bytes | str | Mapping[str, Any]) -> Mapping[str, Any]:
    try:
        if isinstance(payload, Mapping):
            check_tree(payload, multiline=False)
            return payload
        if not isinstance(payload, bytes | bytearray | str):
            raise _reject(RejectReason.MALFORMED, "event must be JSON bytes or text")
        data = load_json(payload, max_bytes=MAX_EVENT_BYTES, multiline=False)
    except InputRejected as exc:
        if exc.reason == "bad-text":
            bad_uri = exc.detail.startswith("audio.uri:")  # NUL in a URI was always uri-invalid
            reason = RejectReason.URI_INVALID if bad_uri else RejectReason.INVALID_FIELD
            raise _reject(reason, exc.detail) from None
        raise _reject(RejectReason.MALFORMED, f"event {exc.detail}") from None
    if not isinstance(data, dict):
        raise _reject(RejectReason.MALFORMED, "event must be a JSON object")
    return data


def parse_recording_event(
    payload: bytes | str | Mapping[str, Any],
    *,
    now: datetime | None = None,
    window: TimeWindow = DEFAULT_WINDOW,
) -> RecordingEvent:
    """Validate a raw event; call times must lie in ``window`` around ``now``.

    Raises:
        EventRejected: with ``reason`` one of :class:`RejectReason`.
    """
    now = now or datetime.now(UTC)
    data = _load(payload)
    if data.get("schema") != SCHEMA_V1:
        raise _reject(RejectReason.SCHEMA_VERSION, f"schema must be {SCHEMA_V1!r}")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise _reject(RejectReason.SCHEMA, f"unknown fields: {_names(unknown)}")
    missing = sorted(_FIELDS - _OPTIONAL - set(data))
    if missing:
        raise _reject(RejectReason.SCHEMA, f"missing fields: {', '.join(missing)}")

    started_at = _time(data, "started_at", window, now)
    ended_at = _time(data, "ended_at", window, now)
    if ended_at < started_at:
        raise _reject(RejectReason.INVALID_FIELD, "ended_at is before started_at")
    if ended_at - started_at > MAX_CALL:
        raise _reject(RejectReason.INVALID_FIELD, "call longer than 24 hours")

    customer_ref = data.get("customer_ref")
    if not isinstance(customer_ref, str) or not customer_ref.strip() or len(customer_ref) > 256:
        raise _reject(RejectReason.SCHEMA, "customer_ref: expected a string of 1-256 characters")
    problem = customer_ref_problem(customer_ref)
    if problem is not None:  # refused, never altered: every path pseudonymizes it as sent
        raise _reject(RejectReason.CUSTOMER_REF_NOT_CANONICAL, problem)

    consent = data.get("consent")
    if not isinstance(consent, Mapping):
        raise _reject(RejectReason.SCHEMA, "consent: expected an object")
    consent_value = _choice(consent, "recording", CONSENTS)

    purposes: tuple[str, ...] | None = None
    if data.get("purposes") is not None:
        raw_purposes = data["purposes"]
        if not isinstance(raw_purposes, list) or not raw_purposes or len(raw_purposes) > 16:
            raise _reject(RejectReason.SCHEMA, "purposes: expected a list of 1-16 strings")
        if not all(isinstance(p, str) and _PURPOSE.match(p) for p in raw_purposes):
            raise _reject(RejectReason.INVALID_FIELD, "purposes: each must match [a-z][a-z0-9-]*")
        purposes = tuple(dict.fromkeys(raw_purposes))

    audio = data.get("audio")
    if not isinstance(audio, Mapping):
        raise _reject(RejectReason.SCHEMA, "audio: expected an object with uri, format, sha256")
    extra = sorted(set(audio) - {"uri", "format", "sha256"})
    if extra:
        raise _reject(RejectReason.SCHEMA, f"audio: unknown fields: {_names(extra)}")
    uri = _text(audio, "uri")
    if len(uri) > 1024 or "\x00" in uri:
        raise _reject(RejectReason.URI_INVALID, "audio.uri: too long or contains NUL")
    audio_format = _text(audio, "format").lower()
    if audio_format not in AUDIO_FORMATS:
        raise _reject(
            RejectReason.AUDIO_UNSUPPORTED,
            f"audio.format must be one of {sorted(AUDIO_FORMATS)}",
        )
    sha256 = _text(audio, "sha256").lower()
    if not _SHA256.match(sha256):
        raise _reject(RejectReason.INVALID_FIELD, "audio.sha256: expected 64 hex digits")

    duration_ms = int((ended_at - started_at) / timedelta(milliseconds=1))
    pauses: list[tuple[int, int]] = []
    raw_pauses = data.get("pci_pauses") or []
    if not isinstance(raw_pauses, list) or len(raw_pauses) > MAX_PCI_PAUSES:
        raise _reject(RejectReason.SCHEMA, f"pci_pauses: expected a list of <= {MAX_PCI_PAUSES}")
    for index, pause in enumerate(raw_pauses):
        if not isinstance(pause, Mapping) or set(pause) != {"start_ms", "end_ms"}:
            raise _reject(RejectReason.SCHEMA, f"pci_pauses[{index}]: expected start_ms, end_ms")
        start, end = pause["start_ms"], pause["end_ms"]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
            raise _reject(RejectReason.SCHEMA, f"pci_pauses[{index}]: integers expected")
        if not 0 <= start < end:
            raise _reject(
                RejectReason.PCI_OUT_OF_RANGE, f"pci_pauses[{index}]: need 0 <= start < end"
            )
        if start >= duration_ms + 1000:
            raise _reject(
                RejectReason.PCI_OUT_OF_RANGE, f"pci_pauses[{index}]: starts after the call ended"
            )
        pauses.append((start, end))

    return RecordingEvent(
        recording_id=_text(data, "recording_id", _ID),
        call_id=_text(data, "call_id", _ID),
        tenant=_text(data, "tenant", _TENANT),
        started_at=started_at,
        ended_at=ended_at,
        agent_id=_text(data, "agent_id", _ID),
        customer_ref=customer_ref,
        queue=_text(data, "queue", _ID),
        direction=_choice(data, "direction", DIRECTIONS),
        consent=consent_value,
        purposes=purposes,
        audio=AudioRef(uri=uri, format=audio_format, sha256=sha256),
        pci_pauses=tuple(pauses),
        raw=data,
    )
