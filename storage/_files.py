"""Private, durable files: the one place the storage layer creates files and folders.

Every file written here is ``0600`` in folders ``0700`` (created with those modes,
whatever the umask), written atomically (temp file + rename) and, unless asked not
to, fsynced together with its folder so the rename survives a crash.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

__all__ = [
    "write_file_atomically",
    "make_private_dirs",
    "fsync_dir",
    "exclusive_lock",
    "TMP_PREFIX",
]

TMP_PREFIX = ".tmp-"

_TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_tmp_counter = itertools.count()  # next() is atomic under the GIL: threads never share a name


def make_private_dirs(path: Path) -> list[Path]:
    """Create ``path`` and missing parents with mode 0700; return the folders whose
    entries this changed (the parent of each folder created, outermost first): a caller
    making a file in ``path`` durable fsyncs them too (:func:`fsync_dir`), or a crash can
    lose the new folder and the file with it.

    Raises:
        OSError: as raised by the filesystem (callers translate it).
    """
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    changed: list[Path] = []
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)
            os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask
            changed.append(folder.parent)
    return changed


def fsync_dir(path: Path) -> None:
    """fsync a folder (so a rename or unlink in it survives a crash)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomically(
    path: Path,
    data: bytes | bytearray | memoryview | Iterable[bytes],
    *,
    sync: bool = True,
    make_dirs: bool = True,
    before_rename: Callable[[int], None] | None = None,
    grown: list[Path] | None = None,
) -> int:
    """Write ``data`` (bytes, or pieces written as they come) to ``path`` so a reader
    sees all of it or the previous content; return the bytes written.

    Missing folders are created with mode 0700 (with ``make_dirs`` False, the caller
    knows the folder exists: it is created only when the temp file finds it gone). A
    temp file ``.tmp-*`` in the same folder (mode 0600) is written, handed to
    ``before_rename(fd)`` (e.g. to set an xattr that must appear with the content),
    fsynced, renamed over ``path`` and the folder fsynced (and the parents of folders it
    created), so the rename survives a crash; no temp file is left behind on error.
    With ``sync=False`` the fsyncs are skipped: the caller makes the write durable later
    (``LocalVault.flush``), and needs ``grown``: the folders whose entries changed
    because this call created folders are appended to it, for the caller to fsync with
    the file (:func:`make_private_dirs`).

    Raises:
        OSError: as raised by the filesystem (callers translate it).
    """
    folder = path.parent
    created = make_private_dirs(folder) if make_dirs else []
    try:
        fd, tmp = _create_temp(folder)
    except FileNotFoundError:
        if make_dirs:
            raise
        # The folder the caller knew was removed meanwhile: create it and try once
        # more, here, where no piece of ``data`` was consumed yet (a streamed write
        # cannot be repeated once its pieces are read).
        created = make_private_dirs(folder)
        fd, tmp = _create_temp(folder)
    if grown is not None:
        grown.extend(created)
    size = 0
    try:
        try:
            if isinstance(data, bytes | bytearray | memoryview):
                size = _write_all(fd, data)
            else:
                for piece in data:  # whatever the pieces raise leaves no file behind
                    size += _write_all(fd, piece)
            if before_rename is not None:
                before_rename(fd)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync:
        fsync_dir(folder)
        for parent in reversed(created):  # the new folders' own entries
            fsync_dir(parent)
    return size


def _create_temp(folder: Path) -> tuple[int, str]:
    """Create a new, empty temp file ``.tmp-<pid>-<n>`` (mode 0600, ``O_EXCL``: never an
    existing file or a symlink planted under that name) in ``folder``; return its fd and
    path. The name is unique in this process; a name taken by another process sharing
    the folder (same pid in another PID namespace, or a leftover of a crash) is skipped."""
    pid = os.getpid()
    for _ in range(100):
        tmp = f"{folder}/{TMP_PREFIX}{pid}-{next(_tmp_counter)}"
        try:
            return os.open(tmp, _TMP_FLAGS, 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temp file name in {folder}")


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> int:
    """``os.write`` until all of ``data`` is written (a write may be short); its size."""
    size = len(data) if not isinstance(data, memoryview) else data.nbytes
    written = os.write(fd, data)
    if written < size:
        view = memoryview(data).cast("B")
        while written < size:
            written += os.write(fd, view[written:])
    return size


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<path>.lock`` (0600, folder 0700) for the block:
    several processes sharing one file (a key file) take turns rewriting it.

    Raises:
        OSError: the lock file cannot be created (callers translate it).
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
