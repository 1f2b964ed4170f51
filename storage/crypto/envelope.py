"""The encrypted object format: a header plus AES-256-GCM chunks (see storage/README.md).

Byte layout (all integers big-endian)::

    prefix   16 bytes  b"CVLT" | version u8 (=2; 1 still read) | flags u8 (=0)
                       | reserved u16 (=0) | header_len u32 | reserved u32 (=0)
    header   header_len bytes of UTF-8 JSON (sorted keys, compact), see EnvelopeHeader
    chunks   chunk_count x (ciphertext of one plaintext chunk + 16-byte GCM tag)

Version 2 names the recording by ``recording_ref``, a keyed digest of its id
(:func:`storage.crypto.keyring.recording_digest`), so object storage never holds a
recording id; version 1 objects (``recording_id`` in clear) are still read. The
envelope treats the value as an opaque binding either way.

Every plaintext chunk is ``chunk_size`` bytes except the last, which holds the rest
(0 < size <= chunk_size, or 0 for an empty recording, which still has one chunk).
Chunk ``i`` uses nonce ``nonce_base (8 random bytes from the header) || u32(i)`` and
associated data ``sha256(prefix + header) || u32(i) || u8(is_last)``, under a data
key that is fresh and random for every recording. So a flipped bit, a reordered,
dropped or duplicated chunk, a truncated object, appended bytes, an edited header
or a chunk or header spliced in from another recording all raise
:class:`~storage.errors.IntegrityError`; :func:`open_sealed` and :func:`open_range`
never return bytes they could not authenticate.

The data key travels in the header wrapped by the subject key
(:func:`wrap_data_key`), bound to the recording reference and the subject key id.

Streaming (:func:`seal_chunks`, :func:`open_chunks`) authenticates every chunk
before yielding it; a defect later in the object (truncation, trailing bytes) is
raised when the reader reaches it, after earlier authentic chunks were yielded.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from storage.errors import IntegrityError

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "READ_VERSIONS",
    "PREFIX_SIZE",
    "TAG_SIZE",
    "DEFAULT_CHUNK_SIZE",
    "MIN_CHUNK_SIZE",
    "MAX_CHUNK_SIZE",
    "MAX_HEADER_SIZE",
    "EnvelopeHeader",
    "SupportsRead",
    "wrap_data_key",
    "unwrap_data_key",
    "new_data_key",
    "build_header",
    "header_length",
    "parse_header",
    "read_header",
    "seal",
    "seal_chunks",
    "read_exactly",
    "PieceReader",
    "open_sealed",
    "open_chunks",
    "ciphertext_span",
    "open_range",
]

MAGIC = b"CVLT"
FORMAT_VERSION = 2
#: Versions read: 1 (recording id in clear) and 2 (keyed recording reference).
READ_VERSIONS = frozenset({1, 2})
_BINDING_FIELD = {1: "recording_id", 2: "recording_ref"}
PREFIX_SIZE = 16
TAG_SIZE = 16
DEFAULT_CHUNK_SIZE = 64 * 1024
MIN_CHUNK_SIZE = 16
MAX_CHUNK_SIZE = 16 * 1024 * 1024
MAX_HEADER_SIZE = 64 * 1024
CIPHER = "AES-256-GCM"
KEY_SIZE = 32
_NONCE_BASE_SIZE = 8
_MAX_CHUNKS = 2**32
_PREFIX = struct.Struct(">4sBBHII")
_AAD_TAIL = struct.Struct(">IB")
_DATA_KEY_DOMAIN = b"callvault-data-key/1"
_HEADER_FETCH_SIZE = 4096


@runtime_checkable
class SupportsRead(Protocol):
    """Anything with ``read(n) -> bytes`` (a file, boto3's StreamingBody)."""

    def read(self, size: int = ..., /) -> bytes: ...


@dataclass(frozen=True)
class EnvelopeHeader:
    """The parsed header of a sealed object.

    ``recording_ref`` is what the object is bound to: in version 2 a keyed digest of
    the recording id, in version 1 the recording id itself (``version`` says which).
    """

    recording_ref: str
    subject_key_id: str
    wrapped_data_key: bytes
    nonce_base: bytes
    chunk_size: int
    plaintext_size: int
    chunk_count: int
    content_type: str
    digest: bytes  # sha256 over prefix + header bytes; bound into every chunk
    cipher: str = CIPHER
    version: int = FORMAT_VERSION

    @property
    def label(self) -> str:
        """How errors name the object: ``r`` + 11 hex digits of a v2 reference (the
        keyed reference logs use), never a v1 object's recording id."""
        return f"r{self.recording_ref[:11]}" if self.version >= 2 else "a v1 object"

    def chunk_plain_size(self, index: int) -> int:
        """Plaintext length of chunk ``index``."""
        if index < self.chunk_count - 1:
            return self.chunk_size
        return self.plaintext_size - self.chunk_size * (self.chunk_count - 1)

    def sealed_size(self, header_len: int) -> int:
        """Exact byte length of the whole sealed object."""
        return header_len + self.plaintext_size + TAG_SIZE * self.chunk_count


def _chunk_count(plaintext_size: int, chunk_size: int) -> int:
    return max(1, -(-plaintext_size // chunk_size))


def new_data_key() -> bytes:
    """A fresh random 256-bit data key (one per recording, never reused)."""
    return AESGCM.generate_key(bit_length=256)


def _data_key_aad(recording_ref: str, subject_key_id: str) -> bytes:
    rid, sid = recording_ref.encode(), subject_key_id.encode()
    return _DATA_KEY_DOMAIN + struct.pack(">I", len(rid)) + rid + struct.pack(">I", len(sid)) + sid


def wrap_data_key(
    subject_key: bytes, data_key: bytes, *, recording_ref: str, subject_key_id: str
) -> bytes:
    """Encrypt ``data_key`` under ``subject_key``: 12-byte nonce || ciphertext+tag.

    Raises:
        ValueError: a key is not 32 bytes.
    """
    if len(data_key) != KEY_SIZE or len(subject_key) != KEY_SIZE:
        raise ValueError("subject and data keys must be 32 bytes (AES-256)")
    nonce = os.urandom(12)
    aad = _data_key_aad(recording_ref, subject_key_id)
    return nonce + AESGCM(subject_key).encrypt(nonce, data_key, aad)


def unwrap_data_key(
    subject_key: bytes, wrapped: bytes, *, recording_ref: str, subject_key_id: str
) -> bytes:
    """Reverse :func:`wrap_data_key`.

    Raises:
        IntegrityError: wrong subject key, recording reference or subject key id, or
            tampering.
    """
    if len(wrapped) != 12 + KEY_SIZE + TAG_SIZE:
        raise IntegrityError("wrapped data key has a wrong length")
    try:
        return AESGCM(subject_key).decrypt(
            wrapped[:12], wrapped[12:], _data_key_aad(recording_ref, subject_key_id)
        )
    except (InvalidTag, ValueError) as exc:
        raise IntegrityError(
            "data key does not unwrap (header tampered or spliced from another recording)"
        ) from exc


# -- header ------------------------------------------------------------------------------


def build_header(
    *,
    recording_ref: str,
    subject_key_id: str,
    wrapped_data_key: bytes,
    plaintext_size: int,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    content_type: str = "audio/wav",
    nonce_base: bytes | None = None,
    version: int = FORMAT_VERSION,
) -> tuple[EnvelopeHeader, bytes]:
    """The header for a new object and its bytes (prefix included). ``version=1``
    writes the old layout (``recording_ref`` stored as ``recording_id``), for tests and
    tools that must produce what older callvaults wrote.

    Raises:
        ValueError: empty ids, a chunk size out of range, a negative size, too many
            chunks, an unknown version.
    """
    if not recording_ref or not subject_key_id:
        raise ValueError("recording_ref and subject_key_id must not be empty")
    if version not in READ_VERSIONS:
        raise ValueError(f"unknown sealed object version {version}")
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk_size must be in [{MIN_CHUNK_SIZE}, {MAX_CHUNK_SIZE}]")
    if plaintext_size < 0:
        raise ValueError("plaintext_size must not be negative")
    chunk_count = _chunk_count(plaintext_size, chunk_size)
    if chunk_count >= _MAX_CHUNKS:
        raise ValueError("too many chunks; use a larger chunk_size")
    nonce_base = os.urandom(_NONCE_BASE_SIZE) if nonce_base is None else nonce_base
    body = json.dumps(
        {
            _BINDING_FIELD[version]: recording_ref,
            "subject_key_id": subject_key_id,
            "wrapped_data_key": base64.b64encode(wrapped_data_key).decode("ascii"),
            "nonce_base": base64.b64encode(nonce_base).decode("ascii"),
            "chunk_size": chunk_size,
            "plaintext_size": plaintext_size,
            "chunk_count": chunk_count,
            "content_type": content_type,
            "cipher": CIPHER,
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    if len(body) > MAX_HEADER_SIZE:
        raise ValueError("header too large (ids or content type too long)")
    raw = _PREFIX.pack(MAGIC, version, 0, 0, len(body), 0) + body
    header = EnvelopeHeader(
        recording_ref=recording_ref,
        subject_key_id=subject_key_id,
        wrapped_data_key=wrapped_data_key,
        nonce_base=nonce_base,
        chunk_size=chunk_size,
        plaintext_size=plaintext_size,
        chunk_count=chunk_count,
        content_type=content_type,
        digest=hashlib.sha256(raw).digest(),
        version=version,
    )
    return header, raw


def header_length(prefix: bytes | memoryview) -> int:
    """Total bytes of prefix + header, read from the first :data:`PREFIX_SIZE` bytes.

    Raises:
        IntegrityError: not a callvault object, unknown version, or an absurd length.
    """
    if len(prefix) < PREFIX_SIZE:
        raise IntegrityError(f"object too short for a header ({len(prefix)} bytes)")
    magic, version, flags, reserved, body_len, reserved2 = _PREFIX.unpack_from(prefix)
    if magic != MAGIC:
        raise IntegrityError("not a callvault sealed object (bad magic)")
    if version not in READ_VERSIONS:
        raise IntegrityError(f"unsupported sealed object version {version}")
    if flags or reserved or reserved2:
        raise IntegrityError("sealed object prefix has non-zero reserved bits")
    if not 0 < body_len <= MAX_HEADER_SIZE:
        raise IntegrityError(f"sealed object header length {body_len} is out of range")
    return PREFIX_SIZE + int(body_len)


def _b64field(fields: dict[str, object], name: str) -> bytes:
    value = fields[name]
    if not isinstance(value, str):
        raise TypeError(name)
    return base64.b64decode(value, validate=True)


def parse_header(prefix: bytes | memoryview) -> tuple[EnvelopeHeader, int]:
    """Parse the header at the start of ``prefix`` (which may hold more bytes).

    Returns the header and its total length (prefix included): chunk data starts there.
    The header is only proven authentic when a chunk decrypts under it.

    Raises:
        IntegrityError: short input, garbage, or an inconsistent header.
    """
    total = header_length(prefix)
    if len(prefix) < total:
        raise IntegrityError(f"object too short: header needs {total} bytes, got {len(prefix)}")
    raw = bytes(prefix[:total])
    version = raw[4]
    binding = _BINDING_FIELD[version]
    try:
        fields = json.loads(raw[PREFIX_SIZE:])
        if not isinstance(fields, dict):
            raise TypeError("header is not an object")
        strings = {k: fields[k] for k in (binding, "subject_key_id", "content_type", "cipher")}
        ints = {k: fields[k] for k in ("chunk_size", "plaintext_size", "chunk_count")}
        wrapped = _b64field(fields, "wrapped_data_key")
        nonce_base = _b64field(fields, "nonce_base")
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise IntegrityError(f"sealed object header is malformed: {exc!r}") from exc
    if not all(isinstance(v, str) and v for k, v in strings.items() if k != "content_type"):
        raise IntegrityError("sealed object header has empty or non-string ids")
    if not all(type(v) is int for v in ints.values()):
        raise IntegrityError("sealed object header has non-integer sizes")
    if strings["cipher"] != CIPHER or len(nonce_base) != _NONCE_BASE_SIZE:
        raise IntegrityError(f"sealed object uses an unknown cipher {strings['cipher']!r}")
    chunk_size, plaintext_size, chunk_count = (
        ints["chunk_size"],
        ints["plaintext_size"],
        ints["chunk_count"],
    )
    if not (
        MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE
        and plaintext_size >= 0
        and chunk_count == _chunk_count(plaintext_size, chunk_size)
    ):
        raise IntegrityError("sealed object header sizes are inconsistent")
    header = EnvelopeHeader(
        recording_ref=strings[binding],
        subject_key_id=strings["subject_key_id"],
        wrapped_data_key=wrapped,
        nonce_base=nonce_base,
        chunk_size=chunk_size,
        plaintext_size=plaintext_size,
        chunk_count=chunk_count,
        content_type=str(strings["content_type"]),
        digest=hashlib.sha256(raw).digest(),
        version=version,
    )
    return header, total


def read_header(fetch: Callable[[int, int], bytes]) -> tuple[EnvelopeHeader, int]:
    """Read and parse the header through ``fetch(start, end_inclusive)``.

    ``fetch`` may return fewer bytes than asked only at the end of the object (like an
    HTTP Range read). One call usually suffices; a second fetches a long header's rest.

    Raises:
        IntegrityError: the object is not a valid sealed object.
    """
    head = fetch(0, _HEADER_FETCH_SIZE - 1)
    total = header_length(head)
    if len(head) < total:
        head = bytes(head) + fetch(len(head), total - 1)
    return parse_header(head)


# -- chunks ------------------------------------------------------------------------------


def _nonce(header: EnvelopeHeader, index: int) -> bytes:
    return header.nonce_base + index.to_bytes(4, "big")


def _aad(header: EnvelopeHeader, index: int) -> bytes:
    return header.digest + _AAD_TAIL.pack(index, index == header.chunk_count - 1)


def _check_data_key(data_key: bytes) -> AESGCM:
    if len(data_key) != KEY_SIZE:
        raise ValueError("data key must be 32 bytes (AES-256)")
    return AESGCM(data_key)


def _decrypt_chunk(
    aead: AESGCM, header: EnvelopeHeader, index: int, sealed: bytes | memoryview
) -> bytes:
    try:
        return aead.decrypt(_nonce(header, index), sealed, _aad(header, index))
    except InvalidTag as exc:
        raise IntegrityError(
            f"recording {header.label}: chunk {index} of {header.chunk_count} failed "
            "authentication (tampered, reordered, spliced, or wrong key)"
        ) from exc


def seal_chunks(
    recording_ref: str,
    plaintext: bytes | bytearray | memoryview | SupportsRead,
    *,
    data_key: bytes,
    wrapped_data_key: bytes,
    subject_key_id: str,
    size: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    content_type: str = "audio/wav",
    version: int = FORMAT_VERSION,
) -> Iterator[bytes]:
    """Yield the sealed object piece by piece: the header, then each sealed chunk.

    ``plaintext`` is a bytes-like object or a readable stream; a stream needs ``size``
    (the header records it up front).

    Raises:
        ValueError: bad arguments, or the stream ended before ``size`` bytes.
    """
    aead = _check_data_key(data_key)
    if isinstance(plaintext, bytes | bytearray | memoryview):
        whole = memoryview(plaintext).cast("B")
        view: memoryview | None = whole
        total = len(whole)
        if size is not None and size != total:
            raise ValueError(f"size={size} but plaintext holds {total} bytes")
        reader = None
    else:
        if size is None:
            raise ValueError("sealing a stream needs its size")
        view, total, reader = None, size, plaintext
    header, raw = build_header(
        recording_ref=recording_ref,
        subject_key_id=subject_key_id,
        wrapped_data_key=wrapped_data_key,
        plaintext_size=total,
        chunk_size=chunk_size,
        content_type=content_type,
        version=version,
    )
    yield raw
    for index in range(header.chunk_count):
        start = index * chunk_size
        length = header.chunk_plain_size(index)
        if view is not None:
            piece: bytes | memoryview = view[start : start + length]
        else:
            assert reader is not None
            piece = read_exactly(reader, length)
            if len(piece) != length:
                raise ValueError(f"stream ended after {start + len(piece)} of {total} bytes")
        yield aead.encrypt(_nonce(header, index), piece, _aad(header, index))
    if reader is not None and reader.read(1):
        raise ValueError(f"stream holds more than the declared {total} bytes")


def read_exactly(reader: SupportsRead, length: int) -> bytes:
    """``length`` bytes from ``reader`` (fewer only at its end), however it splits them."""
    data = reader.read(length)
    if len(data) == length or not data:
        return data
    parts = [data]
    got = len(data)
    while got < length:
        more = reader.read(length - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def seal(
    recording_ref: str,
    plaintext: bytes | bytearray | memoryview,
    *,
    data_key: bytes,
    wrapped_data_key: bytes,
    subject_key_id: str,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    content_type: str = "audio/wav",
    version: int = FORMAT_VERSION,
) -> bytes:
    """The whole sealed object for ``plaintext`` (see :func:`seal_chunks`; ``version=1``
    only to produce what older callvaults wrote).

    Raises:
        ValueError: bad arguments (empty ids, key size, chunk size).
    """
    return b"".join(
        seal_chunks(
            recording_ref,
            plaintext,
            data_key=data_key,
            wrapped_data_key=wrapped_data_key,
            subject_key_id=subject_key_id,
            chunk_size=chunk_size,
            content_type=content_type,
            version=version,
        )
    )


def open_sealed(
    blob: bytes | memoryview, data_key: bytes, *, header: tuple[EnvelopeHeader, int] | None = None
) -> bytes:
    """Decrypt a whole sealed object; all or nothing.

    ``header`` may pass an already parsed ``parse_header(blob)`` result.

    Raises:
        IntegrityError: any tampering, truncation, trailing bytes or a wrong data key.
    """
    view = memoryview(blob).cast("B")
    parsed, header_len = header if header is not None else parse_header(view)
    _check_length(view, parsed, header_len)
    return b"".join(_open_chunk_views(view[header_len:], parsed, 0, parsed.chunk_count, data_key))


def _open_chunk_views(
    body: memoryview, header: EnvelopeHeader, first: int, stop: int, data_key: bytes
) -> Iterator[bytes]:
    aead = _check_data_key(data_key)
    offset = 0
    for index in range(first, stop):
        size = header.chunk_plain_size(index) + TAG_SIZE
        yield _decrypt_chunk(aead, header, index, body[offset : offset + size])
        offset += size


def open_chunks(
    source: bytes | memoryview | SupportsRead | Iterable[bytes], data_key: bytes
) -> Iterator[bytes]:
    """Decrypt a sealed object as a stream, yielding authentic plaintext chunks in order.

    ``source`` is a bytes-like object, a readable stream, or an iterable of byte pieces
    of any size (e.g. a vault download).

    Raises:
        IntegrityError: when the reader meets tampering, truncation or trailing bytes
            (earlier chunks, each authentic, may already have been yielded).
    """
    if isinstance(source, bytes | bytearray | memoryview):
        view = memoryview(source).cast("B")
        parsed, header_len = parse_header(view)
        _check_length(view, parsed, header_len)
        yield from _open_chunk_views(view[header_len:], parsed, 0, parsed.chunk_count, data_key)
        return
    reader = _as_reader(source)
    head = read_exactly(reader, PREFIX_SIZE)
    total = header_length(head)
    head += read_exactly(reader, total - PREFIX_SIZE)
    parsed, _ = parse_header(head)
    aead = _check_data_key(data_key)
    for index in range(parsed.chunk_count):
        size = parsed.chunk_plain_size(index) + TAG_SIZE
        piece = read_exactly(reader, size)
        if len(piece) != size:
            raise IntegrityError(
                f"recording {parsed.label}: object truncated in chunk {index} "
                f"of {parsed.chunk_count}"
            )
        yield _decrypt_chunk(aead, parsed, index, piece)
    if read_exactly(reader, 1):
        raise IntegrityError(f"recording {parsed.label}: trailing bytes after last chunk")


def _check_length(view: memoryview, header: EnvelopeHeader, header_len: int) -> None:
    expected = header.sealed_size(header_len)
    if len(view) != expected:
        raise IntegrityError(
            f"recording {header.label}: object is {len(view)} bytes, header says "
            f"{expected} (truncated or extended)"
        )


class PieceReader:
    """Adapts an iterable of byte pieces to ``read(n)`` (what the sealer reads).

    A read that falls inside one piece is one copy of what it returns (the piece is
    never staged in a buffer); only a read spanning pieces joins them."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self._pieces = iter(pieces)
        self._piece = memoryview(b"")
        self._offset = 0

    def read(self, size: int = -1, /) -> bytes:
        parts: list[bytes | memoryview] = []
        wanted = size
        while size < 0 or wanted > 0:
            if self._offset >= len(self._piece):
                piece = next(self._pieces, None)
                if piece is None:
                    break
                self._piece, self._offset = memoryview(piece).cast("B"), 0
                continue
            end = len(self._piece) if size < 0 else min(len(self._piece), self._offset + wanted)
            parts.append(self._piece[self._offset : end])
            wanted -= end - self._offset
            self._offset = end
        if len(parts) == 1:
            return bytes(parts[0])
        return b"".join(parts)


def _as_reader(source: SupportsRead | Iterable[bytes]) -> SupportsRead:
    if isinstance(source, SupportsRead):
        return source
    return PieceReader(source)


# -- ranges ------------------------------------------------------------------------------


def ciphertext_span(
    header: EnvelopeHeader, header_len: int, start: int, end: int
) -> tuple[int, int, int]:
    """Ciphertext bytes needed for plaintext bytes ``[start, end]`` (inclusive).

    Returns ``(cipher_start, cipher_end_inclusive, first_chunk)``.

    Raises:
        ValueError: the range is empty or outside ``[0, plaintext_size)``.
    """
    if not 0 <= start <= end < header.plaintext_size:
        raise ValueError(
            f"byte range [{start}, {end}] is outside the recording's {header.plaintext_size} bytes"
        )
    stride = header.chunk_size + TAG_SIZE
    first, last = start // header.chunk_size, end // header.chunk_size
    cipher_start = header_len + first * stride
    cipher_end = header_len + last * stride + header.chunk_plain_size(last) + TAG_SIZE - 1
    return cipher_start, cipher_end, first


def open_range(
    header: EnvelopeHeader,
    header_len: int,
    ciphertext: bytes | memoryview,
    first_chunk: int,
    data_key: bytes,
    start: int,
    end: int,
) -> bytes:
    """Plaintext bytes ``[start, end]`` from the span :func:`ciphertext_span` named.

    Only the chunks covering the range are decrypted, each authenticated.

    Raises:
        ValueError: the range is outside the recording, or ``first_chunk`` does not match.
        IntegrityError: the span is short/long, tampered, or the data key is wrong.
    """
    cipher_start, cipher_end, first = ciphertext_span(header, header_len, start, end)
    if first != first_chunk:
        raise ValueError(f"first_chunk={first_chunk} does not match range start {start}")
    view = memoryview(ciphertext).cast("B")
    if len(view) != cipher_end - cipher_start + 1:
        raise IntegrityError(
            f"recording {header.label}: range read returned {len(view)} bytes, "
            f"expected {cipher_end - cipher_start + 1} (object truncated?)"
        )
    last = end // header.chunk_size
    plain = b"".join(_open_chunk_views(view, header, first, last + 1, data_key))
    offset = start - first * header.chunk_size
    return plain[offset : offset + end - start + 1]
