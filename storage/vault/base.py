"""The vault contract: what every backend implements, and the checks they share.

A :class:`Vault` is a flat key -> bytes store with a few string tags per object
(the purposes a recording may be used for, its retention class). Backends live
beside this module and are found by URL scheme through the registry in
:mod:`storage.vault` (``file://`` -> :class:`storage.vault.local.LocalVault`,
``s3://`` -> :class:`storage.vault.s3.S3Vault`); this module never imports them.
They all pass the same contract tests (``tests/storage/test_vault_contract.py``).

What a caller may rely on, whatever the backend:

- ``put`` is atomic: a reader sees the old object, the new one, or nothing, never a
  partial object. Overwriting a key is allowed (ingest is idempotent by recording id).
  ``put`` takes bytes or an iterable of byte pieces (written as they come, in constant
  memory: a temp file renamed into place; an S3 multipart upload above
  ``MULTIPART_THRESHOLD``); an iterable that raises leaves nothing behind and the
  previous object (if any) in place.
- An object is never visible without its tags.
- ``delete`` removes every version (on a versioned bucket, old versions and delete
  markers too); deleting a missing key is not an error. ``delete_many`` takes the
  version ids the catalog kept (``versions=``) and deletes those by id, finding any
  other version with a listing per prefix, never one request per key.
- ``put`` says which version it wrote (``ObjectInfo.version_id``, ``None`` where the
  backend keeps no versions); ``put_tags`` can address that version.
- ``iter_objects`` lists what is stored, with sizes, times and version ids (for
  ``callvault vault check``).
- Legal holds are a capability: ``object_lock_enabled()`` says whether the backend
  enforces them (S3 with Object Lock); only then may ``set_legal_holds`` be called.
- Keys match ``[A-Za-z0-9._/-]{1,512}``: no leading ``/``, no empty segment, no
  segment longer than 200 characters (filesystem name limits), no segment that
  starts with ``.`` (so no ``.``/``..`` traversal; such names are
  reserved for the backends' bookkeeping). A bad key raises :class:`StorageError`.
- Tags follow S3's rules (at most 10; key 1-128 and value 0-256 characters of
  letters, digits, spaces and ``+ - = . _ : / @``; no ``aws:`` keys).
- A missing key raises :class:`RecordingNotFound`; every other failure raises
  :class:`StorageError` (vendor errors are chained as ``__cause__``, never raised).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Protocol, runtime_checkable

from storage.errors import StorageError
from storage.types import ObjectInfo, StoredObject

__all__ = [
    "Vault",
    "HashedPieces",
    "validate_key",
    "validate_prefix",
    "validate_tags",
    "check_range",
    "object_sha256",
    "HASH_WINDOW",
    "MAX_KEY_LENGTH",
    "MAX_KEY_SEGMENT_LENGTH",
    "MAX_TAGS",
]

MAX_KEY_LENGTH = 512
MAX_KEY_SEGMENT_LENGTH = 200  # leaves room under NAME_MAX (255) for ".json" and temp names
MAX_TAGS = 10
MAX_TAG_KEY_LENGTH = 128
MAX_TAG_VALUE_LENGTH = 256

_KEY_CHARS = re.compile(r"[A-Za-z0-9._/-]*")
# S3 tag charset: Unicode letters, digits, whitespace and + - = . _ : / @
_TAG_CHARS = re.compile(r"[\w\s+\-=.:/@]*")


@runtime_checkable
class HashedPieces(Protocol):
    """Pieces for :meth:`Vault.put` that hash themselves as they are iterated
    (``storage.crypto.keys.SealingStream``): once iterated, ``sha256`` (hex) is the
    digest of every piece given. A backend that must hash the body (S3 signs it) uses
    that digest instead of hashing the same bytes again."""

    @property
    def sha256(self) -> str: ...

    def __iter__(self) -> Iterator[bytes]: ...


@runtime_checkable
class Vault(Protocol):
    """A store of immutable-by-convention objects with tags (see the module docstring)."""

    url: str
    #: Whether a put waits on the network (S3: round trips, worth overlapping in
    #: threads) rather than only on the CPU and the local disk (a folder: its hashing,
    #: sealing and writing hold the GIL, so threads add contention, not speed).
    puts_wait_on_network: bool

    def put(
        self,
        key: str,
        data: bytes | Iterable[bytes],
        *,
        tags: Mapping[str, str],
        durable: bool = True,
    ) -> ObjectInfo:
        """Store ``data`` under ``key`` with exactly ``tags``, atomically; overwrite allowed.

        ``data`` may be an iterable of pieces (a sealed recording being produced): it is
        consumed once, and whatever it raises propagates after the partial write was
        discarded. Pieces that are :class:`HashedPieces` lend their digest to a backend
        that needs one (S3's signed payload).

        With ``durable=False`` the object is visible at once but may only survive a
        crash after the next :meth:`flush` (group commit: ingest writes a batch of
        objects, flushes once, then commits the catalog).

        Raises:
            StorageError: bad key or tags, or the backend failed.
        """
        ...

    def flush(self) -> None:
        """Make every object put so far durable (a no-op where puts are durable anyway).

        Raises:
            StorageError: the backend failed.
        """
        ...

    def get(self, key: str) -> bytes:
        """Return the whole object.

        Raises:
            RecordingNotFound: no object under ``key``.
            StorageError: bad key, or the backend failed.
        """
        ...

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Return bytes ``start..end`` inclusive (like HTTP ``Range``); ``end`` past the
        last byte is clipped.

        Raises:
            RecordingNotFound: no object under ``key``.
            StorageError: bad key, ``start < 0``, ``end < start``, ``start`` at or past the
                end of the object (not satisfiable), or the backend failed.
        """
        ...

    def head(self, key: str) -> ObjectInfo:
        """Return size and tags without reading the object.

        Raises:
            RecordingNotFound: no object under ``key``.
            StorageError: bad key, or the backend failed.
        """
        ...

    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``.

        Raises:
            StorageError: bad key, or the backend failed (a missing bucket is a failure,
                not ``False``).
        """
        ...

    def delete(self, key: str) -> None:
        """Remove the object and every version of it; a missing key is not an error.

        Raises:
            StorageError: bad key, or the backend failed.
        """
        ...

    def delete_many(
        self, keys: Sequence[str], *, versions: Mapping[str, str | None] | None = None
    ) -> list[str]:
        """Delete every key (all versions); return the keys that could not be deleted.

        ``versions`` maps keys to the version id they were written with (the catalog's):
        those versions are deleted by id even if a listing does not show them yet.

        Raises:
            StorageError: a bad key (nothing is deleted then), or the whole operation
                failed (e.g. the bucket is missing).
        """
        ...

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        """Yield every stored key that starts with ``prefix`` (in no promised order).

        Raises:
            StorageError: bad prefix, or the backend failed.
        """
        ...

    def put_tags(self, key: str, tags: Mapping[str, str], *, version_id: str | None = None) -> None:
        """Replace the tags of an existing object (of its version ``version_id``, where
        the backend keeps versions; default: the current one).

        Raises:
            RecordingNotFound: no object (or version) under ``key``.
            StorageError: bad key or tags, or the backend failed.
        """
        ...

    def update_tags(
        self, key: str, tags: Mapping[str, str], *, version_id: str | None = None
    ) -> dict[str, str]:
        """Set ``tags`` on an existing object (its version ``version_id`` where the backend
        keeps versions), keeping its other tags; returns the tags it has now.

        Raises:
            RecordingNotFound: no object (or version) under ``key``.
            StorageError: bad key or tags (also: more than 10 after the merge), or the
                backend failed.
        """
        ...

    def iter_objects(self, prefix: str = "") -> Iterator[StoredObject]:
        """Yield every stored key that starts with ``prefix`` with its size, the time
        its newest data was written and its version ids (in no promised order).

        Raises:
            StorageError: bad prefix, or the backend failed.
        """
        ...

    def object_lock_enabled(self) -> bool:
        """Whether this backend enforces legal holds (an S3 bucket with Object Lock).

        Raises:
            StorageError: the backend failed.
        """
        ...

    def set_legal_holds(
        self, keys: Sequence[str], *, on: bool, versions: Mapping[str, str | None] | None = None
    ) -> list[str]:
        """Set (``on``) or clear the legal hold of every version of each key; return
        the keys the backend refused. Only where :meth:`object_lock_enabled`.

        Raises:
            StorageError: the backend has no legal holds, a bad key, or it failed.
        """
        ...


def check_data(data: object) -> None:
    """Raise :class:`StorageError` unless ``data`` is bytes-like or an iterable of pieces
    (not text)."""
    if isinstance(data, bytes | bytearray | memoryview):
        return
    if isinstance(data, str) or not hasattr(data, "__iter__"):
        raise StorageError(f"vault data must be bytes or byte pieces, not {type(data).__name__}")


def validate_key(key: object) -> str:
    """Return ``key`` if it is a valid vault key (see the module docstring).

    Raises:
        StorageError: naming what is wrong with the key.
    """
    if not isinstance(key, str):
        raise StorageError(f"vault key must be a str, not {type(key).__name__}")
    if not key:
        raise StorageError("vault key must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise StorageError(
            f"vault key is {len(key)} characters long; the limit is {MAX_KEY_LENGTH}"
        )
    if not _KEY_CHARS.fullmatch(key):
        bad = sorted({c for c in key if not _KEY_CHARS.fullmatch(c)})
        raise StorageError(
            f"vault key {key!r} has characters outside [A-Za-z0-9._/-]: {''.join(bad)!r}"
        )
    if key.startswith("/"):
        raise StorageError(f"vault key {key!r} must not start with '/'")
    for segment in key.split("/"):
        if not segment:
            raise StorageError(
                f"vault key {key!r} has an empty path segment ('//' or trailing '/')"
            )
        if segment in (".", ".."):
            raise StorageError(f"vault key {key!r} contains a '{segment}' segment")
        if len(segment) > MAX_KEY_SEGMENT_LENGTH:
            raise StorageError(
                f"vault key segment {segment[:20]!r}... is {len(segment)} characters long; "
                f"the limit is {MAX_KEY_SEGMENT_LENGTH}"
            )
        if segment.startswith("."):
            raise StorageError(
                f"vault key {key!r}: segment {segment!r} starts with '.', which is reserved"
            )
    return key


def validate_prefix(prefix: object) -> str:
    """Return ``prefix`` if it can start a vault key (``""`` and a trailing ``/`` are fine).

    Raises:
        StorageError: naming what is wrong with the prefix.
    """
    if not isinstance(prefix, str):
        raise StorageError(f"vault key prefix must be a str, not {type(prefix).__name__}")
    if prefix == "":
        return prefix
    # A prefix is a key cut anywhere: validate it as a key with the cut part completed.
    body = prefix[:-1] if prefix.endswith("/") else prefix
    try:
        validate_key(body if body else "x")
    except StorageError as exc:
        raise StorageError(f"bad vault key prefix {prefix!r}: {exc}") from None
    return prefix


def validate_tags(tags: object) -> dict[str, str]:
    """Return a plain copy of ``tags`` if it follows S3's object tag rules.

    Raises:
        StorageError: naming the offending tag.
    """
    if not isinstance(tags, Mapping):
        raise StorageError(f"tags must be a mapping of str to str, not {type(tags).__name__}")
    if len(tags) > MAX_TAGS:
        raise StorageError(f"{len(tags)} tags given; an object may carry at most {MAX_TAGS}")
    checked: dict[str, str] = {}
    for name, value in tags.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise StorageError(f"tag {name!r}: keys and values must be str")
        if not 1 <= len(name) <= MAX_TAG_KEY_LENGTH:
            raise StorageError(
                f"tag key {name[:40]!r} must be 1-{MAX_TAG_KEY_LENGTH} characters long"
            )
        if len(value) > MAX_TAG_VALUE_LENGTH:
            raise StorageError(
                f"tag {name!r}: value is {len(value)} characters long; "
                f"the limit is {MAX_TAG_VALUE_LENGTH}"
            )
        for kind, text in (("key", name), ("value", value)):
            if not _TAG_CHARS.fullmatch(text):
                raise StorageError(
                    f"tag {kind} {text!r} has characters outside letters, digits, spaces "
                    "and + - = . _ : / @"
                )
        if name.lower().startswith("aws:"):
            raise StorageError(f"tag key {name!r}: the 'aws:' prefix is reserved")
        checked[name] = value
    return checked


def check_range(start: int, end: int) -> None:
    """Raise :class:`StorageError` unless ``0 <= start <= end`` (integers)."""
    if not isinstance(start, int) or not isinstance(end, int):
        raise StorageError("byte range bounds must be integers")
    if start < 0 or end < start:
        raise StorageError(f"bad byte range {start}-{end}: need 0 <= start <= end")


#: Bytes :func:`object_sha256` reads per range request.
HASH_WINDOW = 1 << 20


def object_sha256(vault: Vault, key: str, *, window: int = HASH_WINDOW) -> str:
    """The sha256 (hex) of the object ``key``, read in ranges of ``window`` bytes (its
    size from :meth:`Vault.head`): constant memory, however long the recording, on
    any backend. An object that shrinks meanwhile hashes short (a mismatch).

    Raises:
        RecordingNotFound: no such object.
        VaultUnavailable: the vault cannot be read now.
    """
    size = vault.head(key).size
    digest = hashlib.sha256()
    position = 0
    while position < size:
        piece = vault.get_range(key, position, min(position + window, size) - 1)
        if not piece:
            break
        digest.update(piece)
        position += len(piece)
    return digest.hexdigest()
