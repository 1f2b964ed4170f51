"""The AWS KMS keyring: subject keys wrapped by a KMS key (``kms://key-id``), via boto3.

:class:`KmsKeyring` implements :class:`~storage.crypto.keyring.Keyring`. What a caller may
rely on, beyond the protocol:

- ``wrap_key`` is one KMS ``Encrypt`` under the configured key (resolved once, at
  construction, to its ARN with ``DescribeKey``; an alias therefore works, and
  re-pointing the alias takes effect at the next start). The ``context`` mapping is
  passed as the KMS ``EncryptionContext`` (subject keys carry ``tenant``,
  ``subject_ref``, ``key_id``, ``purpose``): KMS refuses to decrypt under any other
  context, and CloudTrail logs it with every use.
- ``unwrap_key`` is one KMS ``Decrypt`` naming the key ARN stored in the blob, so a
  blob made under any earlier key still opens (as long as that key is not deleted or
  disabled), and a blob whose key id was edited is refused.
- ``current_key_id`` is the key ARN; ``master_key_created_at`` is its ``CreationDate``.
- ``pseudonymize``, ``sign`` and ``verify`` need local secrets (an HMAC pseudonym
  secret and HMAC signing keys). They live in a *secrets file* holding only
  KMS-protected material (see below), created on first open and decrypted once per
  open (one KMS ``Decrypt``). The pseudonym secret never changes, so pseudonyms are
  stable across rotation; :meth:`KmsKeyring.rotate` adds a signing key.
- Every botocore error (and a malformed blob or secrets file) becomes
  :class:`~storage.errors.KeyringError`; no caller sees botocore.

Rotation (see storage/README.md): callvault does not create KMS keys. To move to a new
key, create it, point ``CALLVAULT_KEYRING`` at it on every process, then run
``callvault keys rotate``: :meth:`rotate` re-encrypts the secrets file under the new
key and adds a signing key; ``KeyService.rewrap_all`` then moves every subject key
under the new key (blobs name their key, so nothing breaks in between). With the same
key, rotation only adds a signing key and re-encrypts the secrets file; the key
material behind a KMS key id is rotated by AWS itself (``EnableKeyRotation``), and old
ciphertexts stay decryptable.

Wrapped-key blob: ``b"CVKK"`` | version ``0x01`` | u8 length of the key ARN | key ARN
(ASCII) | the KMS ``CiphertextBlob``.

Secrets file (JSON, mode 0600, parent 0700; default
``$CALLVAULT_DATA_DIR/keys/kms-secrets.json``)::

    {"format": "callvault-kms-secrets/1",
     "kms_key_id": "<ARN of the KMS key that wrapped data_key>",
     "wrapped_data_key": "<b64 GenerateDataKey CiphertextBlob>",
     "nonce": "<b64 12 bytes>",
     "ciphertext": "<b64 AES-256-GCM of the inner JSON>"}

The data key is generated with ``EncryptionContext {"purpose": "callvault-keyring-secrets"}``;
the AES-GCM associated data is the format string. The inner JSON is
``{"pseudonym_secret", "current_signing_key", "signing_keys": [{"id", "key",
"created_at", "retired_at"}], "rotations": [{"at", "master_key_id"}]}``. Every process
sharing a catalog must share this file (shared volume, or a Kubernetes Secret made
from it): a second file would mean second pseudonyms.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from callvault.errors import ConfigError
from storage import _aws
from storage._aws import Failure
from storage._files import exclusive_lock
from storage.crypto.keyring import (
    canonical_context,
    hmac_matches,
    hmac_signature,
    pseudonym,
    split_signature,
)
from storage.errors import KeyringError, KeyringUnavailable

__all__ = ["KmsKeyring", "make_kms_client", "SECRETS_FORMAT", "SECRETS_CONTEXT"]

SECRETS_FORMAT = "callvault-kms-secrets/1"
SECRETS_CONTEXT = {"purpose": "callvault-keyring-secrets"}
_WRAP_MAGIC = b"CVKK"
_WRAP_VERSION = 1
_KEY_SIZE = 32
_NONCE_SIZE = 12
_SIGNING_ID = re.compile(r"sk-[0-9a-f]{16}")

T = TypeVar("T")


def make_kms_client(
    *, endpoint_url: str | None = None, region: str = "us-east-1", max_attempts: int = 5
) -> Any:
    """A boto3 KMS client (boto3's usual credential chain) with standard retries and
    explicit timeouts (:func:`storage._aws.make_client`).

    Raises:
        KeyringError: boto3 could not build the client (bad endpoint or region).
    """
    return _aws.make_client(
        "kms",
        endpoint_url=endpoint_url,
        region=region,
        max_attempts=max_attempts,
        read_timeout=30,
        error=KeyringError,
    )


def _kms(action: str, call: Callable[[], T]) -> T:
    """Run one KMS call, translating botocore errors into :class:`KeyringError`."""

    def refused(failure: _aws.AwsFailure) -> KeyringError:
        if failure.kind is Failure.BAD_CIPHERTEXT:
            return KeyringError(
                f"KMS {action} refused: wrong context, wrong key or tampered blob ({failure.code})"
            )
        if failure.kind is Failure.UNREACHABLE:
            return KeyringUnavailable(f"KMS {action} failed: {failure.message}")
        error = KeyringUnavailable if failure.transient else KeyringError
        return error(f"KMS {action} failed: {failure.code}: {failure.message}".rstrip(": "))

    with _aws.translated(refused):
        return call()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(value: Any, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, TypeError, ValueError) as exc:
        raise KeyringError(f"{what} is not base64") from exc


def _now() -> datetime:
    return datetime.now(UTC)


def _new_signing_key() -> dict[str, Any]:
    return {
        "id": f"sk-{secrets.token_hex(8)}",
        "key": _b64(os.urandom(_KEY_SIZE)),
        "created_at": _now().isoformat(),
        "retired_at": None,
    }


class KmsKeyring:
    """A :class:`~storage.crypto.keyring.Keyring` whose master key is an AWS KMS key.

    ``key_id`` is anything KMS accepts (key id, ARN, ``alias/name``). ``client`` is a
    boto3 KMS client (default: :func:`make_kms_client` with ``region``/``endpoint``).
    ``secrets_path`` is the secrets file (module docstring), created if missing.

    Raises (constructor):
        KeyringError: the key is unknown, not enabled or not a symmetric encryption
            key; KMS is unreachable; the secrets file is corrupt, unreadable, or was
            made under a key this identity may not use.
    """

    def __init__(
        self,
        key_id: str,
        *,
        secrets_path: Path,
        client: Any | None = None,
        region: str = "us-east-1",
        endpoint: str | None = None,
    ) -> None:
        if not key_id:
            raise KeyringError("KMS keyring needs a key id, ARN or alias")
        self._client = (
            client if client is not None else make_kms_client(endpoint_url=endpoint, region=region)
        )
        self._path = Path(secrets_path)
        self._lock = threading.RLock()
        self._stamp: tuple[int, int, int] = (0, 0, 0)  # (inode, mtime, size) last read
        meta = _kms("DescribeKey", lambda: self._client.describe_key(KeyId=key_id))["KeyMetadata"]
        if meta.get("KeyState", "Enabled") != "Enabled" or meta.get("Enabled") is False:
            raise KeyringError(
                f"KMS key {meta.get('Arn', key_id)} is not enabled (state {meta.get('KeyState')})"
            )
        if (
            meta.get("KeyUsage", "ENCRYPT_DECRYPT") != "ENCRYPT_DECRYPT"
            or meta.get("KeySpec", "SYMMETRIC_DEFAULT") != "SYMMETRIC_DEFAULT"
        ):
            raise KeyringError(
                f"KMS key {meta.get('Arn', key_id)} is not a symmetric encryption key"
            )
        self._key_arn = str(meta["Arn"])
        if len(self._key_arn.encode("ascii", "replace")) > 255:
            raise KeyringError("KMS key ARN is longer than 255 characters")
        created = meta.get("CreationDate")
        self._created_at = created.astimezone(UTC) if isinstance(created, datetime) else _now()
        if not self._path.exists():  # an existing file may sit on a read-only mount
            with self._file_lock():
                if not self._path.exists():
                    self._write(self._fresh_secrets())
        self._secrets = self._read()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        region: str = "us-east-1",
        endpoint: str | None = None,
        secrets_path: Path | None = None,
        **options: object,
    ) -> KmsKeyring:
        """The keyring ``kms://key-id[?secrets=/abs/path]`` names.

        Raises:
            ConfigError: no key id, unknown query keys, or no absolute secrets path.
            KeyringError: KMS refused the key or could not be reached.
        """
        del options
        key_id = url[len("kms://") :].split("?", 1)[0]
        query = parse_qs(url.split("?", 1)[1]) if "?" in url else {}
        if not key_id or set(query) - {"secrets"}:
            raise ConfigError(f"keyring URL {url!r}: expected kms://key-id[?secrets=/abs/path]")
        secrets_file = Path(query["secrets"][0]) if "secrets" in query else secrets_path
        if secrets_file is None or not secrets_file.is_absolute():
            raise ConfigError(f"keyring URL {url!r}: the KMS secrets file needs an absolute path")
        return cls(key_id, secrets_path=secrets_file, region=region, endpoint=endpoint)

    # -- Keyring protocol -----------------------------------------------------------
    @property
    def current_key_id(self) -> str:
        return self._key_arn

    @property
    def secrets_path(self) -> Path:
        return self._path

    def wrap_key(self, plaintext: bytes, context: Mapping[str, str]) -> bytes:
        canonical_context(context)  # raises KeyringError on non-string entries
        arn = self._key_arn
        response = _kms(
            "Encrypt",
            lambda: self._client.encrypt(
                KeyId=arn, Plaintext=bytes(plaintext), EncryptionContext=dict(context)
            ),
        )
        arn_bytes = arn.encode("ascii")
        return (
            _WRAP_MAGIC
            + bytes([_WRAP_VERSION, len(arn_bytes)])
            + arn_bytes
            + bytes(response["CiphertextBlob"])
        )

    def unwrap_key(self, blob: bytes, context: Mapping[str, str]) -> bytes:
        canonical_context(context)
        view = bytes(blob)
        if len(view) < 6 or view[:4] != _WRAP_MAGIC:
            raise KeyringError("not a KMS-wrapped key (bad magic)")
        if view[4] != _WRAP_VERSION:
            raise KeyringError(f"unsupported KMS wrapped-key version {view[4]}")
        head_len = 6 + view[5]
        if len(view) <= head_len:
            raise KeyringError("KMS wrapped key is truncated")
        try:
            arn = view[6:head_len].decode("ascii")
        except UnicodeDecodeError:
            raise KeyringError("KMS wrapped key names a malformed key id") from None
        ciphertext = view[head_len:]
        response = _kms(
            "Decrypt",
            lambda: self._client.decrypt(
                CiphertextBlob=ciphertext, KeyId=arn, EncryptionContext=dict(context)
            ),
        )
        return bytes(response["Plaintext"])

    def pseudonymize(self, tenant: str, value: str) -> str:
        return pseudonym(self._pseudonym_secret, tenant, value)

    def sign(self, payload: bytes) -> str:
        with self._lock:
            key_id = str(self._secrets["current_signing_key"])
            key = self._signing_key(key_id)
        assert key is not None  # the current signing key is never retired
        return hmac_signature(key_id, key, payload)

    def verify(self, payload: bytes, signature: str) -> bool:
        parts = split_signature(signature)
        if parts is None:
            return False
        key_id, mac = parts
        key = self._signing_key(key_id)
        if (
            key is None
            and _SIGNING_ID.fullmatch(key_id)
            and not self._knows_signing_key(key_id)
            and self._file_changed()  # forged ids must not cost a KMS call each
        ):
            try:  # another process rotated: re-read once
                with self._lock:
                    self._secrets = self._read()
            except KeyringError:
                return False
            key = self._signing_key(key_id)
        if key is None:
            return False
        return hmac_matches(key, payload, mac)

    def rotate(self) -> str:
        """Add a signing key and re-encrypt the secrets file under the current KMS key.

        Returns the current key ARN. Subject keys wrapped under another KMS key are
        moved by ``KeyService.rewrap_all`` (``callvault keys rotate`` does both).

        Raises:
            KeyringError: KMS failed or the secrets file could not be written.
        """
        with self._lock, self._file_lock():
            state = self._read()
            signing = _new_signing_key()
            state["signing_keys"].append(signing)
            state["current_signing_key"] = signing["id"]
            state.setdefault("rotations", []).append(
                {"at": _now().isoformat(), "master_key_id": self._key_arn}
            )
            self._write(state)
            self._secrets = self._read()
        return self._key_arn

    def master_key_created_at(self) -> datetime:
        return self._created_at

    # -- internals ----------------------------------------------------------------------
    @property
    def _pseudonym_secret(self) -> bytes:
        return base64.b64decode(self._secrets["pseudonym_secret"])

    def _file_changed(self) -> bool:
        try:
            stat = self._path.stat()
        except OSError:
            return False
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size) != self._stamp

    def _knows_signing_key(self, key_id: str) -> bool:
        with self._lock:
            return any(entry["id"] == key_id for entry in self._secrets["signing_keys"])

    def _signing_key(self, key_id: str) -> bytes | None:
        with self._lock:
            for entry in self._secrets["signing_keys"]:
                if entry["id"] == key_id:
                    return None if entry.get("retired_at") else base64.b64decode(entry["key"])
        return None

    def _fresh_secrets(self) -> dict[str, Any]:
        signing = _new_signing_key()
        return {
            "pseudonym_secret": _b64(os.urandom(_KEY_SIZE)),
            "current_signing_key": signing["id"],
            "signing_keys": [signing],
            "rotations": [],
        }

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(exclusive_lock(self._path))
            except OSError as exc:
                raise KeyringUnavailable(
                    f"cannot lock KMS secrets file {self._path}: {exc}"
                ) from exc
            yield

    def _write(self, inner: dict[str, Any]) -> None:
        """Seal ``inner`` under a fresh KMS data key and replace the file atomically."""
        arn = self._key_arn
        generated = _kms(
            "GenerateDataKey",
            lambda: self._client.generate_data_key(
                KeyId=arn, KeySpec="AES_256", EncryptionContext=dict(SECRETS_CONTEXT)
            ),
        )
        nonce = os.urandom(_NONCE_SIZE)
        sealed = AESGCM(bytes(generated["Plaintext"])).encrypt(
            nonce, json.dumps(inner, sort_keys=True).encode(), SECRETS_FORMAT.encode()
        )
        document = {
            "format": SECRETS_FORMAT,
            "kms_key_id": arn,
            "wrapped_data_key": _b64(bytes(generated["CiphertextBlob"])),
            "nonce": _b64(nonce),
            "ciphertext": _b64(sealed),
        }
        tmp = self._path.with_name(f".{self._path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, json.dumps(document, indent=2, sort_keys=True).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self._path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise KeyringUnavailable(f"cannot write KMS secrets file {self._path}: {exc}") from exc

    def _read(self) -> dict[str, Any]:
        where = f"KMS secrets file {self._path}"
        try:
            stat = self._path.stat()
            raw = self._path.read_bytes()
            self._stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        except OSError as exc:
            raise KeyringUnavailable(f"cannot read {where}: {exc}") from exc
        try:
            document = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise KeyringError(f"{where} is corrupt (not JSON)") from exc
        if not isinstance(document, dict) or document.get("format") != SECRETS_FORMAT:
            raise KeyringError(f"{where} is corrupt: expected format {SECRETS_FORMAT!r}")
        arn = document.get("kms_key_id")
        if not isinstance(arn, str) or not arn:
            raise KeyringError(f"{where} is corrupt: no kms_key_id")
        wrapped = _unb64(document.get("wrapped_data_key"), f"{where}: wrapped_data_key")
        nonce = _unb64(document.get("nonce"), f"{where}: nonce")
        ciphertext = _unb64(document.get("ciphertext"), f"{where}: ciphertext")
        data_key = _kms(
            "Decrypt",
            lambda: self._client.decrypt(
                CiphertextBlob=wrapped, KeyId=arn, EncryptionContext=dict(SECRETS_CONTEXT)
            ),
        )["Plaintext"]
        try:
            inner = json.loads(
                AESGCM(bytes(data_key)).decrypt(nonce, ciphertext, SECRETS_FORMAT.encode())
            )
        except (InvalidTag, ValueError) as exc:
            raise KeyringError(f"{where} is tampered or corrupt") from exc
        return self._validate(inner, where)

    @staticmethod
    def _validate(inner: Any, where: str) -> dict[str, Any]:
        try:
            if len(base64.b64decode(inner["pseudonym_secret"], validate=True)) < 16:
                raise KeyringError(f"{where}: pseudonym secret is too short")
            keys = inner["signing_keys"]
            if not isinstance(keys, list) or not keys:
                raise KeyringError(f"{where}: no signing keys")
            for entry in keys:
                if len(base64.b64decode(entry["key"], validate=True)) != _KEY_SIZE:
                    raise KeyringError(
                        f"{where}: signing key {entry['id']!r} is not {_KEY_SIZE} bytes"
                    )
            current = [e for e in keys if e["id"] == inner["current_signing_key"]]
            if not current or current[0].get("retired_at"):
                raise KeyringError(f"{where}: current signing key missing or retired")
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise KeyringError(f"{where} is corrupt: {exc!r}") from exc
        return dict(inner)
