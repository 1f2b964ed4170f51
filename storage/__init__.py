"""storage: where bytes and facts live.

Vault backends (``file://`` folder, ``s3://`` through boto3), the envelope object
format and key hierarchy (master keyring -> subject key -> data key), audio
decoding and PCI redaction (pydub), the SQL catalog (SQLite, PostgreSQL) and the
hash-chained audit log. See storage/README.md. Never imports ``streams`` or
``policies``.
"""

from storage.audio import DecodedAudio, WavInfo, decode, encode_wav, silence, wav_info
from storage.catalog import (
    AuditDraft,
    AuditLog,
    AuditVerification,
    Catalog,
    DailyStat,
    open_catalog,
)
from storage.crypto import (
    Keyring,
    KeyService,
    KmsKeyring,
    LocalKeyring,
    SealedRecording,
    SubjectKeyStore,
    open_keyring,
)
from storage.errors import (
    AudioError,
    AuditError,
    CatalogError,
    IntegrityError,
    KeyDestroyed,
    KeyringError,
    LandingError,
    LandingRejected,
    RecordingNotFound,
    StorageError,
    UnsupportedAudioFormat,
)
from storage.landing import Landing, LandingRef, StaleLanding
from storage.types import AuditEntry, ObjectInfo, RecordingRow, RecordingState, SubjectKeyRecord
from storage.vault import LocalVault, S3Vault, Vault, make_s3_client, open_vault

__all__ = [
    "AuditDraft",
    "AuditEntry",
    "AuditError",
    "AuditLog",
    "AuditVerification",
    "AudioError",
    "Catalog",
    "CatalogError",
    "DailyStat",
    "DecodedAudio",
    "IntegrityError",
    "KeyDestroyed",
    "KeyService",
    "Keyring",
    "KeyringError",
    "KmsKeyring",
    "Landing",
    "LandingError",
    "LandingRef",
    "LandingRejected",
    "LocalKeyring",
    "LocalVault",
    "ObjectInfo",
    "RecordingNotFound",
    "RecordingRow",
    "RecordingState",
    "S3Vault",
    "SealedRecording",
    "StaleLanding",
    "StorageError",
    "SubjectKeyRecord",
    "SubjectKeyStore",
    "UnsupportedAudioFormat",
    "Vault",
    "WavInfo",
    "decode",
    "encode_wav",
    "make_s3_client",
    "open_catalog",
    "open_keyring",
    "open_vault",
    "silence",
    "wav_info",
]
