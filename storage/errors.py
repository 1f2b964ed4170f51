"""Errors raised by the storage layer (vaults, crypto, audio, landing, catalog).

Vendor errors (botocore, sqlite3, psycopg, cryptography) are translated at the
boundary (botocore in :mod:`storage._aws`) and chained with ``raise ... from exc``;
no caller ever sees them. The tree (part of the one drawn in :mod:`callvault.errors`)::

    StorageError
    ├── RecordingNotFound           no object / row for that key or id
    ├── IntegrityError              tampered, truncated or spliced object
    ├── KeyringError
    │   └── KeyDestroyed            the subject key was shredded (erasure)
    ├── AudioError
    │   └── UnsupportedAudioFormat
    ├── LandingError                landing audio unreadable (worth retrying)
    │   └── LandingRejected         refused for good, with a ``reason`` code
    ├── CatalogError
    ├── AuditError
    ├── HoldError                   a malformed hold
    │   └── HoldNotFound
    ├── ReceiptError                a malformed deletion receipt
    │   └── ReceiptNotFound
    ├── PrivacyRequestError         a malformed or unstorable privacy request
    │   └── PrivacyRequestNotFound
    └── EvaluationError             a malformed assignment or evaluation, or a stale write
        └── AssignmentNotFound
"""

from __future__ import annotations

from callvault.errors import CallvaultError

__all__ = [
    "StorageError",
    "RecordingNotFound",
    "IntegrityError",
    "KeyringError",
    "KeyDestroyed",
    "AudioError",
    "UnsupportedAudioFormat",
    "LandingError",
    "LandingRejected",
    "CatalogError",
    "EvaluationError",
    "AssignmentNotFound",
    "AuditError",
    "HoldError",
    "HoldNotFound",
    "ReceiptError",
    "ReceiptNotFound",
    "PrivacyRequestError",
    "PrivacyRequestNotFound",
]


class StorageError(CallvaultError):
    """Base class of storage failures."""


class RecordingNotFound(StorageError):
    """No object / catalog row exists for the given key or recording id."""


class IntegrityError(StorageError):
    """A stored object failed authentication: tampered, truncated, reordered or spliced.

    Never serve bytes after this is raised.
    """


class KeyringError(StorageError):
    """A key could not be created, wrapped or unwrapped."""


class KeyDestroyed(KeyringError):
    """The subject key was destroyed (crypto-shredding): the data is gone for good."""


class AudioError(StorageError):
    """Audio could not be decoded or processed."""


class UnsupportedAudioFormat(AudioError):
    """The audio format is not supported (or needs ffmpeg, which is not installed)."""


class LandingError(StorageError):
    """Landing audio is missing, unreadable, too large or outside the landing roots."""


class LandingRejected(LandingError):
    """The landing URI or its audio is refused for good; ``reason`` is one of
    :data:`storage.landing.REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class CatalogError(StorageError):
    """The catalog database failed or holds inconsistent data."""


class AuditError(StorageError):
    """The audit log could not be written or read."""


class HoldError(StorageError):
    """A hold request is malformed (empty reason, unknown scope, ...)."""


class HoldNotFound(HoldError):
    """No hold with that id."""


class ReceiptError(StorageError):
    """A receipt is malformed (not JSON, missing fields)."""


class ReceiptNotFound(ReceiptError):
    """No receipt with that id (or for that recording)."""


class PrivacyRequestError(StorageError):
    """A privacy request is malformed or cannot be stored."""


class PrivacyRequestNotFound(PrivacyRequestError):
    """No privacy request with that id."""


class EvaluationError(StorageError):
    """A malformed evaluation assignment or evaluation, or a write based on a stale one.

    ``reason`` is a stable code: ``invalid-evaluation`` (bad arguments),
    ``assignment-closed`` (not open), ``stale`` (saved in between),
    ``recording-not-stored`` (expired or erased), or a sampling exclusion reason.
    """

    def __init__(self, detail: str, reason: str = "invalid-evaluation") -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class AssignmentNotFound(EvaluationError):
    """No evaluation assignment with that id."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, "no-assignment")
