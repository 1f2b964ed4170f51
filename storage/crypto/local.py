"""The local key file keyring (``file:///path``): the embedded default.

Local key file layout (JSON, mode 0600, parent directory 0700)::

    {"format": "callvault-keyring/1",
     "current_master_key": "mk-…", "current_signing_key": "sk-…",
     "pseudonym_secret": "<b64>",
     "master_keys":  [{"id": "mk-…", "key": "<b64 32 bytes>", "created_at": "<iso>"}],
     "signing_keys": [{"id": "sk-…", "key": "<b64 32 bytes>", "created_at": "<iso>",
                       "retired_at": null}]}

Wrapped-key blob (LocalKeyring): ``b"CVKW"`` | version ``0x01`` | u8 length of the
master key id | master key id (ASCII) | 12-byte random nonce | AES-256-GCM ciphertext
and tag. The associated data is the blob's prefix up to the nonce followed by the
canonical JSON of the context (sorted keys, no whitespace), so the context and the
key id are both authenticated.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import re
import secrets
import stat
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from callvault.errors import ConfigError
from storage._files import exclusive_lock
from storage.crypto.keyring import (
    canonical_context,
    hmac_matches,
    hmac_signature,
    pseudonym,
    split_signature,
)
from storage.errors import KeyringError, KeyringUnavailable

__all__ = ["LocalKeyring", "KEY_FILE_FORMAT"]

KEY_FILE_FORMAT = "callvault-keyring/1"
_WRAP_MAGIC = b"CVKW"
_WRAP_VERSION = 1
_NONCE_SIZE = 12
_KEY_SIZE = 32
# Only ids shaped like ours trigger a re-read of the key file, so garbage input cannot.
_KEY_ID_PATTERN = re.compile(r"(mk|sk)-[0-9a-f]{16}")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _now() -> datetime:
    return datetime.now(UTC)


def _new_key_entry(prefix: str) -> dict[str, Any]:
    """A fresh random key entry; ``prefix`` is "mk" (master) or "sk" (signing)."""
    entry: dict[str, Any] = {
        "id": f"{prefix}-{secrets.token_hex(8)}",
        "key": _b64(os.urandom(_KEY_SIZE)),
        "created_at": _now().isoformat(),
    }
    if prefix == "sk":
        entry["retired_at"] = None
    return entry


class LocalKeyring:
    """A keyring kept in a local JSON key file (the embedded default).

    The file is created on first open (parent directory 0700, file 0600, written
    atomically). A file that group or others may access is refused. Several processes
    may share one file: a process that meets a key id it does not know re-reads the
    file once, and :meth:`rotate` holds an exclusive lock (``<file>.lock``) while it
    reads, extends and rewrites the file.

    Raises (constructor):
        KeyringError: the file is readable by group/others, corrupt, or cannot be created.
    """

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._lock = threading.RLock()
        self._aead: dict[str, AESGCM] = {}
        self._stamp: tuple[int, int] = (0, 0)  # (inode, mtime) of the file last read
        if not self._path.exists():  # an existing file may sit on a read-only mount
            with self._file_lock():
                if not self._path.exists():
                    self._write(self._fresh_state())
        self._state = self._read()

    @classmethod
    def from_url(cls, url: str, **options: object) -> LocalKeyring:
        """The key file ``file:///abs/path`` names (``options`` are for other backends).

        Raises:
            ConfigError: a host in the URL, or a relative path.
        """
        del options
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ConfigError(f"keyring URL {url!r}: expected file:///absolute/path")
        return cls(Path(unquote(parts.path)))

    # -- Keyring protocol -----------------------------------------------------------
    @property
    def path(self) -> Path:
        return self._path

    @property
    def current_key_id(self) -> str:
        self._refresh_if_changed()
        return str(self._state["current_master_key"])

    def wrap_key(self, plaintext: bytes, context: Mapping[str, str]) -> bytes:
        aad_context = canonical_context(context)
        with self._lock:
            key_id = self.current_key_id
            aead = self._master_aead(key_id)
        key_id_bytes = key_id.encode("ascii")
        head = _WRAP_MAGIC + bytes([_WRAP_VERSION, len(key_id_bytes)]) + key_id_bytes
        nonce = os.urandom(_NONCE_SIZE)
        return head + nonce + aead.encrypt(nonce, plaintext, head + aad_context)

    def unwrap_key(self, blob: bytes, context: Mapping[str, str]) -> bytes:
        aad_context = canonical_context(context)
        view = memoryview(blob)
        if len(view) < 6 or bytes(view[:4]) != _WRAP_MAGIC:
            raise KeyringError("not a wrapped key (bad magic)")
        if view[4] != _WRAP_VERSION:
            raise KeyringError(f"unsupported wrapped-key version {view[4]}")
        id_len = view[5]
        head_len = 6 + id_len
        if len(view) < head_len + _NONCE_SIZE + 16:
            raise KeyringError("wrapped key is truncated")
        try:
            key_id = bytes(view[6:head_len]).decode("ascii")
        except UnicodeDecodeError:
            raise KeyringError("wrapped key names a malformed master key id") from None
        aead = self._master_aead(key_id, reload_if_unknown=True)
        nonce = view[head_len : head_len + _NONCE_SIZE]
        try:
            return aead.decrypt(
                nonce, view[head_len + _NONCE_SIZE :], bytes(view[:head_len]) + aad_context
            )
        except InvalidTag as exc:
            raise KeyringError(
                f"cannot unwrap key under master key {key_id}: wrong context or tampered blob"
            ) from exc

    def pseudonymize(self, tenant: str, value: str) -> str:
        return pseudonym(self._pseudonym_secret, tenant, value)

    def sign(self, payload: bytes) -> str:
        self._refresh_if_changed()
        with self._lock:
            key_id = str(self._state["current_signing_key"])
            key = self._signing_key(key_id)
        assert key is not None  # the current signing key is never retired
        return hmac_signature(key_id, key, payload)

    def verify(self, payload: bytes, signature: str) -> bool:
        parts = split_signature(signature)
        if parts is None:
            return False
        key_id, mac = parts
        key = self._signing_key(key_id)
        if key is None and _KEY_ID_PATTERN.fullmatch(key_id):
            with self._lock:
                known = self._find("signing_keys", key_id) is not None
            if not known:  # maybe another process rotated: re-read once
                try:
                    self._reload()
                except KeyringError:
                    return False
                key = self._signing_key(key_id)
        if key is None:
            return False
        return hmac_matches(key, payload, mac)

    def rotate(self) -> str:
        with self._lock, self._file_lock():
            state = self._read()  # another process may have rotated meanwhile
            master, signing = _new_key_entry("mk"), _new_key_entry("sk")
            state["master_keys"].append(master)
            state["signing_keys"].append(signing)
            master_id, signing_id = master["id"], signing["id"]
            state["current_master_key"] = master_id
            state["current_signing_key"] = signing_id
            self._write(state)
            self._state = self._read()
            return str(master_id)

    def master_key_created_at(self) -> datetime:
        with self._lock:
            entry = self._find("master_keys", self.current_key_id)
        assert entry is not None
        return datetime.fromisoformat(entry["created_at"])

    # -- extra operations (LocalKeyring only) ------------------------------------------
    def retire_signing_key(self, key_id: str) -> None:
        """Stop accepting signatures by ``key_id`` (e.g. after a leak).

        Raises:
            KeyringError: unknown key id, or it is the current signing key.
        """
        with self._lock, self._file_lock():
            state = self._read()
            if key_id == state["current_signing_key"]:
                raise KeyringError(f"{key_id} is the current signing key; rotate first")
            for entry in state["signing_keys"]:
                if entry["id"] == key_id:
                    entry["retired_at"] = entry.get("retired_at") or _now().isoformat()
                    break
            else:
                raise KeyringError(f"unknown signing key {key_id!r}")
            self._write(state)
            self._state = self._read()

    # -- internals ----------------------------------------------------------------------
    @property
    def _pseudonym_secret(self) -> bytes:
        return base64.b64decode(self._state["pseudonym_secret"])

    def _find(self, section: str, key_id: str) -> dict[str, Any] | None:
        for entry in self._state[section]:
            if entry["id"] == key_id:
                return dict(entry)
        return None

    def _signing_key(self, key_id: str) -> bytes | None:
        with self._lock:
            entry = self._find("signing_keys", key_id)
        if entry is None or entry.get("retired_at"):
            return None
        return base64.b64decode(entry["key"])

    def _reload(self) -> None:
        """Re-read the key file (another process may have rotated)."""
        with self._lock:
            self._state = self._read()

    def _refresh_if_changed(self) -> None:
        """Re-read the key file if it was replaced since we read it (one stat call)."""
        try:
            st = self._path.stat()
        except OSError:
            return  # keep serving from memory; the next write reports the problem
        if (st.st_ino, st.st_mtime_ns) != self._stamp:
            self._reload()

    def _master_aead(self, key_id: str, *, reload_if_unknown: bool = False) -> AESGCM:
        with self._lock:
            aead = self._aead.get(key_id)
            if aead is not None:
                return aead
            entry = self._find("master_keys", key_id)
            if entry is None and reload_if_unknown and _KEY_ID_PATTERN.fullmatch(key_id):
                self._reload()
                entry = self._find("master_keys", key_id)
            if entry is None:
                raise KeyringError(f"unknown master key {key_id!r} (not in {self._path})")
            aead = AESGCM(base64.b64decode(entry["key"]))
            self._aead[key_id] = aead
            return aead

    @staticmethod
    def _fresh_state() -> dict[str, Any]:
        master, signing = _new_key_entry("mk"), _new_key_entry("sk")
        return {
            "format": KEY_FILE_FORMAT,
            "current_master_key": master["id"],
            "current_signing_key": signing["id"],
            "pseudonym_secret": _b64(os.urandom(_KEY_SIZE)),
            "master_keys": [master],
            "signing_keys": [signing],
        }

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(exclusive_lock(self._path))
            except OSError as exc:
                raise KeyringUnavailable(f"cannot lock key file {self._path}: {exc}") from exc
            yield

    def _write(self, state: dict[str, Any]) -> None:
        tmp = self._path.with_name(f".{self._path.name}.{secrets.token_hex(4)}.tmp")
        data = json.dumps(state, indent=2, sort_keys=True).encode()
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self._path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise KeyringUnavailable(f"cannot write key file {self._path}: {exc}") from exc

    def _read(self) -> dict[str, Any]:
        try:
            st = self._path.stat()
            mode = st.st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise KeyringError(
                    f"key file {self._path} is accessible by group/others "
                    f"(mode {stat.S_IMODE(mode):o}); run: chmod 600 {self._path}"
                )
            raw = self._path.read_bytes()
            stamp = (st.st_ino, st.st_mtime_ns)
        except OSError as exc:
            raise KeyringUnavailable(f"cannot read key file {self._path}: {exc}") from exc
        try:
            state = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise KeyringError(f"key file {self._path} is corrupt (not JSON: {exc})") from exc
        valid = self._validate(state)
        self._stamp = stamp
        return valid

    def _validate(self, state: Any) -> dict[str, Any]:
        where = f"key file {self._path} is corrupt"
        if not isinstance(state, dict) or state.get("format") != KEY_FILE_FORMAT:
            raise KeyringError(f"{where}: expected format {KEY_FILE_FORMAT!r}")
        try:
            for section in ("master_keys", "signing_keys"):
                entries = state[section]
                if not isinstance(entries, list) or not entries:
                    raise KeyringError(f"{where}: {section} must be a non-empty list")
                for entry in entries:
                    if len(base64.b64decode(entry["key"], validate=True)) != _KEY_SIZE:
                        raise KeyringError(f"{where}: key {entry['id']!r} is not {_KEY_SIZE} bytes")
                    datetime.fromisoformat(entry["created_at"])
                    if not str(entry["id"]).isascii() or "." in entry["id"]:
                        raise KeyringError(f"{where}: malformed key id {entry['id']!r}")
            if len(base64.b64decode(state["pseudonym_secret"], validate=True)) < 16:
                raise KeyringError(f"{where}: pseudonym_secret is too short")
            ids = {e["id"] for e in state["master_keys"]}
            if state["current_master_key"] not in ids:
                raise KeyringError(f"{where}: current_master_key is not among master_keys")
            current_signing = [
                e for e in state["signing_keys"] if e["id"] == state["current_signing_key"]
            ]
            if not current_signing or current_signing[0].get("retired_at"):
                raise KeyringError(f"{where}: current_signing_key is missing or retired")
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise KeyringError(f"{where}: {exc!r}") from exc
        return state
