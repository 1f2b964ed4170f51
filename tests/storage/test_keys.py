"""KeyService: subject keys, sealing/opening, range reads, crypto-shredding, rewrap."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage.crypto import envelope
from storage.crypto.keys import KeyService, SubjectKeyStore
from storage.crypto.local import LocalKeyring
from storage.errors import IntegrityError, KeyDestroyed, KeyringError
from storage.types import SubjectKeyRecord

CHUNK = 256


class MemoryKeyStore:
    """A tiny in-memory SubjectKeyStore (the catalog implements the real one)."""

    def __init__(self) -> None:
        self.records: dict[str, SubjectKeyRecord] = {}
        self.batches = 0

    def get_subject_key(self, subject_ref: str) -> SubjectKeyRecord | None:
        for record in self.records.values():
            if record.subject_ref == subject_ref and record.destroyed_at is None:
                return record
        return None

    def get_subject_key_by_id(self, key_id: str) -> SubjectKeyRecord | None:
        return self.records.get(key_id)

    def put_subject_key(self, record: SubjectKeyRecord) -> SubjectKeyRecord:
        live = self.get_subject_key(record.subject_ref)
        if live is not None:
            return live
        self.records[record.key_id] = record
        return record

    def put_subject_keys(self, records: list[SubjectKeyRecord]) -> list[SubjectKeyRecord]:
        self.batches += 1
        return [self.put_subject_key(record) for record in records]

    def destroy_subject_key(self, key_id: str) -> None:
        self.records[key_id] = replace(
            self.records[key_id], wrapped_key=None, destroyed_at=datetime.now(UTC), subject_ref=""
        )

    def replace_wrapped_subject_key(
        self, key_id: str, wrapped_key: bytes, master_key_id: str
    ) -> None:
        self.records[key_id] = replace(
            self.records[key_id], wrapped_key=wrapped_key, master_key_id=master_key_id
        )

    def iter_subject_keys(self) -> Iterator[SubjectKeyRecord]:
        yield from list(self.records.values())


class RacyStore(MemoryKeyStore):
    """Claims no key exists once, as if another worker inserted it concurrently."""

    def __init__(self, existing: SubjectKeyRecord) -> None:
        super().__init__()
        self.records[existing.key_id] = existing
        self.lied = False

    def get_subject_key(self, subject_ref: str) -> SubjectKeyRecord | None:
        if not self.lied:
            self.lied = True
            return None
        return super().get_subject_key(subject_ref)


class CountingKeyring(LocalKeyring):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.unwraps = 0

    def unwrap_key(self, blob: bytes, context: Mapping[str, str]) -> bytes:
        self.unwraps += 1
        return super().unwrap_key(blob, context)


@pytest.fixture
def keyring(tmp_path: Path) -> CountingKeyring:
    return CountingKeyring(tmp_path / "keys" / "master.json")


@pytest.fixture
def store() -> MemoryKeyStore:
    return MemoryKeyStore()


@pytest.fixture
def service(keyring: CountingKeyring, store: MemoryKeyStore) -> KeyService:
    return KeyService(keyring, store)


def seal(service: KeyService, recording_id: str, subject_ref: str, plaintext: bytes) -> bytes:
    sealed = service.seal_recording(
        recording_id=recording_id,
        tenant="acme",
        subject_ref=subject_ref,
        plaintext=plaintext,
        chunk_size=CHUNK,
    )
    return sealed.blob


def test_memory_store_satisfies_the_protocol(store: MemoryKeyStore) -> None:
    assert isinstance(store, SubjectKeyStore)


def test_seal_and_open_round_trip(service: KeyService, store: MemoryKeyStore) -> None:
    ref = service.subject_ref("acme", "+15551234567")
    plaintext = os.urandom(3 * CHUNK + 11)
    sealed = service.seal_recording(
        recording_id="rec-1", tenant="acme", subject_ref=ref, plaintext=plaintext, chunk_size=CHUNK
    )
    assert service.open_recording(sealed.blob) == plaintext
    record = store.get_subject_key(ref)
    assert record is not None and record.key_id == sealed.subject_key_id
    assert record.tenant == "acme" and record.wrapped_key is not None
    assert record.master_key_id == service.keyring.current_key_id
    header, _ = envelope.parse_header(sealed.blob)
    assert (header.version, header.subject_key_id) == (2, sealed.subject_key_id)
    assert header.recording_ref == service.recording_ref("rec-1") != "rec-1"
    assert b"rec-1" not in sealed.blob  # no recording id in clear (format v2)
    assert service.header_matches(header, "rec-1") and not service.header_matches(header, "rec-2")
    assert "+15551234567" not in ref and b"+15551234567" not in sealed.blob


def test_one_subject_key_per_subject_and_fresh_data_key_per_recording(
    service: KeyService, store: MemoryKeyStore
) -> None:
    a1 = service.seal_recording(recording_id="r1", tenant="acme", subject_ref="A", plaintext=b"x")
    a2 = service.seal_recording(recording_id="r2", tenant="acme", subject_ref="A", plaintext=b"x")
    b1 = service.seal_recording(recording_id="r3", tenant="acme", subject_ref="B", plaintext=b"x")
    assert a1.subject_key_id == a2.subject_key_id != b1.subject_key_id
    assert len(store.records) == 2
    h1, h2 = envelope.parse_header(a1.blob)[0], envelope.parse_header(a2.blob)[0]
    assert h1.wrapped_data_key != h2.wrapped_data_key and a1.blob[-16:] != a2.blob[-16:]


def test_a_lost_race_uses_the_key_the_store_kept(keyring: CountingKeyring, tmp_path: Path) -> None:
    first_store = MemoryKeyStore()
    first = KeyService(keyring, first_store)
    blob_1 = seal(first, "rec-1", "A", b"first")
    existing = first_store.get_subject_key("A")
    assert existing is not None
    racy = RacyStore(existing)
    second = KeyService(keyring, racy)
    blob_2 = seal(second, "rec-2", "A", b"second")
    assert envelope.parse_header(blob_2)[0].subject_key_id == existing.key_id
    assert len(racy.records) == 1
    assert KeyService(keyring, racy).open_recording(blob_1) == b"first"
    assert KeyService(keyring, racy).open_recording(blob_2) == b"second"


def test_subject_ref_of_another_tenant_is_refused(service: KeyService) -> None:
    seal(service, "rec-1", "A", b"x")
    with pytest.raises(KeyringError, match="tenant"):
        service.seal_recording(
            recording_id="rec-2", tenant="globex", subject_ref="A", plaintext=b""
        )


def test_empty_ids_are_refused(service: KeyService) -> None:
    with pytest.raises(ValueError, match="empty"):
        service.seal_recording(recording_id="", tenant="acme", subject_ref="A", plaintext=b"")
    with pytest.raises(ValueError, match="empty"):
        service.seal_recording(recording_id="r", tenant="acme", subject_ref="", plaintext=b"")


def test_subject_ref_is_the_keyring_pseudonym(service: KeyService, keyring: LocalKeyring) -> None:
    assert service.subject_ref("acme", "c-1") == keyring.pseudonymize("acme", "c-1")
    assert service.subject_ref("acme", "c-1") != service.subject_ref("globex", "c-1")


def test_tampered_or_spliced_objects_are_integrity_errors(service: KeyService) -> None:
    blob_a = seal(service, "rec-a", "A", os.urandom(2 * CHUNK))
    blob_b = seal(service, "rec-b", "A", os.urandom(2 * CHUNK))
    tampered = bytearray(blob_a)
    tampered[-1] ^= 1
    _, len_a = envelope.parse_header(blob_a)
    _, len_b = envelope.parse_header(blob_b)
    for forged in (
        bytes(tampered),
        blob_a[:len_a] + blob_b[len_b:],
        blob_b[:len_b] + blob_a[len_a:],
    ):
        with pytest.raises(IntegrityError):
            service.open_recording(forged)


def test_header_pointing_at_another_subjects_key_is_an_integrity_error(
    service: KeyService,
) -> None:
    blob_a = seal(service, "rec-a", "A", b"audio")
    blob_b = seal(service, "rec-b", "B", b"audio")
    header_a, len_a = envelope.parse_header(blob_a)
    header_b, _ = envelope.parse_header(blob_b)
    _, raw = envelope.build_header(
        recording_ref=header_a.recording_ref,
        subject_key_id=header_b.subject_key_id,
        wrapped_data_key=header_a.wrapped_data_key,
        plaintext_size=header_a.plaintext_size,
        chunk_size=header_a.chunk_size,
        nonce_base=header_a.nonce_base,
    )
    with pytest.raises(IntegrityError, match="data key does not unwrap"):
        service.open_recording(raw + blob_a[len_a:])


def test_unknown_subject_key_is_a_keyring_error(service: KeyService, keyring: LocalKeyring) -> None:
    blob = seal(service, "rec-1", "A", b"x")
    with pytest.raises(KeyringError, match="unknown to the catalog"):
        KeyService(keyring, MemoryKeyStore()).open_recording(blob)


def test_range_reads_fetch_only_the_header_and_needed_chunks(service: KeyService) -> None:
    plaintext = os.urandom(40 * CHUNK + 17)
    blob = seal(service, "rec-1", "A", plaintext)
    fetched: list[tuple[int, int]] = []

    def fetch(start: int, end: int) -> bytes:
        fetched.append((start, end))
        return blob[start : end + 1]

    assert service.read_header(fetch)[0].plaintext_size == len(plaintext)
    for start, end in [
        (0, 0),
        (CHUNK - 1, CHUNK),
        (5 * CHUNK, 7 * CHUNK - 1),
        (0, len(plaintext) - 1),
    ]:
        fetched.clear()
        assert service.open_recording_range(fetch, start, end) == plaintext[start : end + 1]
        chunks_read = end // CHUNK - start // CHUNK + 1
        header_bytes = fetched[0][1] - fetched[0][0] + 1
        span = fetched[1][1] - fetched[1][0] + 1
        assert len(fetched) == 2 and header_bytes <= 4096
        assert span <= chunks_read * (CHUNK + envelope.TAG_SIZE)

    header = service.read_header(fetch)
    fetched.clear()
    assert service.open_recording_range(fetch, 10, 20, header=header) == plaintext[10:21]
    assert len(fetched) == 1
    with pytest.raises(ValueError, match="outside"):
        service.open_recording_range(fetch, 0, len(plaintext))


def test_range_read_of_a_truncated_object_is_an_integrity_error(service: KeyService) -> None:
    plaintext = os.urandom(4 * CHUNK)
    blob = seal(service, "rec-1", "A", plaintext)[:-3]
    with pytest.raises(IntegrityError):
        service.open_recording_range(lambda s, e: blob[s : e + 1], 3 * CHUNK, 4 * CHUNK - 1)
    assert service.open_recording_range(lambda s, e: blob[s : e + 1], 0, 9) == plaintext[:10]


def test_destroy_subject_shreds_every_copy_and_spares_others(
    service: KeyService, keyring: LocalKeyring, store: MemoryKeyStore
) -> None:
    other_process = KeyService(keyring, store)  # shares the catalog, has its own cache
    blob_a1 = seal(service, "rec-a1", "A", b"a1")
    blob_a2 = seal(service, "rec-a2", "A", b"a2")
    backup_copy = bytes(blob_a1)
    blob_b = seal(service, "rec-b", "B", b"b")
    assert other_process.open_recording(blob_a1) == b"a1"  # warms its cache

    assert service.destroy_subject("A") is True

    for svc in (service, other_process, KeyService(keyring, store)):
        for blob in (blob_a1, blob_a2, backup_copy):
            with pytest.raises(KeyDestroyed, match="destroyed"):
                svc.open_recording(blob)
        with pytest.raises(KeyDestroyed):
            svc.open_recording_range(lambda s, e: blob_a1[s : e + 1], 0, 0)
        assert svc.open_recording(blob_b) == b"b"
    record = store.get_subject_key_by_id(envelope.parse_header(blob_a1)[0].subject_key_id)
    assert record is not None and record.wrapped_key is None and record.destroyed_at is not None
    assert service.destroy_subject("A") is False
    assert service.destroy_subject("never-seen") is False


def test_a_returning_subject_gets_a_new_key(service: KeyService) -> None:
    old = seal(service, "rec-1", "A", b"old")
    service.destroy_subject("A")
    new = seal(service, "rec-2", "A", b"new")
    assert (
        envelope.parse_header(old)[0].subject_key_id != envelope.parse_header(new)[0].subject_key_id
    )
    assert service.open_recording(new) == b"new"
    with pytest.raises(KeyDestroyed):
        service.open_recording(old)


def test_unwrapped_subject_keys_are_cached_in_a_bounded_lru(
    keyring: CountingKeyring, store: MemoryKeyStore
) -> None:
    writer = KeyService(keyring, store)
    blobs = {ref: seal(writer, f"rec-{ref}", ref, ref.encode()) for ref in "ABC"}
    reader = KeyService(keyring, store, cache_size=2)
    keyring.unwraps = 0
    reader.open_recording(blobs["A"])
    reader.open_recording(blobs["A"])
    assert keyring.unwraps == 1
    reader.open_recording(blobs["B"])
    reader.open_recording(blobs["C"])  # evicts A
    assert keyring.unwraps == 3
    reader.open_recording(blobs["A"])
    assert keyring.unwraps == 4
    uncached = KeyService(keyring, store, cache_size=0)
    keyring.unwraps = 0
    uncached.open_recording(blobs["A"])
    uncached.open_recording(blobs["A"])
    assert keyring.unwraps == 2
    with pytest.raises(ValueError):
        KeyService(keyring, store, cache_size=-1)


def test_rewrap_all_after_rotation_is_resumable_and_keeps_data_readable(
    service: KeyService, keyring: LocalKeyring, store: MemoryKeyStore
) -> None:
    blobs = {ref: seal(service, f"rec-{ref}", ref, ref.encode() * 100) for ref in "ABCD"}
    service.destroy_subject("D")
    old_master = keyring.current_key_id
    new_master = keyring.rotate()
    ticks: list[int] = []

    assert service.rewrap_all(progress=ticks.append) == 3
    assert ticks == [1, 1, 1, 1]
    assert service.rewrap_all() == 0  # already current: nothing to do
    for record in store.iter_subject_keys():
        if record.wrapped_key is not None:
            assert record.master_key_id == new_master
            assert new_master.encode() in record.wrapped_key
            assert old_master.encode() not in record.wrapped_key
    fresh = KeyService(keyring, store)  # no cache: really unwraps under the new key
    for ref in "ABC":
        assert fresh.open_recording(blobs[ref]) == ref.encode() * 100
    with pytest.raises(KeyDestroyed):
        fresh.open_recording(blobs["D"])


def test_rewrap_resumes_after_a_partial_run(
    service: KeyService, keyring: LocalKeyring, store: MemoryKeyStore
) -> None:
    for ref in "ABC":
        seal(service, f"rec-{ref}", ref, b"x")
    keyring.rotate()

    class Stop(Exception):
        pass

    def stop_after_first(_: int) -> None:
        raise Stop

    with pytest.raises(Stop):
        service.rewrap_all(progress=stop_after_first)
    assert service.rewrap_all() == 2


def test_ensure_subject_keys_creates_only_the_missing_ones_in_one_batch(tmp_path: Path) -> None:
    store = MemoryKeyStore()
    service = KeyService(LocalKeyring(tmp_path / "keys" / "master.json"), store)
    existing = service.seal_recording(
        recording_id="r-0", tenant="acme", subject_ref="s-0", plaintext=b"x"
    )
    created = service.ensure_subject_keys(
        [("acme", "s-0"), ("acme", "s-1"), ("acme", "s-2"), ("acme", "s-1")]
    )
    assert created == 2 and store.batches == 1
    assert (
        service.ensure_subject_keys([("acme", "s-1"), ("acme", "s-2")]) == 0 and store.batches == 1
    )
    sealed = service.seal_recording(
        recording_id="r-1", tenant="acme", subject_ref="s-1", plaintext=b"y"
    )
    assert sealed.subject_key_id == store.get_subject_key("s-1").key_id  # type: ignore[union-attr]
    assert service.open_recording(existing.blob) == b"x"
    with pytest.raises(KeyringError, match="belongs to tenant 'acme'"):
        service.ensure_subject_keys([("other", "s-0")])


def test_version_1_objects_with_the_recording_id_in_clear_still_open(
    service: KeyService, store: MemoryKeyStore
) -> None:
    """Format v2 names the recording by a keyed digest; objects written by earlier
    versions (recording id in the header) keep opening, and still bind to their id."""
    sealed = service.seal_recording(
        recording_id="rec-old", tenant="acme", subject_ref="A", plaintext=b"x", chunk_size=CHUNK
    )
    record = store.get_subject_key_by_id(sealed.subject_key_id)
    assert record is not None
    subject_key = service._subject_key(record)
    data_key = envelope.new_data_key()
    wrapped = envelope.wrap_data_key(
        subject_key, data_key, recording_ref="rec-old", subject_key_id=record.key_id
    )
    plaintext = os.urandom(3 * CHUNK + 5)
    v1 = envelope.seal(
        "rec-old", plaintext, data_key=data_key, wrapped_data_key=wrapped,
        subject_key_id=record.key_id, chunk_size=CHUNK, version=1,
    )  # fmt: skip
    assert v1[4] == 1 and b'"recording_id":"rec-old"' in v1
    header, _ = envelope.parse_header(v1)
    assert header.version == 1 and header.label == "a v1 object"
    assert service.open_recording(v1) == plaintext
    assert service.header_matches(header, "rec-old") and not service.header_matches(header, "x")
    ranges = service.open_ranges(lambda start, end: v1[start : end + 1])
    assert ranges.read(CHUNK - 1, CHUNK + 1) == plaintext[CHUNK - 1 : CHUNK + 2]


def test_named_records_are_sealed_under_the_subject_key_and_shredded_with_it(
    service: KeyService, store: MemoryKeyStore
) -> None:
    audio = seal(service, "rec-n", "A", b"audio")
    key_id = envelope.parse_header(audio)[0].subject_key_id
    blob = service.seal_named(key_id, "qa-note/n-1", b'{"text": "repeats the question"}')
    assert b"repeats" not in blob
    assert service.open_named(blob, "qa-note/n-1") == b'{"text": "repeats the question"}'
    # Moved to another row (another name) or tampered with: refused.
    with pytest.raises(IntegrityError, match="belongs to 'qa-note/n-1'"):
        service.open_named(blob, "qa-note/n-2")
    flipped = bytearray(blob)
    flipped[-5] ^= 1
    with pytest.raises(IntegrityError):
        service.open_named(bytes(flipped), "qa-note/n-1")
    with pytest.raises(KeyringError, match="unknown"):
        service.seal_named("sk_nope", "qa-note/x", b"x")
    # Erasure: the note goes with the audio, and nothing new is sealed for the customer.
    assert service.destroy_subject("A") is True
    with pytest.raises(KeyDestroyed):
        service.open_named(blob, "qa-note/n-1")
    with pytest.raises(KeyDestroyed):
        service.seal_named(key_id, "qa-note/n-3", b"x")
    assert store.get_subject_key("A") is None  # no fresh key was made for the erased customer


def test_a_key_erased_after_the_batch_lookup_is_not_sealed_under(tmp_path: Path) -> None:
    """An erasure (another worker, its own process) between the batch's lookup and the
    seal: the recording is sealed under a new live key, never the destroyed one."""
    store = MemoryKeyStore()
    service = KeyService(LocalKeyring(tmp_path / "keys" / "master.json"), store)
    records = service.live_subject_keys([("acme", "s-1")])
    old = records["s-1"].key_id
    service.seal_recording(
        recording_id="r-0",
        tenant="acme",
        subject_ref="s-1",
        plaintext=b"x",
        subject_key_record=records["s-1"],
    )  # fmt: skip  (its key is in this service's cache now)
    store.destroy_subject_key(old)  # the erasure, not through this service
    sealed = service.seal_recording(
        recording_id="r-1", tenant="acme", subject_ref="s-1", plaintext=b"y",
        subject_key_record=records["s-1"],
    )  # fmt: skip
    streamed = service.seal_recording_stream(
        recording_id="r-2", tenant="acme", subject_ref="s-1", plaintext=io.BytesIO(b"zz"),
        size=2, subject_key_record=records["s-1"],
    )  # fmt: skip
    blob = b"".join(streamed)
    live = store.get_subject_key("s-1")
    assert live is not None and live.key_id != old and live.destroyed_at is None
    assert sealed.subject_key_id == streamed.subject_key_id == live.key_id
    assert service.open_recording(sealed.blob) == b"y" and service.open_recording(blob) == b"zz"
    assert service.key_destroyed(old)


def test_live_subject_keys_hand_sealing_the_batch_s_lookup(tmp_path: Path) -> None:
    """Ingest looks the batch's subject keys up once (creating the missing ones) and
    seals with those records: no store query per recording; a record of another
    subject or tenant is not used."""
    store = MemoryKeyStore()
    service = KeyService(LocalKeyring(tmp_path / "keys" / "master.json"), store)
    service.seal_recording(recording_id="r-0", tenant="acme", subject_ref="s-0", plaintext=b"x")
    records = service.live_subject_keys([("acme", "s-0"), ("acme", "s-1"), ("acme", "s-0")])
    assert set(records) == {"s-0", "s-1"} and store.batches == 1
    assert records["s-1"].key_id == store.get_subject_key("s-1").key_id  # type: ignore[union-attr]
    lookups = 0
    original = store.get_subject_key

    def counting(subject_ref: str):  # type: ignore[no-untyped-def]
        nonlocal lookups
        lookups += 1
        return original(subject_ref)

    store.get_subject_key = counting  # type: ignore[method-assign]
    sealed = service.seal_recording(
        recording_id="r-1", tenant="acme", subject_ref="s-1", plaintext=b"y",
        subject_key_record=records["s-1"],
    )  # fmt: skip
    assert lookups == 0 and sealed.subject_key_id == records["s-1"].key_id
    assert service.open_recording(sealed.blob) == b"y"
    other = service.seal_recording(  # a record of another subject: looked up instead
        recording_id="r-2", tenant="acme", subject_ref="s-0", plaintext=b"z",
        subject_key_record=records["s-1"],
    )  # fmt: skip
    assert lookups == 1 and other.subject_key_id == records["s-0"].key_id
