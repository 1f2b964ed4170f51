"""What became of one ingest event (:class:`IngestOutcome`), the event as an operator
may see it (:func:`redacted_event`), and the translations of audio, landing and
unexpected failures into the rejections (reason codes) an event is dead-lettered with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from storage.errors import (
    AudioError,
    AudioMismatch,
    AudioTooLong,
    BackendUnavailable,
    LandingError,
    UnsupportedAudioFormat,
)
from storage.landing import LandingRejected
from streams.errors import EventRejected
from streams.events import RECORDING_ID, TENANT, RejectReason


@dataclass(frozen=True)
class IngestOutcome:
    """What became of one event. ``status``: stored | duplicate | declined | dlq."""

    status: str
    recording_id: str | None = None
    reason: str = ""
    detail: str = ""
    object_key: str | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    payload: bytes | None = field(default=None, repr=False)  # original event, for the DLQ
    tenant: str | None = None  # the event's tenant, when it is a well-formed one


def payload_bytes(payload: bytes | str | dict[str, Any]) -> bytes | None:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogatepass")
    try:
        return json.dumps(payload).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError):
        return None


def audio_rejection(exc: AudioError) -> EventRejected:
    """The reason code of an audio failure."""
    if isinstance(exc, UnsupportedAudioFormat):
        return EventRejected(str(RejectReason.AUDIO_UNSUPPORTED), str(exc))
    if isinstance(exc, AudioTooLong):
        return EventRejected(str(RejectReason.AUDIO_TOO_LONG), str(exc))
    if isinstance(exc, AudioMismatch):
        return EventRejected(str(RejectReason.AUDIO_MISMATCH), str(exc))
    return EventRejected(str(RejectReason.AUDIO_UNDECODABLE), str(exc))


def sha256_mismatch() -> EventRejected:
    return EventRejected(
        str(RejectReason.SHA256_MISMATCH), "landing audio does not match audio.sha256"
    )


#: What a DLQ entry / log line says about a landing problem. Never the URI itself:
#: PBXs often name files after the caller's number.
_LANDING_DETAIL = {
    "uri-invalid": "audio.uri is not a valid file:// or s3:// URI",
    "uri-outside-landing": "audio.uri lies outside CALLVAULT_LANDING_ROOTS",
    "landing-missing": "the landing audio does not exist (any more)",
    "landing-too-large": "the landing audio is larger than CALLVAULT_MAX_AUDIO_BYTES",
    "landing-not-regular": "the landing audio is a FIFO, socket or device, not a file",
    "landing-unsafe": "the landing file has several hard links or was replaced while read",
    "landing-unreadable": "the landing audio cannot be read (permissions or S3 refusal)",
    "landing-claimed": "the landing audio belongs to another recording id",
}


def work_unavailable(exc: OSError) -> BackendUnavailable:
    """A write to the ingest work folder failed (disk full, folder gone): retried."""
    return BackendUnavailable(f"the ingest work folder cannot be written: {exc.strerror or exc}")


def landing_rejection(exc: LandingError) -> EventRejected:
    reason = exc.reason if isinstance(exc, LandingRejected) else "landing-unreadable"
    return EventRejected(reason, _LANDING_DETAIL.get(reason, "landing audio rejected"))


def claimed() -> EventRejected:
    return EventRejected(str(RejectReason.LANDING_CLAIMED), _LANDING_DETAIL["landing-claimed"])


def internal(exc: BaseException) -> EventRejected:
    """An unexpected failure, pinned on one event: the exception type, never its message
    (which may quote a value)."""
    return EventRejected(str(RejectReason.INTERNAL_ERROR), type(exc).__name__)


#: Fields a redacted event shows as a marker: personal data (customer reference), and
#: what names or proves the landing audio (URI, sha256), which another sender could
#: use to claim it.
REDACTED = "[redacted]"


def redacted_event(payload: bytes | None) -> dict[str, Any] | None:
    """The event as an operator may see it (``callvault dlq show``): ``customer_ref``,
    ``audio.uri`` and ``audio.sha256`` replaced by markers. ``None`` when the payload is
    not a JSON object: then only its source offset identifies it."""
    if not payload:
        return None
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    if "customer_ref" in data:
        data["customer_ref"] = REDACTED
    audio = data.get("audio")
    if isinstance(audio, dict):
        for name in ("uri", "sha256"):
            if name in audio:
                audio[name] = REDACTED
    return data


def loose_fields(payload: bytes | str | dict[str, Any]) -> tuple[str | None, str | None]:
    """The recording id and tenant of a rejected event, each if well-formed (audit, DLQ)."""
    data: Any = payload
    if not isinstance(payload, dict):
        if len(payload) > 1 << 20:
            return None, None
        try:
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None, None
    if not isinstance(data, dict):
        return None, None
    rid, tenant = data.get("recording_id"), data.get("tenant")
    return (
        rid if isinstance(rid, str) and RECORDING_ID.match(rid) else None,
        tenant if isinstance(tenant, str) and TENANT.match(tenant) else None,
    )
