"""Errors raised by the storage layer (vaults, envelope encryption, audio, catalog, audit).

Vendor errors (botocore, sqlite3, psycopg, cryptography) are translated here at the
boundary and chained with ``raise ... from exc``; no caller ever sees them.
"""

from __future__ import annotations

from callvault.errors import CallvaultError

__all__ = [
    "StorageError",
    "RecordingNotFound",
    "ObjectExists",
    "IntegrityError",
    "KeyringError",
    "KeyDestroyed",
    "AudioError",
    "UnsupportedAudioFormat",
    "LandingError",
    "CatalogError",
    "AuditError",
]


class StorageError(CallvaultError):
    """Base class of storage failures."""


class RecordingNotFound(StorageError):
    """No object / catalog row exists for the given key or recording id."""


class ObjectExists(StorageError):
    """A vault object already exists under the key (and ``overwrite`` was not asked)."""


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


class CatalogError(StorageError):
    """The catalog database failed or holds inconsistent data."""


class AuditError(StorageError):
    """The audit log could not be written or read."""
