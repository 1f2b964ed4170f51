"""Master keyrings: the top of the key hierarchy (master key -> subject key -> data key).

A :class:`Keyring` wraps and unwraps per-subject keys, signs small payloads (bearer
tokens, deletion receipts) and pseudonymizes customer identifiers. What a caller may
rely on:

- ``wrap_key`` returns a self-describing blob naming the master key that wrapped it;
  ``unwrap_key`` keeps working for blobs made under any earlier master key after
  :meth:`Keyring.rotate`, and raises :class:`~storage.errors.KeyringError` on a wrong
  encryption context, a tampered blob or an unknown master key. Never returns garbage.
- ``pseudonymize`` is stable for the life of the keyring: rotation does not change it.
- ``sign`` returns ``"<signing-key-id>.<urlsafe-b64 signature>"``; ``verify`` accepts a
  signature from any signing key that is not retired and returns ``False`` (never
  raises) for anything else.

Backends are found by URL scheme through :data:`BACKENDS` (scheme ->
``"module:Class"``; this module never imports them): ``file:///path`` opens
:class:`storage.crypto.local.LocalKeyring` (the embedded default); ``kms://key-id``
opens :class:`storage.crypto.kms.KmsKeyring` (AWS KMS). A backend class provides
``from_url(url, **options)``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import importlib
import json
import struct
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from callvault.errors import ConfigError
from storage.errors import KeyringError

__all__ = [
    "BACKENDS",
    "Keyring",
    "open_keyring",
    "canonical_context",
    "pseudonym",
    "recording_digest",
    "hmac_signature",
    "split_signature",
    "hmac_matches",
]

#: URL scheme -> ``"module:Class"`` of the keyring backend that serves it.
BACKENDS: dict[str, str] = {
    "file": "storage.crypto.local:LocalKeyring",
    "kms": "storage.crypto.kms:KmsKeyring",
}
_PSEUDONYM_DOMAIN = b"callvault-pseudonym/1"
# Not a tenant name (tenants are [a-z0-9-]): never collides with a customer pseudonym.
_RECORDING_DOMAIN = "callvault:recording-ref"


@runtime_checkable
class Keyring(Protocol):
    """The master keyring: wraps subject keys, signs, pseudonymizes."""

    @property
    def current_key_id(self) -> str:
        """Id of the master key new wraps use."""
        ...

    def wrap_key(self, plaintext: bytes, context: Mapping[str, str]) -> bytes:
        """Encrypt ``plaintext`` (a key) under the current master key, binding ``context``.

        Raises:
            KeyringError: the key could not be wrapped (bad context, backend failure).
        """
        ...

    def unwrap_key(self, blob: bytes, context: Mapping[str, str]) -> bytes:
        """Decrypt a blob made by :meth:`wrap_key` with the same ``context``.

        Raises:
            KeyringError: wrong context, tampered or malformed blob, unknown master key.
        """
        ...

    def pseudonymize(self, tenant: str, value: str) -> str:
        """HMAC-SHA256 hex of ``value`` within ``tenant``; stable across rotation.

        Raises:
            KeyringError: ``tenant`` or ``value`` is empty.
        """
        ...

    def sign(self, payload: bytes) -> str:
        """``"<signing-key-id>.<urlsafe-b64 signature>"`` with the current signing key."""
        ...

    def verify(self, payload: bytes, signature: str) -> bool:
        """True if ``signature`` was made over ``payload`` by a non-retired signing key."""
        ...

    def rotate(self) -> str:
        """Add a new master key and signing key, make them current, return the master id.

        Raises:
            KeyringError: the new keys could not be stored.
        """
        ...

    def master_key_created_at(self) -> datetime:
        """When the current master key was created (UTC)."""
        ...


def pseudonym(secret: bytes, tenant: str, value: str) -> str:
    """HMAC-SHA256 pseudonym of ``value`` within ``tenant`` (shared by every keyring,
    so a move between keyrings that keep the same secret keeps every pseudonym).

    Raises:
        KeyringError: an empty tenant or value, or one with a lone surrogate.
    """
    if not tenant or not value:
        raise KeyringError("pseudonymize needs a non-empty tenant and value")
    try:
        t, v = tenant.encode(), value.encode()
    except UnicodeEncodeError:
        raise KeyringError(
            "pseudonymize needs text encodable as UTF-8 (no lone surrogates)"
        ) from None
    # Length prefixes keep ("ab", "c") and ("a", "bc") apart.
    message = _PSEUDONYM_DOMAIN + struct.pack(">I", len(t)) + t + struct.pack(">I", len(v)) + v
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def recording_digest(keyring: Keyring, recording_id: str) -> str:
    """The keyed digest that names a recording where its id must not appear: a sealed
    object's header (format v2), and, shortened to ``r`` + 11 hex digits, log lines and
    DLQ headers (``streams.refs.recording_ref``; ``callvault ref`` prints it).

    Raises:
        KeyringError: an empty or unencodable recording id.
    """
    return keyring.pseudonymize(_RECORDING_DOMAIN, recording_id)


def hmac_signature(key_id: str, key: bytes, payload: bytes) -> str:
    """``"<key_id>.<urlsafe base64 HMAC-SHA256>"``, the form ``Keyring.sign`` returns."""
    mac = hmac.new(key, payload, hashlib.sha256).digest()
    return f"{key_id}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode('ascii')}"


def split_signature(signature: object) -> tuple[str, bytes] | None:
    """``(key_id, mac)`` of a signature string, or None when it is malformed."""
    if not isinstance(signature, str) or signature.count(".") != 1:
        return None
    key_id, encoded = signature.split(".")
    try:
        return key_id, base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (binascii.Error, ValueError):
        return None


def hmac_matches(key: bytes, payload: bytes, mac: bytes) -> bool:
    """Constant-time check of ``mac`` over ``payload``."""
    return hmac.compare_digest(hmac.new(key, payload, hashlib.sha256).digest(), mac)


def canonical_context(context: Mapping[str, str]) -> bytes:
    """The bytes a context is bound as: sorted-key compact JSON (UTF-8).

    Raises:
        KeyringError: a key or value is not a string.
    """
    for name, value in context.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise KeyringError(
                f"encryption context entries must be strings, got {name!r}: {value!r}"
            )
    return json.dumps(dict(context), sort_keys=True, separators=(",", ":")).encode()


def open_keyring(
    url: str,
    *,
    region: str = "us-east-1",
    endpoint: str | None = None,
    secrets_path: Path | None = None,
) -> Keyring:
    """Open the keyring named by ``url`` (``CALLVAULT_KEYRING``).

    ``file:///abs/path/master.json`` opens (creating if needed) a local key file.
    ``kms://key-id`` (a key id, ``alias/name`` or key ARN) opens the KMS keyring
    through boto3, with ``region`` and ``endpoint`` (non-AWS KMS such as moto); its
    secrets file is ``?secrets=/abs/path`` in the URL, else ``secrets_path``.

    Raises:
        ConfigError: unsupported scheme, malformed URL, or a KMS URL without a secrets path.
        KeyringError: the local key file is unsafe, corrupt or cannot be created; KMS
            refused the key or could not be reached.
    """
    scheme = urlsplit(url).scheme if isinstance(url, str) else ""
    target = BACKENDS.get(scheme)
    if target is None:
        raise ConfigError(f"keyring URL {url!r}: expected file:///path or kms://key-id")
    module, _, name = target.partition(":")
    backend: Any = getattr(importlib.import_module(module), name)
    keyring: Keyring = backend.from_url(
        url, region=region, endpoint=endpoint, secrets_path=secrets_path
    )
    return keyring
