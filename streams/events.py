"""The ``RecordingCompleted`` event (schema ``callvault.recording.v1``) and its validation.

Events arrive as raw bytes so that a malformed message becomes a DLQ entry with a
reason instead of a decoding error inside faust. :func:`parse_recording_event`
either returns a :class:`RecordingEvent` or raises :class:`EventRejected` with a
stable reason code (see :class:`RejectReason`); it raises nothing else, whatever the
input. The ``detail`` of a rejection names the offending field, never its value when
that value may be personal data.

Audio layout (all optional; old events are unchanged): ``audio.sample_rate`` (Hz,
4000-192000) and ``audio.channels`` (1 or 2) are what a headerless format (``sln``,
``ulaw``, ``alaw``) is decoded with (8 kHz mono when absent); for a container format
they must agree with its header (``audio-mismatch`` at ingest otherwise).
``audio.channel_roles`` names what each channel carries (``["customer", "agent"]``:
Amazon Connect puts the customer left). ``audio.legs`` replaces ``uri``/``sha256`` for
systems that write one file per direction: exactly two ``{uri, sha256, role}``, each a
mono file of ``audio.format``, stored as one sample-aligned stereo recording whose
channel roles are the legs' roles, in order. ``pci_pauses[].channels`` lists the
channels a pause silences, as 0-based indexes or roles named in ``channel_roles``
(default: every channel).

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

from storage.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, SUPPORTED_FORMATS
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
    "AudioLeg",
    "AudioRef",
    "PciPause",
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
_ROLE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
#: What ``audio.channels`` may declare (and how many ``audio.legs`` make a recording).
EVENT_CHANNELS = (1, 2)
LEG_COUNT = 2
_AUDIO_KEYS = frozenset(
    {"uri", "format", "sha256", "sample_rate", "channels", "channel_roles", "legs"}
)

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
    AUDIO_MISMATCH = "audio-mismatch"  # declared rate/channels contradict the container
    AUDIO_TOO_LONG = "audio-too-long"  # decodes to more than the declared call allows
    PCI_OUT_OF_RANGE = "pci-out-of-range"
    CUSTOMER_REF_NOT_CANONICAL = NOT_CANONICAL  # storage.customer: NFC, no outer space
    INTERNAL_ERROR = "internal-error"  # an unexpected failure; detail: the exception type


@dataclass(frozen=True)
class AudioLeg:
    """One direction of a call in its own file (``audio.legs``)."""

    uri: str
    sha256: str
    role: str


@dataclass(frozen=True)
class AudioRef:
    """Where the audio is and what the event says about it.

    With ``legs``, ``uri`` and ``sha256`` are the first leg's (the file the sidecar and
    the landing claim of the recording are keyed by); :attr:`files` lists every file.
    """

    uri: str
    format: str
    sha256: str
    sample_rate: int | None = None
    channels: int | None = None
    channel_roles: tuple[str, ...] = ()
    legs: tuple[AudioLeg, ...] = ()

    @property
    def files(self) -> tuple[tuple[str, str], ...]:
        """``(uri, sha256)`` of every file of the recording, in channel order."""
        if self.legs:
            return tuple((leg.uri, leg.sha256) for leg in self.legs)
        return ((self.uri, self.sha256),)


@dataclass(frozen=True)
class PciPause:
    """A pause to silence: ``[start_ms, end_ms)`` on ``channels`` (None: every channel)."""

    start_ms: int
    end_ms: int
    channels: tuple[int, ...] | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"start_ms": self.start_ms, "end_ms": self.end_ms}
        if self.channels is not None:
            out["channels"] = list(self.channels)
        return out


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
    pci_pauses: tuple[PciPause, ...]
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
            # NUL in a URI was always uri-invalid
            bad_uri = exc.detail.startswith("audio.uri:") or (
                exc.detail.startswith("audio.legs[") and ".uri:" in exc.detail
            )
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

    audio_ref = _audio(data.get("audio"))
    duration_ms = int((ended_at - started_at) / timedelta(milliseconds=1))
    pauses = _pauses(data.get("pci_pauses"), duration_ms, audio_ref)

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
        audio=audio_ref,
        pci_pauses=pauses,
        raw=data,
    )


def _uri(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise _reject(RejectReason.SCHEMA, f"{name}: expected a non-empty string")
    if len(value) > 1024 or "\x00" in value:
        raise _reject(RejectReason.URI_INVALID, f"{name}: too long or contains NUL")
    return value


def _digest(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise _reject(RejectReason.SCHEMA, f"{name}: expected a non-empty string")
    digest = value.lower()
    if not _SHA256.match(digest):
        raise _reject(RejectReason.INVALID_FIELD, f"{name}: expected 64 hex digits")
    return digest


def _count(audio: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    value = audio.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise _reject(RejectReason.SCHEMA, f"audio.{name}: expected an integer")
    if not low <= value <= high:
        raise _reject(RejectReason.INVALID_FIELD, f"audio.{name}: must be {low}-{high}")
    return value


def _roles(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= max(EVENT_CHANNELS):
        raise _reject(RejectReason.SCHEMA, f"{name}: expected a list of 1-2 strings")
    if not all(isinstance(r, str) and _ROLE.match(r) for r in value):
        raise _reject(RejectReason.INVALID_FIELD, f"{name}: each must match {_ROLE.pattern}")
    if len(set(value)) != len(value):
        raise _reject(RejectReason.INVALID_FIELD, f"{name}: roles must differ")
    return tuple(value)


def _audio(audio: Any) -> AudioRef:
    """``audio``: one file (``uri``, ``sha256``) or ``legs``, and the declared layout."""
    if not isinstance(audio, Mapping):
        raise _reject(RejectReason.SCHEMA, "audio: expected an object with uri, format, sha256")
    extra = sorted(set(audio) - _AUDIO_KEYS)
    if extra:
        raise _reject(RejectReason.SCHEMA, f"audio: unknown fields: {_names(extra)}")
    audio_format = _text(audio, "format").lower()
    if audio_format not in AUDIO_FORMATS:
        raise _reject(
            RejectReason.AUDIO_UNSUPPORTED,
            f"audio.format must be one of {sorted(AUDIO_FORMATS)}",
        )
    sample_rate = _count(audio, "sample_rate", MIN_SAMPLE_RATE, MAX_SAMPLE_RATE)
    channels = _count(audio, "channels", min(EVENT_CHANNELS), max(EVENT_CHANNELS))
    roles = (
        ()
        if audio.get("channel_roles") is None
        else _roles(audio["channel_roles"], "audio.channel_roles")
    )
    legs: tuple[AudioLeg, ...] = ()
    if audio.get("legs") is not None:
        if "uri" in audio or "sha256" in audio:
            raise _reject(RejectReason.SCHEMA, "audio: give uri and sha256, or legs, not both")
        raw_legs = audio["legs"]
        if not isinstance(raw_legs, list) or len(raw_legs) != LEG_COUNT:
            raise _reject(RejectReason.SCHEMA, f"audio.legs: expected {LEG_COUNT} legs")
        parsed = []
        for index, leg in enumerate(raw_legs):
            name = f"audio.legs[{index}]"
            if not isinstance(leg, Mapping) or set(leg) != {"uri", "sha256", "role"}:
                raise _reject(RejectReason.SCHEMA, f"{name}: expected uri, sha256, role")
            role = leg["role"]
            if not isinstance(role, str) or not _ROLE.match(role):
                raise _reject(
                    RejectReason.INVALID_FIELD, f"{name}.role: must match {_ROLE.pattern}"
                )
            parsed.append(
                AudioLeg(
                    _uri(leg["uri"], f"{name}.uri"), _digest(leg["sha256"], f"{name}.sha256"), role
                )
            )
        legs = tuple(parsed)
        leg_roles = tuple(leg.role for leg in legs)
        if len(set(leg_roles)) != len(leg_roles):
            raise _reject(RejectReason.INVALID_FIELD, "audio.legs: roles must differ")
        if len({leg.uri for leg in legs}) != len(legs):
            raise _reject(RejectReason.INVALID_FIELD, "audio.legs: each leg is its own file")
        if roles and roles != leg_roles:
            raise _reject(
                RejectReason.INVALID_FIELD, "audio.channel_roles: must be the legs' roles"
            )
        if channels is not None and channels != len(legs):
            raise _reject(
                RejectReason.INVALID_FIELD, f"audio.channels: {len(legs)} legs make {len(legs)}"
            )
        roles, channels = leg_roles, len(legs)
        uri, sha256 = legs[0].uri, legs[0].sha256
    else:
        uri = _uri(audio.get("uri"), "audio.uri")
        sha256 = _digest(audio.get("sha256"), "audio.sha256")
    if roles and channels is not None and len(roles) != channels:
        raise _reject(
            RejectReason.INVALID_FIELD, "audio.channel_roles: one role per channel expected"
        )
    return AudioRef(
        uri=uri,
        format=audio_format,
        sha256=sha256,
        sample_rate=sample_rate,
        channels=channels,
        channel_roles=roles,
        legs=legs,
    )


def _pause_channels(value: Any, name: str, audio: AudioRef) -> tuple[int, ...]:
    """0-based channel indexes from indexes or roles; checked against what is declared."""
    if not isinstance(value, list) or not 1 <= len(value) <= max(EVENT_CHANNELS):
        raise _reject(RejectReason.SCHEMA, f"{name}: expected a list of channels")
    known = audio.channels or (len(audio.channel_roles) if audio.channel_roles else None)
    indexes: list[int] = []
    for channel in value:
        if isinstance(channel, str):
            if channel not in audio.channel_roles:
                raise _reject(
                    RejectReason.PCI_OUT_OF_RANGE, f"{name}: a role not in audio.channel_roles"
                )
            indexes.append(audio.channel_roles.index(channel))
        elif isinstance(channel, int) and not isinstance(channel, bool):
            limit = known if known is not None else max(EVENT_CHANNELS)
            if not 0 <= channel < limit:
                raise _reject(RejectReason.PCI_OUT_OF_RANGE, f"{name}: no channel {channel}")
            indexes.append(channel)
        else:
            raise _reject(RejectReason.SCHEMA, f"{name}: channel indexes or roles expected")
    return tuple(sorted(set(indexes)))


def _pauses(raw: Any, duration_ms: int, audio: AudioRef) -> tuple[PciPause, ...]:
    raw_pauses = raw or []
    if not isinstance(raw_pauses, list) or len(raw_pauses) > MAX_PCI_PAUSES:
        raise _reject(RejectReason.SCHEMA, f"pci_pauses: expected a list of <= {MAX_PCI_PAUSES}")
    pauses: list[PciPause] = []
    for index, pause in enumerate(raw_pauses):
        keys = set(pause) if isinstance(pause, Mapping) else set()
        if not isinstance(pause, Mapping) or not {"start_ms", "end_ms"} <= keys <= {
            "start_ms", "end_ms", "channels",
        }:  # fmt: skip
            raise _reject(
                RejectReason.SCHEMA, f"pci_pauses[{index}]: expected start_ms, end_ms[, channels]"
            )
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
        channels = None
        if pause.get("channels") is not None:
            channels = _pause_channels(pause["channels"], f"pci_pauses[{index}].channels", audio)
        pauses.append(PciPause(start, end, channels))
    return tuple(pauses)
