"""Vaults: where encrypted recordings are stored, chosen by URL.

A :class:`Vault` is a flat key -> bytes store with a few string tags per object
(the purposes a recording may be used for, its retention class). Two backends
implement it and pass the same contract tests (``tests/storage/test_vault_contract.py``):

- :class:`LocalVault` (``file:///abs/path``): the embedded default;
- :class:`storage.s3.S3Vault` (``s3://bucket[/prefix]``): AWS S3, MinIO, moto.

What a caller may rely on, whatever the backend:

- ``put`` is atomic: a reader sees the old object, the new one, or nothing, never a
  partial object. Overwriting a key is allowed (ingest is idempotent by recording id).
- An object is never visible without its tags.
- ``delete`` removes every version (on a versioned bucket, old versions and delete
  markers too); deleting a missing key is not an error.
- Keys match ``[A-Za-z0-9._/-]{1,512}``: no leading ``/``, no empty segment, no
  segment longer than 200 characters (filesystem name limits), no segment that
  starts with ``.`` (so no ``.``/``..`` traversal; such names are
  reserved for the backends' bookkeeping). A bad key raises :class:`StorageError`.
- Tags follow S3's rules (at most 10; key 1-128 and value 0-256 characters of
  letters, digits, spaces and ``+ - = . _ : / @``; no ``aws:`` keys).
- A missing key raises :class:`RecordingNotFound`; every other failure raises
  :class:`StorageError` (vendor errors are chained as ``__cause__``, never raised).

``LocalVault`` layout under its root (files ``0600``, folders ``0700``)::

    <root>/<key>                  the object bytes
    <root>/.tags/<key>.json       its tags, a JSON object (written before the object)
    <dir>/.tmp-*                  a write in progress (renamed into place, never read)
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

from callvault.errors import ConfigError
from storage.errors import RecordingNotFound, StorageError
from storage.types import ObjectInfo

__all__ = [
    "Vault",
    "LocalVault",
    "open_vault",
    "validate_key",
    "validate_prefix",
    "validate_tags",
    "write_file_atomically",
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
_TAGS_DIR = ".tags"
_TMP_PREFIX = ".tmp-"


@runtime_checkable
class Vault(Protocol):
    """A store of immutable-by-convention objects with tags (see the module docstring)."""

    url: str

    def put(
        self, key: str, data: bytes, *, tags: Mapping[str, str], durable: bool = True
    ) -> ObjectInfo:
        """Store ``data`` under ``key`` with exactly ``tags``, atomically; overwrite allowed.

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

    def delete_many(self, keys: Sequence[str]) -> list[str]:
        """Delete every key (all versions); return the keys that could not be deleted.

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

    def put_tags(self, key: str, tags: Mapping[str, str]) -> None:
        """Replace the tags of an existing object.

        Raises:
            RecordingNotFound: no object under ``key``.
            StorageError: bad key or tags, or the backend failed.
        """
        ...


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


class LocalVault:
    """A :class:`Vault` on the local filesystem under ``root`` (see the module docstring).

    Raises:
        StorageError: ``root`` cannot be created or is not a folder.
    """

    def __init__(self, root: Path) -> None:
        root = Path(root)
        if not root.is_absolute():
            root = root.absolute()
        try:
            _make_dirs(root)
        except OSError as exc:
            raise StorageError(f"cannot create vault folder {str(root)!r}: {exc}") from exc
        if not root.is_dir():
            raise StorageError(f"vault root {str(root)!r} is not a folder")
        self.root = root
        self.url = root.as_uri()

    def __repr__(self) -> str:
        return f"LocalVault({str(self.root)!r})"

    # -- paths ---------------------------------------------------------------------

    def _object_path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def _tags_path(self, key: str) -> Path:
        return self.root / _TAGS_DIR / f"{validate_key(key)}.json"

    # -- Vault ---------------------------------------------------------------------

    def put(
        self, key: str, data: bytes, *, tags: Mapping[str, str], durable: bool = True
    ) -> ObjectInfo:
        path = self._object_path(key)
        checked = validate_tags(tags)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise StorageError(f"vault data must be bytes, not {type(data).__name__}")
        try:
            # Tags first: the object never becomes visible without its tags.
            write_file_atomically(self._tags_path(key), _encode_tags(checked), sync=durable)
            write_file_atomically(path, data, sync=durable)
        except IsADirectoryError as exc:
            raise StorageError(f"vault key {key!r} is a prefix of other keys here") from exc
        except NotADirectoryError as exc:
            raise StorageError(f"vault key {key!r} extends an existing key") from exc
        except OSError as exc:
            raise StorageError(f"cannot write vault object {key!r}: {exc}") from exc
        return ObjectInfo(key=key, size=len(data), tags=checked)

    def flush(self) -> None:
        """One ``syncfs`` of the vault's filesystem instead of an fsync per file."""
        try:
            _syncfs(self.root)
        except OSError as exc:
            raise StorageError(f"cannot flush vault {str(self.root)!r}: {exc}") from exc

    def get(self, key: str) -> bytes:
        path = self._object_path(key)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise self._translate(key, exc) from exc

    def get_range(self, key: str, start: int, end: int) -> bytes:
        path = self._object_path(key)
        _check_range(start, end)
        try:
            with path.open("rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if start >= size:
                    raise StorageError(
                        f"range {start}-{end} not satisfiable: object {key!r} has {size} bytes"
                    )
                handle.seek(start)
                return handle.read(min(end, size - 1) - start + 1)
        except OSError as exc:
            raise self._translate(key, exc) from exc

    def head(self, key: str) -> ObjectInfo:
        path = self._object_path(key)
        try:
            size = path.stat().st_size
            if not path.is_file():
                raise FileNotFoundError(errno.ENOENT, "not a file", str(path))
        except OSError as exc:
            raise self._translate(key, exc) from exc
        return ObjectInfo(key=key, size=size, tags=self._read_tags(key))

    def exists(self, key: str) -> bool:
        return self._object_path(key).is_file()

    def delete(self, key: str) -> None:
        path = self._object_path(key)
        try:
            # Object first: it never stays visible without its tags.
            with contextlib.suppress(FileNotFoundError, IsADirectoryError, NotADirectoryError):
                path.unlink()
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                self._tags_path(key).unlink()
        except OSError as exc:
            raise StorageError(f"cannot delete vault object {key!r}: {exc}") from exc

    def delete_many(self, keys: Sequence[str]) -> list[str]:
        for key in keys:
            validate_key(key)
        failed: list[str] = []
        for key in keys:
            try:
                self.delete(key)
            except StorageError:
                failed.append(key)
        return failed

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        # Walk only the folder the prefix points into.
        start = self.root / prefix.rpartition("/")[0] if "/" in prefix else self.root
        if not start.is_dir():
            return
        for folder, dirnames, filenames in os.walk(start, onerror=_raise_walk_error):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            relative = Path(folder).relative_to(self.root).as_posix()
            for name in filenames:
                if name.startswith("."):
                    continue
                key = name if relative == "." else f"{relative}/{name}"
                if key.startswith(prefix):
                    yield key

    def put_tags(self, key: str, tags: Mapping[str, str]) -> None:
        checked = validate_tags(tags)
        if not self.exists(key):
            raise RecordingNotFound(f"no vault object {key!r} in {self.url}")
        try:
            write_file_atomically(self._tags_path(key), _encode_tags(checked))
        except OSError as exc:
            raise StorageError(f"cannot write tags of vault object {key!r}: {exc}") from exc

    # -- helpers -------------------------------------------------------------------

    def _read_tags(self, key: str) -> dict[str, str]:
        try:
            raw = self._tags_path(key).read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise StorageError(f"cannot read tags of vault object {key!r}: {exc}") from exc
        try:
            tags = json.loads(raw)
        except ValueError as exc:
            raise StorageError(f"tags of vault object {key!r} are not valid JSON") from exc
        if not isinstance(tags, dict):
            raise StorageError(f"tags of vault object {key!r} are not a JSON object")
        return {str(k): str(v) for k, v in tags.items()}

    def _translate(self, key: str, exc: OSError) -> StorageError:
        if isinstance(exc, FileNotFoundError | IsADirectoryError | NotADirectoryError):
            return RecordingNotFound(f"no vault object {key!r} in {self.url}")
        return StorageError(f"cannot read vault object {key!r}: {exc}")


def open_vault(url: str, *, s3_endpoint: str | None = None, region: str = "us-east-1") -> Vault:
    """Return the vault a URL names: ``file:///abs/path`` or ``s3://bucket[/prefix]``.

    Raises:
        ConfigError: the URL is malformed or names an unsupported scheme.
        StorageError: a ``file://`` root cannot be created.
    """
    if not isinstance(url, str) or not url:
        raise ConfigError("vault URL is empty; expected file:///abs/path or s3://bucket[/prefix]")
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ConfigError(f"vault URL {url!r} must not have a query or fragment")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"vault URL {url!r}: file URLs take no host (use file:///abs/path)")
        path = unquote(parts.path)
        if not path.startswith("/") or "\x00" in path:
            raise ConfigError(f"vault URL {url!r}: the path must be absolute (file:///abs/path)")
        return LocalVault(Path(path))
    if parts.scheme == "s3":
        from storage.s3 import S3Vault  # imported here: storage.s3 imports this module

        return S3Vault(parts.netloc, parts.path.strip("/"), endpoint_url=s3_endpoint, region=region)
    raise ConfigError(
        f"unsupported vault URL {url!r}; expected file:///abs/path or s3://bucket[/prefix]"
    )


# -- filesystem helpers ------------------------------------------------------------


def _check_range(start: int, end: int) -> None:
    if not isinstance(start, int) or not isinstance(end, int):
        raise StorageError("byte range bounds must be integers")
    if start < 0 or end < start:
        raise StorageError(f"bad byte range {start}-{end}: need 0 <= start <= end")


def _encode_tags(tags: Mapping[str, str]) -> bytes:
    return json.dumps(dict(tags), sort_keys=True, ensure_ascii=False).encode("utf-8")


def _make_dirs(path: Path) -> None:
    """Create ``path`` and missing parents with mode 0700."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)
            os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs(path: Path) -> None:
    """Flush the whole filesystem holding ``path`` (Linux ``syncfs``; else ``sync``)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syncfs = getattr(libc, "syncfs", None)
        if syncfs is None:  # pragma: no cover - non-Linux
            os.sync()
        elif syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        os.close(fd)


def write_file_atomically(
    path: Path, data: bytes | bytearray | memoryview, *, sync: bool = True
) -> None:
    """Write ``data`` to ``path`` so a reader sees all of it or the previous content.

    Missing folders are created with mode 0700. A temp file ``.tmp-*`` in the same
    folder (mode 0600) is written, fsynced, renamed over ``path`` and the folder
    fsynced, so the rename survives a crash; no temp file is left behind on error.
    With ``sync=False`` both fsyncs are skipped: the caller makes the write durable
    later (``LocalVault.flush``).

    Raises:
        OSError: as raised by the filesystem (callers translate it).
    """
    folder = path.parent
    _make_dirs(folder)
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync:
        _fsync_dir(folder)


def _raise_walk_error(exc: OSError) -> None:
    raise StorageError(f"cannot list vault folder: {exc}") from exc
