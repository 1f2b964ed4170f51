"""Small records sealed under the master keyring (dead-letter originals).

A dead-lettered event still holds personal data (the customer reference, a landing URI
built from a phone number); whoever can read ``callvault.dlq`` or the catalog must not
be able to read it. :func:`seal_record` encrypts it with a fresh AES-256-GCM key that
the keyring wraps (``Keyring.wrap_key``: the local master key, or one KMS ``Encrypt``),
bound to a ``purpose`` and a ``name`` (the entry id), so a sealed record moved to
another entry does not open. Format (integers big-endian)::

    b"CVSR" | u8 version (1) | u16 len(wrapped key) | wrapped key | 12-byte nonce
    | AES-256-GCM(data key, record, aad = b"callvault-sealed-record/1" | purpose | 0 | name)

Unlike recordings, these are not crypto-shredded per customer: they live as long as
their DLQ entry (see storage/README.md). Only dead letters that name no canonical
customer reference are sealed this way; the others are sealed under their customer's
subject key (:mod:`streams.dlq`), so an erasure shreds them.
"""

from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from storage.crypto.keyring import Keyring
from storage.errors import IntegrityError

__all__ = ["seal_record", "open_record", "SEALED_MAGIC"]

SEALED_MAGIC = b"CVSR"
_VERSION = 1
_DOMAIN = b"callvault-sealed-record/1"


def _context(purpose: str, name: str) -> dict[str, str]:
    return {"purpose": f"sealed-record:{purpose}", "name": name}


def _aad(purpose: str, name: str) -> bytes:
    return _DOMAIN + purpose.encode() + b"\x00" + name.encode()


def seal_record(keyring: Keyring, record: bytes, *, purpose: str, name: str) -> bytes:
    """``record`` sealed for ``(purpose, name)``.

    Raises:
        KeyringError: the keyring could not wrap the key (KeyringUnavailable: retry).
    """
    data_key = AESGCM.generate_key(bit_length=256)
    wrapped = keyring.wrap_key(data_key, _context(purpose, name))
    nonce = os.urandom(12)
    sealed = AESGCM(data_key).encrypt(nonce, bytes(record), _aad(purpose, name))
    return SEALED_MAGIC + struct.pack(">BH", _VERSION, len(wrapped)) + wrapped + nonce + sealed


def open_record(keyring: Keyring, blob: bytes, *, purpose: str, name: str) -> bytes:
    """The record :func:`seal_record` sealed for ``(purpose, name)``.

    Raises:
        IntegrityError: not a sealed record, tampered, or sealed for another name.
        KeyringError: the keyring could not unwrap its key.
    """
    view = memoryview(blob)
    if len(view) < 7 or bytes(view[:4]) != SEALED_MAGIC:
        raise IntegrityError("not a sealed record (bad magic)")
    version, wrapped_len = struct.unpack_from(">BH", view, 4)
    if version != _VERSION:
        raise IntegrityError(f"unsupported sealed record version {version}")
    start = 7 + wrapped_len
    if len(view) < start + 12 + 16:
        raise IntegrityError("sealed record is truncated")
    data_key = keyring.unwrap_key(bytes(view[7:start]), _context(purpose, name))
    nonce = bytes(view[start : start + 12])
    try:
        return AESGCM(data_key).decrypt(nonce, bytes(view[start + 12 :]), _aad(purpose, name))
    except InvalidTag as exc:
        raise IntegrityError("sealed record failed authentication (tampered or moved)") from exc
