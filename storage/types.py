"""Value types shared by the storage modules (catalog, keys, audit, vaults).

They carry no behaviour beyond validation-free construction; every datetime is
timezone-aware UTC. None of them holds a raw customer identifier: customers appear
only as ``subject_ref``, a keyed hash made by the keyring (``Keyring.pseudonymize``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = [
    "RecordingState",
    "RecordingRow",
    "SubjectKeyRecord",
    "AuditEntry",
    "ObjectInfo",
    "StoredObject",
]


class RecordingState(StrEnum):
    """Life cycle of a stored recording (catalog column ``state``)."""

    STORED = "stored"  # in the vault, usable within its purposes
    EXPIRED = "expired"  # deleted by retention; catalog row kept without the object
    ERASED = "erased"  # deleted on the customer's request; row is a tombstone


@dataclass(frozen=True)
class RecordingRow:
    """One recording in the catalog."""

    recording_id: str
    call_id: str
    tenant: str
    subject_ref: str  # pseudonymized customer reference (keyed hash), never the raw value
    agent_id: str
    queue: str
    direction: str  # "inbound" | "outbound" | "internal"
    started_at: datetime
    ended_at: datetime
    duration_ms: int
    consent: str  # "notified" | "granted" (declined recordings are never stored)
    purposes: tuple[str, ...]
    retention_class: str
    retain_until: datetime
    object_key: str  # no personal data: derived from a keyed hash of recording_id
    subject_key_id: str
    ciphertext_sha256: str
    stored_size: int  # bytes of the encrypted object
    audio_bytes: int  # bytes of the plaintext WAV inside it
    audio_format: str  # e.g. "wav/mulaw", "wav/pcm_s16le"
    sample_rate: int
    channels: int
    pci_redacted_ms: int
    created_at: datetime
    state: RecordingState = RecordingState.STORED
    restricted: bool = False
    updated_at: datetime | None = None
    # the vault's version id of the object as written (S3 with versioning; else None)
    object_version: str | None = None


@dataclass(frozen=True)
class SubjectKeyRecord:
    """A per-customer (data subject) key, wrapped by the master keyring.

    ``wrapped_key`` is ``None`` once the key was destroyed (crypto-shredding).
    """

    key_id: str
    subject_ref: str
    tenant: str
    wrapped_key: bytes | None
    master_key_id: str
    created_at: datetime
    destroyed_at: datetime | None = None


@dataclass(frozen=True)
class AuditEntry:
    """One record of the hash-chained audit log.

    ``hash`` = sha256 over ``prev_hash`` and the canonical JSON of every other field;
    ``details`` must never hold personal data (pseudonyms and codes only).
    ``tenant`` is whose auditors see the record (``None``: the policy's default tenant);
    ``hash_form`` says what the hash covers: 1 (records written before migration 14)
    leaves ``tenant`` out, 2 covers it (see :func:`storage.catalog.audit.entry_hash`).
    """

    seq: int
    at: datetime
    actor: str  # "worker:<id>", "user:<id>", "system:retention", ...
    action: str  # e.g. "ingest.stored", "ingest.declined", "access.granted"
    outcome: str  # "ok" | "granted" | "denied" | "failed" | ...
    reason: str  # machine-readable reason code ("" when none)
    recording_id: str | None
    details: dict[str, Any] = field(default_factory=dict)
    prev_hash: str = ""
    hash: str = ""
    tenant: str | None = None
    hash_form: int = 1


@dataclass(frozen=True)
class ObjectInfo:
    """What a vault knows about one stored object."""

    key: str
    size: int
    tags: dict[str, str] = field(default_factory=dict)
    version_id: str | None = None


@dataclass(frozen=True)
class StoredObject:
    """One key a vault listing found with data under it (``Vault.iter_objects``).

    ``version_ids`` are the ids of the key's data versions, newest first (empty where
    the backend keeps no versions); ``modified_at`` is when the newest was written.
    """

    key: str
    size: int
    modified_at: datetime
    version_ids: tuple[str, ...] = ()
