"""Errors raised by ``streams`` (part of the tree drawn in :mod:`callvault.errors`)::

    StreamError
    ├── EventRejected            a bad event; goes to callvault.dlq with ``reason``
    ├── PrivacyRequestRejected   a malformed privacy request (nothing stored)
    ├── ManifestError            an import manifest that cannot be used at all
    └── RequestError             an HTTP request refused before any decision
        ├── AuthError            token missing, malformed, forged, expired (401)
        ├── BadRequest           a malformed parameter or body (400)
        ├── RangeNotSatisfiable  a Range header selecting no byte (416)
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
    "PrivacyRequestRejected",
    "ManifestError",
    "RequestError",
    "AuthError",
    "BadRequest",
    "RangeNotSatisfiable",
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


class PrivacyRequestRejected(_Coded):
    """A privacy request is malformed; ``reason`` is a stable code."""


class ManifestError(StreamError):
    """The manifest cannot be used at all (unreadable, not CSV/JSON, columns missing)."""


class RequestError(StreamError):
    """An HTTP request refused before (or instead of) a decision."""


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
    """A malformed parameter: 400 with ``detail``."""

    def __init__(self, detail: str, reason: str = "bad-parameter") -> None:
        self.detail = detail
        self.reason = reason
        super().__init__(detail)


class RangeNotSatisfiable(RequestError, ValueError):
    """The range selects no byte of a ``size``-byte representation."""

    def __init__(self, size: int) -> None:
        self.size = size
        super().__init__(f"range not satisfiable for {size} bytes")


class AudioFailure(RequestError):
    """Reading or decrypting failed: answer ``status`` with ``error`` / ``reason``."""

    def __init__(self, status: int, error: str, reason: str, detail: str) -> None:
        self.status, self.error, self.reason, self.detail = status, error, reason, detail
        super().__init__(detail)

    @property
    def is_integrity(self) -> bool:
        return self.error == INTEGRITY_FAILURE
