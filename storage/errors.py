"""Errors raised by the storage layer (vaults, crypto, audio, landing, catalog).

Vendor errors (botocore, sqlite3, psycopg, cryptography) are translated at the
boundary (botocore in :mod:`storage._aws`) and chained with ``raise ... from exc``;
no caller ever sees them. The tree (part of the one drawn in :mod:`callvault.errors`)::

    StorageError
    ├── RecordingNotFound           no object / row for that key or id
    ├── IntegrityError              tampered, truncated or spliced object
    ├── BackendUnavailable          (also callvault.errors.Unavailable) worth retrying
    │   └── VaultUnavailable        the vault folder / bucket cannot be used now
    ├── CustomerRefNotCanonical     a customer reference not in canonical form (storage.customer)
    ├── KeyringError
    │   ├── KeyDestroyed            the subject key was shredded (erasure)
    │   └── KeyringUnavailable      key file or KMS unreachable (BackendUnavailable)
    ├── AudioError
    │   ├── UnsupportedAudioFormat
    │   ├── AudioMislabelled        the container is not the declared format
    │   └── AudioTooLong            decodes to more than its declared duration allows
    ├── LandingError                landing audio unreadable
    │   ├── LandingRejected         refused for good, with a ``reason`` code
    │   └── LandingStoreUnavailable the landing folder / bucket unreachable (BackendUnavailable)
    ├── CatalogError
    │   └── CatalogUnavailable      database unreachable, locked, full (BackendUnavailable)
    ├── AuditError
    │   └── CheckpointError         storage.checkpoints: the log no longer matches a checkpoint
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

from callvault.errors import CallvaultError, Unavailable

__all__ = [
    "StorageError",
    "BackendUnavailable",
    "VaultUnavailable",
    "KeyringUnavailable",
    "CatalogUnavailable",
    "LandingStoreUnavailable",
    "AudioTooLong",
    "AudioMislabelled",
    "RecordingNotFound",
    "IntegrityError",
    "CustomerRefNotCanonical",
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


class BackendUnavailable(StorageError, Unavailable):
    """A storage backend cannot be used right now (unreachable, locked, full, refused
    credentials): the same work may succeed later. ``backend`` names which."""

    backend = "storage"


class VaultUnavailable(BackendUnavailable):
    """The vault folder or bucket cannot be read or written right now."""

    backend = "vault"


class RecordingNotFound(StorageError):
    """No object / catalog row exists for the given key or recording id."""


class IntegrityError(StorageError):
    """A stored object failed authentication: tampered, truncated, reordered or spliced.

    Never serve bytes after this is raised.
    """


class KeyringError(StorageError):
    """A key could not be created, wrapped or unwrapped."""


class CustomerRefNotCanonical(StorageError):
    """A customer reference breaks the canonical form (:mod:`storage.customer`); ``reason``
    is ``customer-ref-not-canonical``. Never carries the reference itself."""

    reason = "customer-ref-not-canonical"


class KeyDestroyed(KeyringError):
    """The subject key was destroyed (crypto-shredding): the data is gone for good."""


class KeyringUnavailable(KeyringError, BackendUnavailable):
    """The key file cannot be read/locked, or KMS cannot be reached or refuses us."""

    backend = "keyring"


class AudioError(StorageError):
    """Audio could not be decoded or processed."""


class UnsupportedAudioFormat(AudioError):
    """The audio format is not supported (or needs ffmpeg, which is not installed)."""


class AudioMislabelled(AudioError):
    """The bytes are another container than the declared format (an MP3 sent as WAV)."""


class AudioTooLong(AudioError):
    """The audio decodes to more samples than its declared duration (with tolerance) or
    the absolute cap allow: a decompression bomb, or an event that lies about the call."""


class LandingError(StorageError):
    """Landing audio is missing, unreadable, too large or outside the landing roots."""


class LandingRejected(LandingError):
    """The landing URI or its audio is refused for good; ``reason`` is one of
    :data:`storage.landing.REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class LandingStoreUnavailable(LandingError, BackendUnavailable):
    """The landing folder or bucket cannot be used right now (I/O error, S3 down)."""

    backend = "landing"


class CatalogError(StorageError):
    """The catalog database failed or holds inconsistent data."""


class CatalogUnavailable(CatalogError, BackendUnavailable):
    """The catalog database is unreachable, locked, full or closed: retry later."""

    backend = "catalog"


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
