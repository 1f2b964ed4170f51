"""Subject keys and the service that seals and opens recordings with them.

Key hierarchy: the master :class:`~storage.crypto.keyring.Keyring` wraps one key per data
subject (customer, per tenant), kept in a :class:`SubjectKeyStore` (the catalog);
each subject key wraps one fresh data key per recording, kept in the object header
(:mod:`storage.crypto.envelope`).

What a caller of :class:`KeyService` may rely on:

- ``seal_recording`` creates the subject's key on first use (a race between two
  workers ends with both using the one key the store kept).
- The store is asked on every seal and open whether the subject key is still live;
  the in-memory LRU cache only saves keyring unwraps. So once ``destroy_subject``
  ran in any process sharing the store, every ``open_*`` of that subject's
  recordings raises :class:`~storage.errors.KeyDestroyed`, everywhere, at once.
- ``rewrap_all`` rewraps subject keys (never audio) under the keyring's current
  master key; it skips keys already current, so it can be re-run after a crash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from storage.crypto import envelope
from storage.crypto.envelope import EnvelopeHeader
from storage.crypto.keyring import Keyring, recording_digest
from storage.customer import NOT_CANONICAL, customer_ref_problem
from storage.errors import CustomerRefNotCanonical, IntegrityError, KeyDestroyed, KeyringError
from storage.types import SubjectKeyRecord

__all__ = [
    "SubjectKeyStore",
    "KeyService",
    "RecordingRanges",
    "SealedRecording",
    "SealingStream",
    "subject_key_context",
]

_SUBJECT_KEY_SIZE = 32


@runtime_checkable
class SubjectKeyStore(Protocol):
    """Where wrapped subject keys live (implemented by the catalog).

    At most one live (not destroyed) key exists per ``subject_ref``.
    """

    def get_subject_key(self, subject_ref: str) -> SubjectKeyRecord | None:
        """The live key of ``subject_ref``, or None."""
        ...

    def get_subject_key_by_id(self, key_id: str) -> SubjectKeyRecord | None:
        """The key ``key_id`` (live or destroyed), or None if never stored."""
        ...

    def put_subject_key(self, record: SubjectKeyRecord) -> SubjectKeyRecord:
        """Insert ``record`` unless its subject already has a live key; return the live one."""
        ...

    def put_subject_keys(self, records: Sequence[SubjectKeyRecord]) -> list[SubjectKeyRecord]:
        """``put_subject_key`` for many records in one transaction; winners in order."""
        ...

    def destroy_subject_key(self, key_id: str) -> None:
        """Forget the wrapped key for good (``wrapped_key`` NULL, ``destroyed_at`` set,
        ``subject_ref`` emptied: a destroyed key names no customer)."""
        ...

    def replace_wrapped_subject_key(
        self, key_id: str, wrapped_key: bytes, master_key_id: str
    ) -> None:
        """Store a rewrapped key (master-key rotation)."""
        ...

    def iter_subject_keys(self) -> Iterator[SubjectKeyRecord]:
        """Every subject key, live and destroyed (updates during iteration must be safe)."""
        ...


@dataclass(frozen=True)
class SealedRecording:
    """A sealed object and the subject key that protects it."""

    blob: bytes
    subject_key_id: str


class SealingStream:
    """A recording being sealed piece by piece (:meth:`KeyService.seal_recording_stream`):
    iterate it once (e.g. hand it to ``Vault.put``); afterwards ``size`` and
    ``sha256`` describe the sealed object that was produced."""

    def __init__(self, pieces: Iterator[bytes], subject_key_id: str) -> None:
        self.subject_key_id = subject_key_id
        self._pieces = pieces
        self._hasher = hashlib.sha256()
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for piece in self._pieces:
            self._hasher.update(piece)
            self.size += len(piece)
            yield piece

    @property
    def sha256(self) -> str:
        return self._hasher.hexdigest()


def subject_key_context(record: SubjectKeyRecord) -> dict[str, str]:
    """The keyring encryption context a subject key is wrapped under."""
    return {
        "purpose": "subject-key",
        "tenant": record.tenant,
        "subject_ref": record.subject_ref,
        "key_id": record.key_id,
    }


class KeyService:
    """Seals and opens recordings under per-subject keys; crypto-shreds subjects.

    Thread-safe. ``cache_size`` bounds the number of unwrapped subject keys kept in
    memory (0 disables the cache).
    """

    def __init__(self, keyring: Keyring, store: SubjectKeyStore, *, cache_size: int = 4096) -> None:
        if cache_size < 0:
            raise ValueError("cache_size must not be negative")
        self._keyring = keyring
        self._store = store
        self._cache_size = cache_size
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def keyring(self) -> Keyring:
        return self._keyring

    def subject_ref(self, tenant: str, customer_ref: str) -> str:
        """The pseudonymous subject reference of a customer (keyed hash, per tenant).

        ``customer_ref`` must be canonical (:mod:`storage.customer`): a reference that
        is not is refused here too, so no path can pseudonymize an altered form.

        Raises:
            CustomerRefNotCanonical: ``customer_ref`` breaks a rule of the canonical form.
            KeyringError: ``tenant`` is empty.
        """
        problem = customer_ref_problem(customer_ref)
        if problem is not None:
            raise CustomerRefNotCanonical(f"{NOT_CANONICAL}: {problem}")
        return self._keyring.pseudonymize(tenant, customer_ref)

    # -- sealing / opening ------------------------------------------------------------
    def seal_recording(
        self,
        *,
        recording_id: str,
        tenant: str,
        subject_ref: str,
        plaintext: bytes | bytearray | memoryview,
        content_type: str = "audio/wav",
        chunk_size: int = envelope.DEFAULT_CHUNK_SIZE,
        subject_key_record: SubjectKeyRecord | None = None,
    ) -> SealedRecording:
        """Encrypt ``plaintext`` under a fresh data key wrapped by the subject's key.

        ``subject_key_record``: the subject's live key as :meth:`live_subject_keys` gave
        it for the batch (saves a query per recording); None, or one of another
        subject or tenant, looks the key up (creating it if there is none).

        Raises:
            KeyringError: the subject key could not be created or unwrapped, or the
                subject ref belongs to another tenant.
            ValueError: empty ids or a bad chunk size.
        """
        ref, record, data_key, wrapped = self._new_data_key(
            recording_id, tenant, subject_ref, subject_key_record
        )
        blob = envelope.seal(
            ref,
            plaintext,
            data_key=data_key,
            wrapped_data_key=wrapped,
            subject_key_id=record.key_id,
            chunk_size=chunk_size,
            content_type=content_type,
        )
        return SealedRecording(blob=blob, subject_key_id=record.key_id)

    def seal_recording_stream(
        self,
        *,
        recording_id: str,
        tenant: str,
        subject_ref: str,
        plaintext: envelope.SupportsRead,
        size: int,
        content_type: str = "audio/wav",
        chunk_size: int = envelope.DEFAULT_CHUNK_SIZE,
        subject_key_record: SubjectKeyRecord | None = None,
    ) -> SealingStream:
        """:meth:`seal_recording` for a stream of ``size`` bytes, in constant memory: the
        sealed object is produced chunk by chunk as the result is iterated
        (``subject_key_record`` as for :meth:`seal_recording`).

        Raises:
            KeyringError: as :meth:`seal_recording` (at once, before any piece).
            ValueError: empty ids; while iterating, a stream shorter or longer than
                ``size`` (and whatever reading ``plaintext`` raises).
        """
        ref, record, data_key, wrapped = self._new_data_key(
            recording_id, tenant, subject_ref, subject_key_record
        )
        pieces = envelope.seal_chunks(
            ref,
            plaintext,
            data_key=data_key,
            wrapped_data_key=wrapped,
            subject_key_id=record.key_id,
            size=size,
            chunk_size=chunk_size,
            content_type=content_type,
        )
        return SealingStream(pieces, record.key_id)

    def _new_data_key(
        self,
        recording_id: str,
        tenant: str,
        subject_ref: str,
        subject_key_record: SubjectKeyRecord | None = None,
    ) -> tuple[str, SubjectKeyRecord, bytes, bytes]:
        """A fresh data key for one recording: its reference, the subject key record,
        the key and the key wrapped by the subject key (``subject_key_record``: the
        subject's live key when the batch looked it up already; checked again by key id,
        the subject's live or a new key instead when it was destroyed meanwhile)."""
        if not recording_id or not tenant or not subject_ref:
            raise ValueError("recording_id, tenant and subject_ref must not be empty")
        record: SubjectKeyRecord | None = None
        if subject_key_record is not None and (
            subject_key_record.subject_ref == subject_ref and subject_key_record.tenant == tenant
        ):
            # looked up for the whole batch already: an erasure since then must not leave
            # this recording sealed under the destroyed key (one primary-key read)
            record = self._store.get_subject_key_by_id(subject_key_record.key_id)
            if record is None or record.wrapped_key is None or record.destroyed_at is not None:
                self._forget(subject_key_record.key_id)
                record = None
        if record is None:
            record = self._live_or_new_subject_key(tenant, subject_ref)
        subject_key = self._subject_key(record)
        data_key = envelope.new_data_key()
        ref = self.recording_ref(recording_id)  # the header never holds the id (format v2)
        wrapped = envelope.wrap_data_key(
            subject_key, data_key, recording_ref=ref, subject_key_id=record.key_id
        )
        return ref, record, data_key, wrapped

    def recording_ref(self, recording_id: str) -> str:
        """What a sealed object's header (format v2) names ``recording_id`` by: a keyed
        digest (:func:`storage.crypto.keyring.recording_digest`).

        Raises:
            KeyringError: an empty or unencodable recording id.
        """
        return recording_digest(self._keyring, recording_id)

    def header_matches(self, header: EnvelopeHeader, recording_id: str) -> bool:
        """Whether the object behind ``header`` holds ``recording_id`` (v2: its keyed
        digest; v1: the id itself): a swapped object fails this."""
        if header.version == 1:
            return header.recording_ref == recording_id
        return hmac.compare_digest(header.recording_ref, self.recording_ref(recording_id))

    def open_recording(self, blob: bytes | memoryview) -> bytes:
        """Decrypt a whole sealed object.

        Raises:
            IntegrityError: the object is tampered, truncated, extended or spliced.
            KeyDestroyed: the subject was erased (crypto-shredded).
            KeyringError: the subject key is unknown or cannot be unwrapped.
        """
        header = envelope.parse_header(blob)
        data_key = self.data_key(header[0])
        return envelope.open_sealed(blob, data_key, header=header)

    def seal_named(
        self,
        subject_key_id: str,
        name: str,
        plaintext: bytes,
        *,
        content_type: str = "application/json",
    ) -> bytes:
        """Encrypt a small record about a recording (an evaluation, a timeline note) under
        an existing, live subject key, in the object format with ``name`` as its
        ``recording_ref`` (bound into every chunk and the wrapped data key). Destroying
        the subject key (erasure) makes it unreadable together with the audio.

        Never creates a key: after an erasure nothing new is sealed for that customer.

        Raises:
            KeyDestroyed: the subject key was destroyed.
            KeyringError: the key is unknown or cannot be unwrapped.
            ValueError: an empty name.
        """
        if not name:
            raise ValueError("name must not be empty")
        record = self._store.get_subject_key_by_id(subject_key_id)
        if record is None:
            raise KeyringError(f"subject key {subject_key_id} is unknown to the catalog")
        if record.wrapped_key is None or record.destroyed_at is not None:
            self._forget(record.key_id)
            raise KeyDestroyed(f"subject key {subject_key_id} was destroyed (customer erased)")
        data_key = envelope.new_data_key()
        wrapped = envelope.wrap_data_key(
            self._subject_key(record), data_key, recording_ref=name, subject_key_id=record.key_id
        )
        return envelope.seal(
            name,
            plaintext,
            data_key=data_key,
            wrapped_data_key=wrapped,
            subject_key_id=record.key_id,
            content_type=content_type,
        )

    def open_named(self, blob: bytes | memoryview, name: str) -> bytes:
        """Decrypt a record sealed by :meth:`seal_named` under ``name``.

        Raises:
            IntegrityError: tampered, or sealed under another name (moved between rows).
            KeyDestroyed: the subject was erased.
            KeyringError: the subject key is unknown or cannot be unwrapped.
        """
        header = envelope.parse_header(blob)
        if header[0].recording_ref != name:
            raise IntegrityError(
                f"sealed record belongs to {header[0].recording_ref!r}, not {name!r}"
            )
        return envelope.open_sealed(blob, self.data_key(header[0]), header=header)

    def open_ranges(
        self,
        fetch: Callable[[int, int], bytes],
        *,
        header: tuple[EnvelopeHeader, int] | None = None,
    ) -> RecordingRanges:
        """The sealed object behind ``fetch``, opened for reads by plaintext range.

        ``fetch(start, end_inclusive)`` reads ciphertext bytes of the stored object (it
        may return fewer bytes only at the end of the object). ``header`` may pass a
        :meth:`read_header` result to save one fetch.

        Raises:
            IntegrityError: the header is not a valid sealed object's.
        """
        return RecordingRanges(self, fetch, header or self.read_header(fetch))

    def open_recording_range(
        self,
        fetch: Callable[[int, int], bytes],
        start: int,
        end: int,
        *,
        header: tuple[EnvelopeHeader, int] | None = None,
    ) -> bytes:
        """Plaintext bytes ``[start, end]`` (inclusive), fetching only what is needed
        (one range of :meth:`open_ranges`).

        Raises:
            ValueError: the range is outside ``[0, plaintext_size)``.
            IntegrityError, KeyDestroyed, KeyringError: as :meth:`open_recording`.
        """
        return self.open_ranges(fetch, header=header).read(start, end)

    def read_header(self, fetch: Callable[[int, int], bytes]) -> tuple[EnvelopeHeader, int]:
        """The object's header and header length, e.g. for Content-Length / Content-Type.

        Raises:
            IntegrityError: not a valid sealed object.
        """
        return envelope.read_header(fetch)

    def data_key(self, header: EnvelopeHeader) -> bytes:
        """The recording's data key, unwrapped from its header.

        Raises:
            KeyDestroyed: the subject key was destroyed.
            KeyringError: the subject key is unknown or cannot be unwrapped.
            IntegrityError: the wrapped data key does not belong to this recording.
        """
        record = self._store.get_subject_key_by_id(header.subject_key_id)
        if record is None:
            raise KeyringError(
                f"recording {header.label}: subject key {header.subject_key_id} "
                "is unknown to the catalog"
            )
        if record.wrapped_key is None or record.destroyed_at is not None:
            self._forget(record.key_id)
            raise KeyDestroyed(
                f"recording {header.label}: its subject key was destroyed "
                "(customer erased); the audio is unrecoverable"
            )
        return envelope.unwrap_data_key(
            self._subject_key(record),
            header.wrapped_data_key,
            recording_ref=header.recording_ref,
            subject_key_id=header.subject_key_id,
        )

    # -- erasure and rotation ------------------------------------------------------------
    def destroy_subject(self, subject_ref: str) -> bool:
        """Crypto-shred ``subject_ref``: every recording sealed for it becomes unreadable.

        Returns True if a live key was destroyed, False if there was none.

        Raises:
            KeyringError / CatalogError: the store failed (nothing is half-done).
        """
        record = self._store.get_subject_key(subject_ref)
        if record is None:
            return False
        self._store.destroy_subject_key(record.key_id)
        self._forget(record.key_id)
        return True

    def key_destroyed(self, key_id: str) -> bool:
        """Whether the subject key ``key_id`` was destroyed (or is unknown: never stored,
        so nothing it sealed can be opened either).

        Raises:
            CatalogError: the store failed.
        """
        record = self._store.get_subject_key_by_id(key_id)
        return record is None or record.wrapped_key is None or record.destroyed_at is not None

    def live_subject_key(self, subject_ref: str) -> SubjectKeyRecord | None:
        """The live key of ``subject_ref`` (None: none yet, or destroyed by an erasure).

        Raises:
            CatalogError: the store failed.
        """
        record = self._store.get_subject_key(subject_ref)
        if record is None or record.wrapped_key is None:
            return None
        return record

    def destroy_key(self, key_id: str) -> bool:
        """Crypto-shred the subject key ``key_id`` (not a newer key of the same subject).

        Returns True if it was live and is destroyed now, False if it was destroyed
        already or is unknown.

        Raises:
            KeyringError / CatalogError: the store failed.
        """
        record = self._store.get_subject_key_by_id(key_id)
        if record is None or record.wrapped_key is None:
            return False
        self._store.destroy_subject_key(key_id)
        self._forget(key_id)
        return True

    def rewrap_all(self, progress: Callable[[int], None] | None = None) -> int:
        """Rewrap every live subject key under the keyring's current master key.

        Keys already under the current master key, and destroyed keys, are skipped, so
        an interrupted run can simply be repeated. ``progress(1)`` is called after each
        key examined (fits ``tqdm.update``). Returns how many keys were rewrapped.

        Raises:
            KeyringError: a key could not be unwrapped or wrapped (earlier ones stay done).
        """
        current = self._keyring.current_key_id
        rewrapped = 0
        for record in self._store.iter_subject_keys():
            if record.wrapped_key is not None and record.master_key_id != current:
                context = subject_key_context(record)
                subject_key = self._keyring.unwrap_key(record.wrapped_key, context)
                new_blob = self._keyring.wrap_key(subject_key, context)
                self._store.replace_wrapped_subject_key(record.key_id, new_blob, current)
                rewrapped += 1
            if progress is not None:
                progress(1)
        return rewrapped

    def ensure_subject_keys(self, subjects: Iterable[tuple[str, str]]) -> int:
        """Create the missing live keys of ``(tenant, subject_ref)`` pairs in one store
        transaction (ingest calls this once per batch, so new customers cost one commit
        per batch, not one each). Returns how many keys were created.

        Raises:
            KeyringError: wrapping failed, or a subject belongs to another tenant.
            CatalogError: the store failed.
        """
        return self._ensure(subjects)[1]

    def live_subject_keys(self, subjects: Iterable[tuple[str, str]]) -> dict[str, SubjectKeyRecord]:
        """:meth:`ensure_subject_keys`, returning each subject's live key record
        (subject_ref -> record), to hand to :meth:`seal_recording` for the batch.

        Raises:
            KeyringError: wrapping failed, or a subject belongs to another tenant.
            CatalogError: the store failed.
        """
        return self._ensure(subjects)[0]

    def _ensure(
        self, subjects: Iterable[tuple[str, str]]
    ) -> tuple[dict[str, SubjectKeyRecord], int]:
        records: dict[str, SubjectKeyRecord] = {}
        drafts: list[tuple[SubjectKeyRecord, bytes]] = []
        for tenant, subject_ref in dict.fromkeys(subjects):
            record = self._store.get_subject_key(subject_ref)
            if record is None:
                drafts.append(self._new_subject_key(tenant, subject_ref))
            elif record.tenant != tenant:
                raise KeyringError(
                    f"subject ref belongs to tenant {record.tenant!r}, not {tenant!r}"
                )
            else:
                records[subject_ref] = record
        if not drafts:
            return records, 0
        winners = self._store.put_subject_keys([draft for draft, _ in drafts])
        created = 0
        for (draft, key), winner in zip(drafts, winners, strict=True):
            records[winner.subject_ref] = winner
            if winner.key_id == draft.key_id:
                self._remember(draft.key_id, key)
                created += 1
        return records, created

    # -- internals ----------------------------------------------------------------------
    def _new_subject_key(self, tenant: str, subject_ref: str) -> tuple[SubjectKeyRecord, bytes]:
        key = secrets.token_bytes(_SUBJECT_KEY_SIZE)
        draft = SubjectKeyRecord(
            key_id=f"sk_{secrets.token_hex(16)}",
            subject_ref=subject_ref,
            tenant=tenant,
            wrapped_key=None,
            master_key_id=self._keyring.current_key_id,
            created_at=datetime.now(UTC),
        )
        return replace(
            draft, wrapped_key=self._keyring.wrap_key(key, subject_key_context(draft))
        ), key

    def _live_or_new_subject_key(self, tenant: str, subject_ref: str) -> SubjectKeyRecord:
        record = self._store.get_subject_key(subject_ref)
        if record is None:
            new, key = self._new_subject_key(tenant, subject_ref)
            record = self._store.put_subject_key(new)
            if record.key_id == new.key_id:
                self._remember(new.key_id, key)
        if record.tenant != tenant:
            raise KeyringError(f"subject ref belongs to tenant {record.tenant!r}, not {tenant!r}")
        return record

    def _subject_key(self, record: SubjectKeyRecord) -> bytes:
        with self._lock:
            key = self._cache.get(record.key_id)
            if key is not None:
                self._cache.move_to_end(record.key_id)
                return key
        if record.wrapped_key is None:
            raise KeyDestroyed(f"subject key {record.key_id} was destroyed")
        key = self._keyring.unwrap_key(record.wrapped_key, subject_key_context(record))
        if len(key) != _SUBJECT_KEY_SIZE:
            raise IntegrityError(f"subject key {record.key_id} unwrapped to a wrong length")
        self._remember(record.key_id, key)
        return key

    def _remember(self, key_id: str, key: bytes) -> None:
        if self._cache_size == 0:
            return
        with self._lock:
            self._cache[key_id] = key
            self._cache.move_to_end(key_id)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _forget(self, key_id: str) -> None:
        with self._lock:
            self._cache.pop(key_id, None)


class RecordingRanges:
    """One sealed object read by plaintext range: its header parsed once, its data key
    unwrapped once (at :meth:`unlock` or the first :meth:`read`), only the chunks a
    range covers fetched and authenticated."""

    def __init__(
        self,
        keys: KeyService,
        fetch: Callable[[int, int], bytes],
        header: tuple[EnvelopeHeader, int],
    ) -> None:
        self._keys = keys
        self._fetch = fetch
        self.header, self.header_len = header
        self._data_key: bytes | None = None

    def unlock(self) -> None:
        """Unwrap the data key now (so a shredded key is reported before any read).

        Raises:
            KeyDestroyed: the subject was erased (crypto-shredded).
            KeyringError: the subject key is unknown or cannot be unwrapped.
            IntegrityError: the wrapped data key was tampered with.
        """
        if self._data_key is None:
            self._data_key = self._keys.data_key(self.header)

    def read(self, start: int, end: int) -> bytes:
        """Plaintext ``[start, end]`` (inclusive), authenticated.

        Raises:
            ValueError: the range is outside ``[0, plaintext_size)``.
            IntegrityError, KeyDestroyed, KeyringError: as :meth:`KeyService.open_recording`.
        """
        self.unlock()
        assert self._data_key is not None
        span_start, span_end, first = envelope.ciphertext_span(
            self.header, self.header_len, start, end
        )
        ciphertext = self._fetch(span_start, span_end)
        return envelope.open_range(
            self.header, self.header_len, ciphertext, first, self._data_key, start, end
        )
