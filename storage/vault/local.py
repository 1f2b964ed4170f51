"""The folder vault (``file:///abs/path``): the embedded default.

Implements :class:`storage.vault.base.Vault` on the local filesystem. Layout under
its root (files ``0600``, folders ``0700``)::

    <root>/<key>                  the object bytes; its tags, a JSON object, in the
                                  extended attribute ``user.callvault.tags``
    <root>/.tags/<key>.json       its tags where the filesystem has no user xattrs (and
                                  for objects written before; written before the object)
    <dir>/.tmp-*                  a write in progress (renamed into place, never read)

Tags in an xattr are set on the temp file before it is renamed into place: the object
and its tags appear together, with one file written per put instead of two. Folders
this vault created or saw are remembered, so a put does not stat its way up the tree.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import SplitResult, unquote

from callvault.errors import ConfigError
from storage._files import fsync_dir, make_private_dirs, write_file_atomically
from storage.errors import RecordingNotFound, StorageError, VaultUnavailable
from storage.types import ObjectInfo, StoredObject
from storage.vault.base import (
    check_data,
    check_range,
    validate_key,
    validate_prefix,
    validate_tags,
)

__all__ = ["LocalVault"]

_TAGS_DIR = ".tags"
_TAGS_XATTR = "user.callvault.tags"
#: errnos meaning "no user xattrs on this filesystem" (the tags file from then on); any
#: other (ENOSPC, E2BIG, EPERM, ...) may pass: VaultUnavailable, retried
_NO_XATTR = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP})


class LocalVault:
    """A :class:`Vault` on the local filesystem under ``root`` (see the module docstring).

    Raises:
        StorageError: ``root`` cannot be created or is not a folder.
    """

    puts_wait_on_network = False

    def __init__(self, root: Path) -> None:
        root = Path(root)
        if not root.is_absolute():
            root = root.absolute()
        try:
            make_private_dirs(root)
        except OSError as exc:
            raise VaultUnavailable(f"cannot create vault folder {str(root)!r}: {exc}") from exc
        if not root.is_dir():
            raise StorageError(f"vault root {str(root)!r} is not a folder")
        self.root = root
        self.url = root.as_uri()
        self._folders: set[Path] = {root}  # known to exist (a put skips make_private_dirs)
        self._xattrs = True  # until the filesystem refuses them
        self._pending: list[Path] = []  # written with durable=False since the last flush
        self._pending_dirs: set[Path] = set()  # folders that gained a new folder since
        self._pending_lock = threading.Lock()
        self._syncers: ThreadPoolExecutor | None = None

    @classmethod
    def from_url(cls, url: str, parts: SplitResult, **options: object) -> LocalVault:
        """The vault ``file:///abs/path`` names (``options`` are for other backends).

        Raises:
            ConfigError: a host in the URL, or a relative path.
        """
        del options
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"vault URL {url!r}: file URLs take no host (use file:///abs/path)")
        path = unquote(parts.path)
        if not path.startswith("/") or "\x00" in path:
            raise ConfigError(f"vault URL {url!r}: the path must be absolute (file:///abs/path)")
        return cls(Path(path))

    def __repr__(self) -> str:
        return f"LocalVault({str(self.root)!r})"

    # -- paths ---------------------------------------------------------------------

    def _object_path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def _tags_path(self, key: str) -> Path:
        return self.root / _TAGS_DIR / f"{validate_key(key)}.json"

    # -- Vault ---------------------------------------------------------------------

    def put(
        self,
        key: str,
        data: bytes | Iterable[bytes],
        *,
        tags: Mapping[str, str],
        durable: bool = True,
    ) -> ObjectInfo:
        path = self._object_path(key)
        checked = validate_tags(tags)
        check_data(data)
        try:
            # The tags are set (xattr or tags file) only once every piece is written:
            # pieces that fail leave nothing behind.
            size = self._write_object(key, path, data, _encode_tags(checked), sync=durable)
        except IsADirectoryError as exc:
            raise StorageError(f"vault key {key!r} is a prefix of other keys here") from exc
        except NotADirectoryError as exc:
            raise StorageError(f"vault key {key!r} extends an existing key") from exc
        except OSError as exc:
            raise VaultUnavailable(f"cannot write vault object {key!r}: {exc}") from exc
        return ObjectInfo(key=key, size=size, tags=checked)

    def _write_object(
        self,
        key: str,
        path: Path,
        data: bytes | bytearray | memoryview | Iterable[bytes],
        tags: bytes,
        *,
        sync: bool,
    ) -> int:
        """Write the object (and its tags) atomically: temp file, tags xattr, rename;
        return its size."""
        folder = path.parent
        # folders whose entries changed as folders were created (here, again inside
        # write_file_atomically, or for a tags file): durable with the object, now
        # (sync) or at the next flush
        grown: list[Path] = []

        def tag(fd: int) -> None:
            if not self._set_tags_xattr(fd, tags):
                # Tags first: the object never becomes visible without its tags.
                write_file_atomically(self._tags_path(key), tags, sync=sync, grown=grown)

        try:
            created = [] if folder in self._folders else make_private_dirs(folder)
            # A remembered folder removed meanwhile is created again inside, before any
            # piece is read; a later failure (even FileNotFoundError from the rename)
            # is not retried here: streamed pieces read once cannot be written again.
            size = write_file_atomically(
                path, data, sync=sync, make_dirs=False, before_rename=tag, grown=grown
            )
            if sync:
                for parent in reversed(created):
                    fsync_dir(parent)
        except OSError:
            self._folders.discard(folder)
            raise
        self._folders.add(folder)
        if not sync:
            with self._pending_lock:
                self._pending.append(path)
                self._pending_dirs.update(created, grown)
                if not self._xattrs:
                    self._pending.append(self._tags_path(key))
        return size

    def _set_tags_xattr(self, target: int | Path, tags: bytes) -> bool:
        """Store ``tags`` in the xattr of ``target`` (an fd or a path); False when the
        filesystem keeps no user xattrs (ENOTSUP: the tags file is used from now on).
        Any other refusal (ENOSPC, E2BIG, EPERM) raises: the caller's VaultUnavailable,
        retried, and the xattrs stay in use."""
        if not self._xattrs:
            return False
        try:
            os.setxattr(target, _TAGS_XATTR, tags)
        except OSError as exc:
            if exc.errno not in _NO_XATTR:
                raise
            self._xattrs = False
            return False
        return True

    def flush(self) -> None:
        """Make the objects put with ``durable=False`` since the last flush durable: an
        ``fdatasync`` of each of those files and an ``fsync`` of each of their folders
        (and of the parents of folders those puts created), issued in parallel (the
        filesystem commits them together), never other programs' or other workers'
        dirty data."""
        with self._pending_lock:
            paths, self._pending = self._pending, []
            grown, self._pending_dirs = self._pending_dirs, set()
        if not paths:
            return
        try:
            if self._syncers is None:
                self._syncers = ThreadPoolExecutor(8, thread_name_prefix="vault-sync")
            folders = sorted({path.parent for path in paths} | grown)
            list(self._syncers.map(_sync_file, paths))
            list(self._syncers.map(fsync_dir, folders))
        except OSError as exc:
            with self._pending_lock:  # flushed again next time
                self._pending.extend(paths)
                self._pending_dirs.update(grown)
            raise VaultUnavailable(f"cannot flush vault {str(self.root)!r}: {exc}") from exc

    def get(self, key: str) -> bytes:
        path = self._object_path(key)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise self._translate(key, exc) from exc

    def get_range(self, key: str, start: int, end: int) -> bytes:
        path = self._object_path(key)
        check_range(start, end)
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
            raise VaultUnavailable(f"cannot delete vault object {key!r}: {exc}") from exc

    def delete_many(
        self, keys: Sequence[str], *, versions: Mapping[str, str | None] | None = None
    ) -> list[str]:
        del versions  # a folder keeps one version per key
        for key in keys:
            validate_key(key)
        failed: list[str] = []
        for key in keys:
            try:
                self.delete(key)
            except StorageError:
                failed.append(key)
        return failed

    def update_tags(
        self, key: str, tags: Mapping[str, str], *, version_id: str | None = None
    ) -> dict[str, str]:
        del version_id  # a folder keeps one version per key
        changes = validate_tags(tags)
        if not self.exists(key):
            raise RecordingNotFound(f"no vault object {key!r} in {self.url}")
        merged = validate_tags({**self._read_tags(key), **changes})
        self.put_tags(key, merged)
        return merged

    def iter_objects(self, prefix: str = "") -> Iterator[StoredObject]:
        for key in self.iter_keys(prefix):
            try:
                info = self._object_path(key).stat()
            except FileNotFoundError:
                continue  # deleted since it was listed
            except OSError as exc:
                raise VaultUnavailable(f"cannot stat vault object {key!r}: {exc}") from exc
            yield StoredObject(key, info.st_size, datetime.fromtimestamp(info.st_mtime, UTC))

    def object_lock_enabled(self) -> bool:
        return False

    def set_legal_holds(
        self, keys: Sequence[str], *, on: bool, versions: Mapping[str, str | None] | None = None
    ) -> list[str]:
        raise StorageError(f"a folder vault ({self.url}) has no legal holds")

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

    def put_tags(self, key: str, tags: Mapping[str, str], *, version_id: str | None = None) -> None:
        del version_id  # a folder keeps one version per key
        checked = validate_tags(tags)
        path = self._object_path(key)
        if not self.exists(key):
            raise RecordingNotFound(f"no vault object {key!r} in {self.url}")
        try:
            if self._set_tags_xattr(path, _encode_tags(checked)):
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                try:
                    os.fsync(fd)  # the xattr is inode metadata: durable with the inode
                finally:
                    os.close(fd)
                with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                    self._tags_path(key).unlink()  # an older object's tags file
            else:
                write_file_atomically(self._tags_path(key), _encode_tags(checked))
                _remove_tags_xattr(path)  # else reads would find the old tags first
        except FileNotFoundError as exc:
            raise RecordingNotFound(f"no vault object {key!r} in {self.url}") from exc
        except OSError as exc:
            raise VaultUnavailable(f"cannot write tags of vault object {key!r}: {exc}") from exc

    # -- helpers -------------------------------------------------------------------

    def _read_tags(self, key: str) -> dict[str, str]:
        try:
            raw = os.getxattr(self._object_path(key), _TAGS_XATTR)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            if exc.errno not in (errno.ENODATA, *_NO_XATTR):
                raise VaultUnavailable(f"cannot read tags of vault object {key!r}: {exc}") from exc
            try:  # no xattr: an object written before, or a filesystem without them
                raw = self._tags_path(key).read_bytes()
            except FileNotFoundError:
                return {}
            except OSError as exc:
                raise VaultUnavailable(f"cannot read tags of vault object {key!r}: {exc}") from exc
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
        return VaultUnavailable(f"cannot read vault object {key!r}: {exc}")


def _remove_tags_xattr(path: Path) -> None:
    """Remove the tags xattr of ``path`` (none, or no xattrs at all, is fine)."""
    try:
        os.removexattr(path, _TAGS_XATTR)
    except OSError as exc:
        if exc.errno not in (errno.ENODATA, *_NO_XATTR):
            raise


def _sync_file(path: Path) -> None:
    """fdatasync ``path`` (gone since is fine: a later put or delete replaced it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _encode_tags(tags: Mapping[str, str]) -> bytes:
    return json.dumps(dict(tags), sort_keys=True, ensure_ascii=False).encode("utf-8")


def _raise_walk_error(exc: OSError) -> None:
    raise VaultUnavailable(f"cannot list vault folder: {exc}") from exc
