"""What every telephony source adapter shares: reason codes, outcomes, call fields.

An adapter turns what a system already emits into a ``RecordingCompleted`` event
(:data:`streams.events.SCHEMA_V1`) and hands it to the core path, which validates it
again, dead-letters it, deduplicates it and owns its landing audio exactly as for an
event produced by telephony itself. What an adapter adds:

- :func:`call_fields`: the call's fields from whatever the source carries them in
  (S3 user metadata and tags, a sidecar JSON, CLI options, a CTR), in one flat,
  normalised mapping (``call-id``, ``x-amz-meta-call-id`` and ``call_id`` are the same);
- :func:`build_event`: those fields, the source's binding (tenant and defaults) and the
  audio it found into the event, refused with a :class:`SourceReason` when a field
  is missing or malformed, and checked with :func:`~streams.events.
  parse_recording_event` (the core path's own validation, its reason codes);
- :class:`SourceOutcome`: what became of one notification (``mapped``, ``refused``,
  ``skipped``), counted by :meth:`SourceOutcome.count` in the per-source metrics.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from storage.errors import LandingError
from storage.landing import Landing, LandingRef, LandingRejected
from streams.errors import EventRejected, SourceRefused
from streams.events import SCHEMA_V1, parse_recording_event
from streams.metrics import Metrics

__all__ = [
    "SourceReason",
    "SkipReason",
    "SourceOutcome",
    "CallDefaults",
    "call_fields",
    "build_event",
    "refuse",
    "slug",
    "REQUIRED_FIELDS",
    "Recent",
    "check_event",
    "FORMAT_BY_SUFFIX",
    "format_of",
    "read_sidecar",
]


class SourceReason(StrEnum):
    """Why a source refused a notification (stable codes: metrics, DLQ, HTTP ``reason``).

    Besides these, a refusal may carry any event :class:`~streams.events.RejectReason`
    (``invalid-field``, ``schema``...) or landing reason (``uri-outside-landing``...)."""

    MALFORMED = "malformed"  # not the source's notification shape
    UNKNOWN_SOURCE = "unknown-source"  # no binding for this bucket, account, instance, root
    TENANT_MISMATCH = "tenant-mismatch"  # the notification names another tenant
    MISSING_METADATA = "missing-metadata"  # a required call field is nowhere to be found
    INVALID_METADATA = "invalid-metadata"  # a call field that cannot be read
    SIGNATURE_MISSING = "signature-missing"  # Twilio: no X-Twilio-Signature
    SIGNATURE_INVALID = "signature-invalid"  # Twilio: the signature does not verify
    MEDIA_HOST = "media-host-not-allowed"  # Twilio: RecordingUrl on a host not allowed
    MEDIA_UNAVAILABLE = "media-unavailable"  # Twilio: media not fetched after retries
    MEDIA_TOO_LARGE = "media-too-large"  # Twilio: media over CALLVAULT_MAX_AUDIO_BYTES
    CONTACT_MISMATCH = "contact-mismatch"  # Connect: the recording is another contact's
    NOT_AUDIO = "not-audio"  # announce: a file with no audio format


class SkipReason(StrEnum):
    """Why a source passed a notification over without refusing it (nothing to do)."""

    DUPLICATE = "duplicate"  # already stored, or mapped moments ago (at-least-once)
    WAITING_METADATA = "waiting-for-metadata"  # audio without call fields yet: a sidecar
    # or tags may follow (audio left alone counts in callvault_landing_backlog)
    WAITING_RECORDING = "waiting-for-recording"  # Connect: CTR kept until the audio lands
    WAITING_CTR = "waiting-for-ctr"  # Connect: audio without its CTR yet
    GONE = "gone"  # the object is no longer there (already ingested, or deleted)
    NOT_CREATED = "not-object-created"  # deletes, directories, test events, other buckets
    NOT_AUDIO = "not-audio"  # an object with no audio format (and no sidecar for one)
    NOT_RECORDED = "not-recorded"  # Connect: a contact without a recording
    IN_PROGRESS = "in-progress"  # Twilio: a status other than completed


@dataclass(frozen=True)
class SourceOutcome:
    """What became of one notification. ``event`` is the mapped event (status
    ``mapped``), to be produced to ``callvault.recordings`` keyed by ``recording_id``."""

    source: str
    status: str  # mapped | refused | skipped
    reason: str = ""
    detail: str = ""
    recording_id: str | None = None
    event: dict[str, Any] | None = field(default=None, repr=False)
    #: ``(tenant, customer_ref)`` a refused notification names, as its mapping would
    #: derive them (a Connect CTR): its dead letter is sealed under that customer.
    customer: tuple[str, str] | None = field(default=None, repr=False)

    @classmethod
    def mapped(cls, source: str, event: dict[str, Any]) -> SourceOutcome:
        return cls(source, "mapped", recording_id=str(event["recording_id"]), event=event)

    @classmethod
    def refused(
        cls, source: str, exc: SourceRefused, recording_id: str | None = None
    ) -> SourceOutcome:
        return cls(source, "refused", exc.reason, exc.detail, recording_id)

    @classmethod
    def skipped(
        cls, source: str, reason: SkipReason, detail: str = "", recording_id: str | None = None
    ) -> SourceOutcome:
        return cls(source, "skipped", str(reason), detail, recording_id)

    @property
    def payload(self) -> bytes:
        """The mapped event as the bytes produced to ``callvault.recordings``."""
        assert self.event is not None
        return json.dumps(self.event, sort_keys=True).encode()

    def count(self, metrics: Metrics) -> None:
        """Count this outcome (``received`` is counted by the caller, once per message)."""
        if self.status == "mapped":
            metrics.source_mapped.labels(self.source).inc()
        elif self.status == "refused":
            metrics.source_refused.labels(self.source, self.reason).inc()
        else:
            metrics.source_skipped.labels(self.source, self.reason).inc()


#: An audio file's format by its name's suffix (what PBXs and platforms write).
FORMAT_BY_SUFFIX = {
    ".wav": "wav",
    ".wav49": "wav",
    ".mp3": "mp3",
    ".ogg": "ogg",
    ".opus": "opus",
    ".flac": "flac",
    ".gsm": "gsm",
    ".m4a": "m4a",
    ".webm": "webm",
    ".raw": "sln",
    ".sln": "sln",
    ".sln16": "sln16",
    ".ulaw": "ulaw",
    ".ul": "ulaw",
    ".mulaw": "ulaw",
    ".alaw": "alaw",
    ".al": "alaw",
}


def format_of(name: str) -> str | None:
    """The audio format a file name's suffix says (``.WAV`` is ``wav``), or None."""
    dot = name.rfind(".")
    return FORMAT_BY_SUFFIX.get(name[dot:].lower()) if dot > 0 else None


def refuse(reason: str, detail: str, *, status: int = 400) -> SourceRefused:
    return SourceRefused(str(reason), detail, status=status)


@dataclass(frozen=True)
class CallDefaults:
    """A source binding's tenant and the values used where a notification says nothing."""

    tenant: str
    queue: str | None = None
    direction: str = "inbound"
    consent: str = "notified"
    agent_id: str | None = None
    purposes: tuple[str, ...] | None = None


#: Fields every event needs that no default supplies.
REQUIRED_FIELDS = ("call_id", "customer_ref", "agent_id", "started_at", "ended_at")
_FIELD_NAMES = frozenset(
    {
        "recording_id",
        "call_id",
        "tenant",
        "started_at",
        "ended_at",
        "duration_ms",
        "duration_seconds",
        "agent_id",
        "customer_ref",
        "queue",
        "direction",
        "consent",
        "purposes",
        "pci_pauses",
        "format",
        "sample_rate",
        "channels",
        "channel_roles",
        "sha256",
    }
)
_AUDIO_FIELDS = ("format", "sample_rate", "channels", "channel_roles", "sha256")
_PAUSE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")
_SLUG = re.compile(r"[^A-Za-z0-9._:-]+")


def _name(key: str) -> str:
    name = key.strip().lower()
    for prefix in ("x-amz-meta-", "callvault-", "cv-"):
        name = name.removeprefix(prefix)
    return name.replace("-", "_")


def call_fields(*sources: Mapping[str, Any] | None) -> dict[str, Any]:
    """One flat mapping of the call fields the ``sources`` carry; later sources win.

    Keys are normalised (``X-Amz-Meta-Call-Id``, ``call-id``, ``callvault-call-id`` and
    ``call_id`` are all ``call_id``); unknown keys are dropped. A nested event (a full
    ``RecordingCompleted`` in a sidecar) is flattened: ``consent.recording`` becomes
    ``consent`` and ``audio.format`` etc. become ``format`` etc.
    """
    out: dict[str, Any] = {}
    for source in sources:
        if not source:
            continue
        for key, value in source.items():
            if not isinstance(key, str) or value is None or value == "":
                continue
            name = _name(key)
            if name == "consent" and isinstance(value, Mapping):
                value = value.get("recording")
            if name == "audio" and isinstance(value, Mapping):
                for audio_name in _AUDIO_FIELDS:
                    if value.get(audio_name) not in (None, ""):
                        out[audio_name] = value[audio_name]
                continue
            if name in _FIELD_NAMES and value is not None:
                out[name] = value
    return out


def slug(value: str) -> str:
    """An id-safe form of a name a system chose freely (``Billing Queue`` ->
    ``Billing-Queue``): every run of other characters becomes ``-``."""
    return _SLUG.sub("-", value.strip()).strip("-._:")[:128]


def _time(fields: Mapping[str, Any], name: str) -> datetime | None:
    raw = fields.get(name)
    if raw is None:
        return None
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return datetime.fromtimestamp(float(raw), UTC)
    text = str(raw).strip()
    try:
        if re.fullmatch(r"\d{9,11}(\.\d+)?", text):  # Unix seconds (${EPOCH}, ${start_epoch})
            return datetime.fromtimestamp(float(text), UTC)
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise refuse(SourceReason.INVALID_METADATA, f"{name}: not a time") from None
    if value.tzinfo is None:
        raise refuse(SourceReason.INVALID_METADATA, f"{name}: a time needs a UTC offset")
    return value.astimezone(UTC)


def _number(fields: Mapping[str, Any], name: str) -> int | None:
    raw = fields.get(name)
    if raw is None:
        return None
    try:
        value = float(raw) if not isinstance(raw, bool) else None
    except (TypeError, ValueError):
        value = None
    if value is None or value < 0 or value != value:
        raise refuse(SourceReason.INVALID_METADATA, f"{name}: not a non-negative number")
    return int(value)


def _listed(raw: Any, name: str) -> list[str]:
    if isinstance(raw, str):
        return [item.strip() for item in raw.split(",") if item.strip()]
    if isinstance(raw, list | tuple) and all(isinstance(item, str) for item in raw):
        return list(raw)
    raise refuse(SourceReason.INVALID_METADATA, f"{name}: a list or comma-separated text")


def _pauses(raw: Any) -> list[dict[str, Any]]:
    if isinstance(raw, list):
        return [dict(p) if isinstance(p, Mapping) else p for p in raw]
    if isinstance(raw, str):
        pauses = []
        for part in filter(None, (p.strip() for p in raw.split(";"))):
            match = _PAUSE.match(part)
            if match is None:
                raise refuse(SourceReason.INVALID_METADATA, "pci_pauses: like 500-1500;9000-12000")
            pauses.append({"start_ms": int(match.group(1)), "end_ms": int(match.group(2))})
        return pauses
    raise refuse(SourceReason.INVALID_METADATA, "pci_pauses: a list or 500-1500;9000-12000")


def build_event(
    fields: Mapping[str, Any],
    defaults: CallDefaults,
    audio: Mapping[str, Any],
    *,
    recording_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The ``RecordingCompleted`` event for ``fields`` (from :func:`call_fields`).

    ``audio`` is the event's ``audio`` object as far as the source knows it (``uri``
    or ``legs``, ``sha256``, and what it knows of the layout); the fields' ``format``,
    ``sample_rate``, ``channels`` and ``channel_roles`` fill what it leaves out.
    ``recording_id`` is the source's own id, used when the fields name none. The
    tenant is the binding's: a notification naming another is refused. ``ended_at``
    may come as ``started_at`` plus ``duration_ms`` / ``duration_seconds``.

    Raises:
        SourceRefused: ``tenant-mismatch``, ``missing-metadata`` (``detail`` names the
            fields), ``invalid-metadata``, or the event's own reason code from
            :func:`~streams.events.parse_recording_event` (``invalid-field``...).
    """
    claimed = fields.get("tenant")
    if claimed is not None and str(claimed) != defaults.tenant:
        raise refuse(
            SourceReason.TENANT_MISMATCH,
            "the notification names a tenant its source is not bound to",
            status=403,
        )
    started = _time(fields, "started_at")
    ended = _time(fields, "ended_at")
    if ended is None and started is not None:
        duration_ms = _number(fields, "duration_ms")
        if duration_ms is None and (seconds := _number(fields, "duration_seconds")) is not None:
            duration_ms = seconds * 1000
        if duration_ms is not None:
            ended = started + timedelta(milliseconds=duration_ms)
    values: dict[str, Any] = {
        "recording_id": fields.get("recording_id") or recording_id,
        "call_id": fields.get("call_id") or fields.get("recording_id") or recording_id,
        "customer_ref": fields.get("customer_ref"),
        "agent_id": fields.get("agent_id") or defaults.agent_id,
        "started_at": started,
        "ended_at": ended,
    }
    missing = [name for name in ("recording_id", *REQUIRED_FIELDS) if values.get(name) is None]
    if missing:
        raise refuse(SourceReason.MISSING_METADATA, f"missing: {', '.join(missing)}")
    queue = fields.get("queue") or defaults.queue
    if queue is None:
        raise refuse(SourceReason.MISSING_METADATA, "missing: queue")
    event: dict[str, Any] = {
        "schema": SCHEMA_V1,
        "recording_id": str(values["recording_id"]),
        "call_id": str(values["call_id"]),
        "tenant": defaults.tenant,
        "started_at": values["started_at"].isoformat().replace("+00:00", "Z"),
        "ended_at": values["ended_at"].isoformat().replace("+00:00", "Z"),
        "agent_id": str(values["agent_id"]),
        "customer_ref": str(values["customer_ref"]),
        "queue": str(queue),
        "direction": str(fields.get("direction") or defaults.direction).lower(),
        "consent": {"recording": str(fields.get("consent") or defaults.consent).lower()},
    }
    purposes = fields.get("purposes")
    if purposes is not None:
        event["purposes"] = _listed(purposes, "purposes")
    elif defaults.purposes:
        event["purposes"] = list(defaults.purposes)
    if fields.get("pci_pauses") is not None:
        event["pci_pauses"] = _pauses(fields["pci_pauses"])
    layout: dict[str, Any] = {}
    for name in ("sample_rate", "channels"):
        if (number := _number(fields, name)) is not None:
            layout[name] = number
    if fields.get("channel_roles") is not None:
        layout["channel_roles"] = _listed(fields["channel_roles"], "channel_roles")
    if fields.get("format") is not None:
        layout["format"] = str(fields["format"]).lower()
    if fields.get("sha256") is not None:
        layout["sha256"] = str(fields["sha256"]).lower()
    event["audio"] = {**layout, **{k: v for k, v in audio.items() if v is not None}}
    check_event(event, now=now)
    return event


def check_event(event: Mapping[str, Any], *, now: datetime | None = None) -> None:
    """The core path's validation of ``event``.

    Raises:
        SourceRefused: with the event's reason code (``schema``, ``invalid-field``...).
    """
    try:
        parse_recording_event(dict(event), now=now)
    except EventRejected as exc:
        raise refuse(exc.reason, exc.detail) from None


class Recent:
    """Recording ids this adapter mapped moments ago (bounded, oldest forgotten first):
    a redelivered notification, or the echo of the sidecar an adapter wrote itself, is
    a duplicate without reading the audio again. After a restart the catalog and the
    core path's idempotency key take over."""

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._ids: dict[str, None] = {}

    def __contains__(self, recording_id: object) -> bool:
        return recording_id in self._ids

    def add(self, recording_id: str) -> None:
        self._ids.pop(recording_id, None)
        self._ids[recording_id] = None
        while len(self._ids) > self._size:
            del self._ids[next(iter(self._ids))]


def read_sidecar(landing: Landing, ref: LandingRef) -> dict[str, Any] | None:
    """The JSON object beside landing audio (None: there is none).

    Raises:
        SourceRefused: ``invalid-metadata``: the sidecar is there but not a JSON object.
        LandingError: it could not be read (worth retrying).
    """
    try:
        return landing.read_sidecar(ref)
    except LandingRejected:
        raise
    except LandingError as exc:
        if isinstance(exc.__cause__, ValueError | LandingRejected) or "JSON object" in str(exc):
            raise refuse(
                SourceReason.INVALID_METADATA, "the sidecar is not a JSON object"
            ) from None
        raise
