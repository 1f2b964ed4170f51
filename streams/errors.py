"""Errors raised by ``streams`` (part of the tree drawn in :mod:`callvault.errors`)::

    StreamError
    ├── EventRejected            a bad event; goes to callvault.dlq with ``reason``
    ├── InputRejected            input outside its bounds (streams.bounds); callers
    │                            answer with their own error and its ``reason``
    ├── PrivacyRequestRejected   a malformed privacy request (nothing stored)
    ├── ManifestError            an import manifest that cannot be used at all
    ├── SourceRefused            a telephony source's notification that cannot be mapped
    └── RequestError             an HTTP request refused (streams.http.errors answers it)
        ├── AuthError            token missing, malformed, forged, expired (401)
        ├── BadRequest           a malformed parameter or body (400)
        ├── PayloadTooLarge      a body or part over its size limit (413)
        ├── UnsupportedMediaType a body of a content type the route does not take (415)
        ├── NotFound             what a path or body names does not exist (404)
        ├── RangeNotSatisfiable  a Range header selecting no byte (416)
        ├── AccessDenied         a decision refused it, already audited (403/404/410/429)
        ├── AuditUnavailable     the decision could not be audited, so nothing goes out (503)
        ├── LandingUnavailable   ingest audio could not be landed (503)
        ├── Unprocessable        pushed audio is undecodable or mislabelled (422)
        └── AudioFailure         stored audio unreadable: tampered, shredded, vault down

Every one carries a stable, machine-readable ``reason`` (the code the audit record
and the HTTP error body carry) and a ``detail`` for humans that never holds
personal data.
"""

from __future__ import annotations

from callvault.errors import CallvaultError

__all__ = [
    "StreamError",
    "EventRejected",
    "InputRejected",
    "PrivacyRequestRejected",
    "ManifestError",
    "SourceRefused",
    "RequestError",
    "AuthError",
    "BadRequest",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "NotFound",
    "RangeNotSatisfiable",
    "AccessDenied",
    "AuditUnavailable",
    "LandingUnavailable",
    "Unprocessable",
    "AudioFailure",
    "INTEGRITY_FAILURE",
]

INTEGRITY_FAILURE = "integrity-failure"


class StreamError(CallvaultError):
    """Base class of stream-processing errors."""


class _Coded(StreamError):
    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class EventRejected(_Coded):
    """An event cannot be processed; it goes to ``callvault.dlq`` with ``reason``.

    ``reason`` is a stable, machine-readable code (e.g. ``schema``, ``landing-missing``,
    ``sha256-mismatch``); ``detail`` is for humans and never carries personal data.
    """


class InputRejected(_Coded):
    """Input outside its bounds (:mod:`streams.bounds`): too large, too deep, not JSON,
    or text with lone surrogates, NUL or control characters. ``reason`` is
    ``too-large``, ``malformed`` or ``bad-text``; ``detail`` names where, never the value.
    """


class PrivacyRequestRejected(_Coded):
    """A privacy request is malformed; ``reason`` is a stable code."""


class ManifestError(StreamError):
    """The manifest cannot be used at all (unreadable, not CSV/JSON, columns missing)."""


class SourceRefused(_Coded):
    """A telephony source's notification (S3 event, Twilio callback, CTR, PBX hook) that
    cannot become a ``RecordingCompleted`` event; ``reason`` is a stable code
    (:class:`streams.sources.SourceReason` or an event :class:`RejectReason`), nothing
    the notification names is deleted, and ``status`` is the HTTP status a source
    route answers it with."""

    def __init__(self, reason: str, detail: str, *, status: int = 400) -> None:
        super().__init__(reason, detail)
        self.status = status


class RequestError(StreamError):
    """An HTTP request refused; :mod:`streams.http.errors` turns each into its answer."""


class AuthError(RequestError):
    """A token is missing, malformed, forged, expired or for another audience.

    ``reason`` is a stable code (``token-missing``, ``token-malformed``,
    ``token-signature``, ``token-expired``, ``token-audience``, ``token-role``).
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class BadRequest(RequestError):
    """A malformed parameter or body: 400 with ``detail`` (and ``reason`` unless None)."""

    def __init__(self, detail: str, reason: str | None = "bad-parameter") -> None:
        self.detail = detail
        self.reason = reason
        super().__init__(detail)


class PayloadTooLarge(RequestError):
    """A body (or one part of it) is larger than the route takes: 413 with ``detail``."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class UnsupportedMediaType(RequestError):
    """The body's content type is not one the route takes: 415 with ``detail``."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class NotFound(RequestError):
    """What the path or body names does not exist: 404 with ``detail`` (and ``reason``
    unless None)."""

    def __init__(self, detail: str, reason: str | None = "not-found") -> None:
        self.detail = detail
        self.reason = reason
        super().__init__(detail)


class RangeNotSatisfiable(RequestError, ValueError):
    """The range selects no byte of a ``size``-byte representation."""

    def __init__(self, size: int) -> None:
        self.size = size
        super().__init__(f"range not satisfiable for {size} bytes")


class AccessDenied(RequestError):
    """A decision refused the request; its audit record is already committed.

    ``reason`` is the decision's reason code; ``detail`` None means the standard text
    for that reason; ``retry_after`` (seconds) is set for ``rate-limited``. A
    ``tenant-mismatch`` without a detail (something of another tenant) is answered as
    404 ``no-recording``, like something that does not exist.
    """

    def __init__(
        self, reason: str, detail: str | None = None, *, retry_after: int | None = None
    ) -> None:
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after
        super().__init__(f"denied: {reason}")


class AuditUnavailable(RequestError):
    """The audit log cannot be written, so the decision does not go out: 503."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class LandingUnavailable(RequestError):
    """Pushed audio could not be landed for ingest (storage failure): 503."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class Unprocessable(RequestError):
    """Well-formed request, unusable content (pushed audio that does not decode or is
    not the declared format): 422 with ``reason`` and ``detail``."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class AudioFailure(RequestError):
    """Reading or decrypting failed: answer ``status`` with ``error`` / ``reason``."""

    def __init__(self, status: int, error: str, reason: str, detail: str) -> None:
        self.status, self.error, self.reason, self.detail = status, error, reason, detail
        super().__init__(detail)

    @property
    def is_integrity(self) -> bool:
        return self.error == INTEGRITY_FAILURE
