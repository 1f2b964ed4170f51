"""The sealed object format: round trips, every tamper case, range reads, streaming."""

from __future__ import annotations

import io
import json
import os
import random
import struct

import pytest

from storage.crypto import envelope
from storage.crypto.envelope import (
    DEFAULT_CHUNK_SIZE,
    PREFIX_SIZE,
    TAG_SIZE,
    ciphertext_span,
    header_length,
    open_chunks,
    open_range,
    open_sealed,
    parse_header,
    read_header,
    seal,
    seal_chunks,
    unwrap_data_key,
    wrap_data_key,
)
from storage.errors import IntegrityError

SMALL = 64  # a small chunk size keeps exhaustive tamper tests fast


def make(
    plaintext: bytes,
    *,
    recording_id: str = "rec-1",
    chunk_size: int = SMALL,
    data_key: bytes | None = None,
) -> tuple[bytes, bytes]:
    """A sealed blob and its data key."""
    data_key = data_key or envelope.new_data_key()
    subject_key = os.urandom(32)
    wrapped = wrap_data_key(
        subject_key, data_key, recording_ref=recording_id, subject_key_id="sk_1"
    )
    blob = seal(
        recording_id,
        plaintext,
        data_key=data_key,
        wrapped_data_key=wrapped,
        subject_key_id="sk_1",
        chunk_size=chunk_size,
    )
    return blob, data_key


def chunks_of(blob: bytes) -> tuple[bytes, list[bytes]]:
    header, header_len = parse_header(blob)
    pieces, offset = [], header_len
    for index in range(header.chunk_count):
        size = header.chunk_plain_size(index) + TAG_SIZE
        pieces.append(blob[offset : offset + size])
        offset += size
    assert offset == len(blob)
    return blob[:header_len], pieces


@pytest.mark.parametrize("size", [0, 1, SMALL - 1, SMALL, SMALL + 1, 3 * SMALL, 3 * SMALL + 5])
def test_round_trip_small_chunks(size: int) -> None:
    plaintext = os.urandom(size)
    blob, key = make(plaintext)
    assert open_sealed(blob, key) == plaintext
    assert b"".join(open_chunks(blob, key)) == plaintext
    header, header_len = parse_header(blob)
    assert header.plaintext_size == size
    assert header.chunk_count == max(1, -(-size // SMALL))
    assert len(blob) == header.sealed_size(header_len)
    assert len(plaintext) < 16 or plaintext[:16] not in blob  # ciphertext, not plaintext


@pytest.mark.parametrize(
    "size",
    [DEFAULT_CHUNK_SIZE - 1, DEFAULT_CHUNK_SIZE, DEFAULT_CHUNK_SIZE + 1, 5 * 1024 * 1024 + 3],
)
def test_round_trip_default_chunk_size(size: int) -> None:
    plaintext = os.urandom(size)
    blob, key = make(plaintext, chunk_size=DEFAULT_CHUNK_SIZE)
    assert open_sealed(blob, key) == plaintext
    assert parse_header(blob)[0].chunk_size == DEFAULT_CHUNK_SIZE


def test_header_records_what_the_reader_needs() -> None:
    blob, _ = make(b"x" * 200, recording_id="rec-42")
    header, header_len = parse_header(blob)
    assert blob[:4] == b"CVLT" and blob[4] == 2
    assert header_len == PREFIX_SIZE + struct.unpack(">I", blob[8:12])[0]
    assert header_length(blob[:PREFIX_SIZE]) == header_len
    body = json.loads(blob[PREFIX_SIZE:header_len])
    assert body["recording_ref"] == "rec-42" and "recording_id" not in body
    assert (header.recording_ref, header.subject_key_id) == ("rec-42", "sk_1")
    assert (header.plaintext_size, header.chunk_size, header.chunk_count) == (200, SMALL, 4)
    assert header.content_type == "audio/wav"


@pytest.mark.clause("management.safety")
def test_every_single_bit_flip_is_detected() -> None:
    plaintext = os.urandom(2 * SMALL + 10)
    blob, key = make(plaintext)
    for position in range(len(blob)):
        for bit in (0x01, 0x80):
            tampered = bytearray(blob)
            tampered[position] ^= bit
            with pytest.raises(IntegrityError):
                open_sealed(bytes(tampered), key)


def test_every_truncation_and_appended_garbage_is_detected() -> None:
    blob, key = make(os.urandom(2 * SMALL + 10))
    for length in range(len(blob)):
        with pytest.raises(IntegrityError):
            open_sealed(blob[:length], key)
    for extra in (b"\x00", os.urandom(TAG_SIZE), os.urandom(SMALL + TAG_SIZE)):
        with pytest.raises(IntegrityError, match="truncated or extended"):
            open_sealed(blob + extra, key)


def test_whole_trailing_chunk_cut_is_detected_even_when_header_is_rewritten() -> None:
    # Drop the last chunk AND rewrite the header to claim fewer chunks: the header
    # digest changes, so the surviving chunks no longer authenticate.
    plaintext = os.urandom(3 * SMALL)
    blob, key = make(plaintext)
    header, header_len = parse_header(blob)
    body = json.loads(blob[PREFIX_SIZE:header_len])
    body["plaintext_size"], body["chunk_count"] = 2 * SMALL, 2
    new_body = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    new_prefix = struct.pack(">4sBBHII", b"CVLT", 2, 0, 0, len(new_body), 0)
    _, pieces = chunks_of(blob)
    forged = new_prefix + new_body + pieces[0] + pieces[1]
    with pytest.raises(IntegrityError, match="chunk 0"):
        open_sealed(forged, key)


@pytest.mark.clause("management.safety")
def test_chunk_swap_drop_and_duplicate_are_detected() -> None:
    blob, key = make(os.urandom(4 * SMALL))
    head, pieces = chunks_of(blob)
    swapped = head + pieces[1] + pieces[0] + pieces[2] + pieces[3]
    dropped_middle = head + pieces[0] + pieces[2] + pieces[3]
    dropped_last = head + pieces[0] + pieces[1] + pieces[2]
    duplicated = head + pieces[0] + pieces[0] + pieces[2] + pieces[3]
    last_moved = head + pieces[0] + pieces[1] + pieces[3] + pieces[2]
    for forged in (swapped, dropped_middle, dropped_last, duplicated, last_moved):
        with pytest.raises(IntegrityError):
            open_sealed(forged, key)


def test_header_edits_are_detected() -> None:
    blob, key = make(os.urandom(2 * SMALL))
    header, header_len = parse_header(blob)
    body = json.loads(blob[PREFIX_SIZE:header_len])
    for field, value in (
        ("recording_ref", "rec-2"),
        ("content_type", "audio/x-other"),
        ("subject_key_id", "sk_2"),
    ):
        edited = dict(body, **{field: value})
        raw = json.dumps(edited, sort_keys=True, separators=(",", ":")).encode()
        forged = struct.pack(">4sBBHII", b"CVLT", 2, 0, 0, len(raw), 0) + raw + blob[header_len:]
        with pytest.raises(IntegrityError):
            open_sealed(forged, key)


def test_splicing_between_recordings_is_detected_even_under_the_same_data_key() -> None:
    # Worst case: two recordings (wrongly) sealed under one data key, same size.
    key = envelope.new_data_key()
    blob_a, _ = make(os.urandom(3 * SMALL), recording_id="rec-a", data_key=key)
    blob_b, _ = make(os.urandom(3 * SMALL), recording_id="rec-b", data_key=key)
    head_a, pieces_a = chunks_of(blob_a)
    head_b, pieces_b = chunks_of(blob_b)
    for forged in (
        head_a + b"".join(pieces_b),  # header of A, audio of B
        head_a + pieces_a[0] + pieces_b[1] + pieces_a[2],  # one chunk of B in A
        head_b + b"".join(pieces_a),
    ):
        with pytest.raises(IntegrityError):
            open_sealed(forged, key)


def test_wrong_data_key_is_an_integrity_error() -> None:
    blob, _ = make(b"hello")
    with pytest.raises(IntegrityError, match="chunk 0"):
        open_sealed(blob, envelope.new_data_key())


def test_data_key_wrap_binds_recording_and_subject_key() -> None:
    subject_key, data_key = os.urandom(32), envelope.new_data_key()
    wrapped = wrap_data_key(subject_key, data_key, recording_ref="rec-1", subject_key_id="sk_1")
    assert unwrap_data_key(subject_key, wrapped, recording_ref="rec-1", subject_key_id="sk_1") == (
        data_key
    )
    bad_cases = [
        (subject_key, wrapped, "rec-2", "sk_1"),
        (subject_key, wrapped, "rec-1", "sk_2"),
        (os.urandom(32), wrapped, "rec-1", "sk_1"),
        (subject_key, wrapped[:-1], "rec-1", "sk_1"),
        (subject_key, bytes([wrapped[0] ^ 1]) + wrapped[1:], "rec-1", "sk_1"),
    ]
    for key, blob, rid, sid in bad_cases:
        with pytest.raises(IntegrityError):
            unwrap_data_key(key, blob, recording_ref=rid, subject_key_id=sid)


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"CVLT",
        b"NOPE" + bytes(12),
        struct.pack(">4sBBHII", b"CVLT", 2, 0, 0, 10, 0),  # unknown version
        struct.pack(">4sBBHII", b"CVLT", 1, 1, 0, 10, 0),  # reserved flag set
        struct.pack(">4sBBHII", b"CVLT", 1, 0, 0, 0, 0),  # empty header
        struct.pack(">4sBBHII", b"CVLT", 1, 0, 0, 10**9, 0),  # absurd length
        struct.pack(">4sBBHII", b"CVLT", 1, 0, 0, 10, 0) + b"{",  # short
        struct.pack(">4sBBHII", b"CVLT", 1, 0, 0, 5, 0) + b"nope!",  # not JSON
        struct.pack(">4sBBHII", b"CVLT", 1, 0, 0, 2, 0) + b"[]",  # not an object
        struct.pack(">4sBBHII", b"CVLT", 1, 0, 0, 2, 0) + b"{}",  # fields missing
    ],
)
def test_parse_header_rejects_garbage(garbage: bytes) -> None:
    with pytest.raises(IntegrityError):
        parse_header(garbage)
    with pytest.raises(IntegrityError):
        open_sealed(garbage, envelope.new_data_key())


def test_parse_header_rejects_inconsistent_sizes() -> None:
    blob, _ = make(os.urandom(100))
    header, header_len = parse_header(blob)
    body = json.loads(blob[PREFIX_SIZE:header_len])
    for edit in (
        {"chunk_count": 3},
        {"chunk_size": 0},
        {"plaintext_size": -1},
        {"cipher": "ROT13"},
    ):
        raw = json.dumps(dict(body, **edit)).encode()
        forged = struct.pack(">4sBBHII", b"CVLT", 2, 0, 0, len(raw), 0) + raw
        with pytest.raises(IntegrityError):
            parse_header(forged)


def range_positions(size: int, chunk: int) -> list[int]:
    positions = {0, size - 1}
    for boundary in range(0, size + 1, chunk):
        positions.update({boundary - 1, boundary, boundary + 1})
    return sorted(p for p in positions if 0 <= p < size)


@pytest.mark.parametrize("size", [1, SMALL, 5 * SMALL + 7])
def test_range_reads_equal_the_plaintext_slice(size: int) -> None:
    plaintext = os.urandom(size)
    blob, key = make(plaintext)
    header, header_len = parse_header(blob)
    positions = range_positions(size, SMALL)
    rng = random.Random(7)
    pairs = [(s, e) for s in positions for e in positions if s <= e]
    pairs += [tuple(sorted(rng.sample(range(size), 2))) for _ in range(50)] if size > 1 else []
    for start, end in pairs:
        cs, ce, first = ciphertext_span(header, header_len, start, end)
        assert first == start // SMALL
        got = open_range(header, header_len, blob[cs : ce + 1], first, key, start, end)
        assert got == plaintext[start : end + 1], (start, end)


def test_range_read_decrypts_only_the_needed_chunks() -> None:
    blob, key = make(os.urandom(10 * SMALL))
    header, header_len = parse_header(blob)
    cs, ce, first = ciphertext_span(header, header_len, 3 * SMALL + 5, 4 * SMALL + 1)
    assert (first, ce - cs + 1) == (3, 2 * (SMALL + TAG_SIZE))
    assert cs == header_len + 3 * (SMALL + TAG_SIZE)


def test_range_read_detects_tampering_and_short_reads() -> None:
    plaintext = os.urandom(4 * SMALL)
    blob, key = make(plaintext)
    header, header_len = parse_header(blob)
    cs, ce, first = ciphertext_span(header, header_len, SMALL, 2 * SMALL + 3)
    span = blob[cs : ce + 1]
    for position in range(0, len(span), 7):
        tampered = bytearray(span)
        tampered[position] ^= 0x10
        with pytest.raises(IntegrityError):
            open_range(header, header_len, bytes(tampered), first, key, SMALL, 2 * SMALL + 3)
    with pytest.raises(IntegrityError, match="range read returned"):
        open_range(header, header_len, span[:-1], first, key, SMALL, 2 * SMALL + 3)
    # the right bytes but taken from the wrong chunk position
    other = blob[cs + SMALL + TAG_SIZE : ce + 1 + SMALL + TAG_SIZE]
    with pytest.raises(IntegrityError):
        open_range(header, header_len, other, first, key, SMALL, 2 * SMALL + 3)


@pytest.mark.parametrize("start,end", [(-1, 3), (5, 4), (0, 4 * SMALL), (4 * SMALL, 4 * SMALL)])
def test_range_outside_the_recording_is_a_value_error(start: int, end: int) -> None:
    blob, _ = make(os.urandom(4 * SMALL))
    header, header_len = parse_header(blob)
    with pytest.raises(ValueError, match="outside"):
        ciphertext_span(header, header_len, start, end)


def test_range_of_an_empty_recording_is_a_value_error() -> None:
    blob, _ = make(b"")
    header, header_len = parse_header(blob)
    with pytest.raises(ValueError):
        ciphertext_span(header, header_len, 0, 0)


def test_read_header_fetches_a_long_header_in_two_reads() -> None:
    data_key = envelope.new_data_key()
    blob = seal(
        "rec-1",
        b"abc",
        data_key=data_key,
        wrapped_data_key=b"w" * 60,
        subject_key_id="sk_1",
        content_type="audio/" + "x" * 6000,
    )
    calls: list[tuple[int, int]] = []

    def fetch(start: int, end: int) -> bytes:
        calls.append((start, end))
        return blob[start : end + 1]

    header, header_len = read_header(fetch)
    assert header.content_type.endswith("x" * 10) and len(calls) == 2
    assert header_len > 4096 and calls[1] == (4096, header_len - 1)


def test_read_header_of_a_tiny_object_takes_one_read() -> None:
    blob, _ = make(b"")
    calls: list[tuple[int, int]] = []

    def fetch(start: int, end: int) -> bytes:
        calls.append((start, end))
        return blob[start : end + 1]

    assert read_header(fetch)[0].plaintext_size == 0 and len(calls) == 1


def test_streaming_seal_and_open() -> None:
    plaintext = os.urandom(5 * SMALL + 3)
    key = envelope.new_data_key()
    pieces = list(
        seal_chunks(
            "rec-1",
            io.BytesIO(plaintext),
            size=len(plaintext),
            data_key=key,
            wrapped_data_key=b"w" * 60,
            subject_key_id="sk_1",
            chunk_size=SMALL,
        )
    )
    assert len(pieces) == 1 + 6  # header, then one piece per chunk
    blob = b"".join(pieces)
    assert open_sealed(blob, key) == plaintext
    assert b"".join(open_chunks(io.BytesIO(blob), key)) == plaintext
    odd = [blob[i : i + 13] for i in range(0, len(blob), 13)]
    assert b"".join(open_chunks(iter(odd), key)) == plaintext


def test_streaming_seal_rejects_wrong_sizes() -> None:
    kwargs = dict(data_key=envelope.new_data_key(), wrapped_data_key=b"w", subject_key_id="sk_1")
    with pytest.raises(ValueError, match="stream ended"):
        b"".join(seal_chunks("r", io.BytesIO(b"abc"), size=10, chunk_size=SMALL, **kwargs))
    with pytest.raises(ValueError, match="more than"):
        b"".join(seal_chunks("r", io.BytesIO(b"abc"), size=2, chunk_size=SMALL, **kwargs))
    with pytest.raises(ValueError, match="needs its size"):
        b"".join(seal_chunks("r", io.BytesIO(b"abc"), **kwargs))
    with pytest.raises(ValueError, match="chunk_size"):
        seal("r", b"abc", chunk_size=1, **kwargs)
    with pytest.raises(ValueError, match="32 bytes"):
        seal("r", b"abc", data_key=b"short", wrapped_data_key=b"w", subject_key_id="sk_1")
    with pytest.raises(ValueError, match="empty"):
        seal("", b"abc", **kwargs)


def test_streaming_open_detects_truncation_and_trailing_bytes() -> None:
    plaintext = os.urandom(3 * SMALL)
    blob, key = make(plaintext)
    stream = open_chunks(io.BytesIO(blob[:-5]), key)
    assert next(stream) == plaintext[:SMALL]  # authentic chunks flow until the defect
    with pytest.raises(IntegrityError, match="truncated"):
        list(stream)
    with pytest.raises(IntegrityError, match="trailing"):
        list(open_chunks(io.BytesIO(blob + b"x"), key))
    with pytest.raises(IntegrityError):  # bytes input: checked before anything is yielded
        next(open_chunks(blob[:-5], key))
