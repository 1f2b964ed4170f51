"""Private, durable files: the one place the storage layer creates files and folders.

Every file written here is ``0600`` in folders ``0700`` (created with those modes,
whatever the umask), written atomically (temp file + rename) and, unless asked not
to, fsynced together with its folder so the rename survives a crash.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
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


def make_private_dirs(path: Path) -> None:
    """Create ``path`` and missing parents with mode 0700.

    Raises:
        OSError: as raised by the filesystem (callers translate it).
    """
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)
            os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask


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
) -> int:
    """Write ``data`` (bytes, or pieces written as they come) to ``path`` so a reader
    sees all of it or the previous content; return the bytes written.

    Missing folders are created with mode 0700 (with ``make_dirs`` False, the caller
    knows the folder exists: it is created only when the temp file finds it gone). A
    temp file ``.tmp-*`` in the same folder (mode 0600) is written, handed to
    ``before_rename(fd)`` (e.g. to set an xattr that must appear with the content),
    fsynced, renamed over ``path`` and the folder fsynced, so the rename survives a
    crash; no temp file is left behind on error. With ``sync=False`` both fsyncs are
    skipped: the caller makes the write durable later (``LocalVault.flush``).

    Raises:
        OSError: as raised by the filesystem (callers translate it).
    """
    folder = path.parent
    if make_dirs:
        make_private_dirs(folder)
    try:
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=folder)
    except FileNotFoundError:
        if make_dirs:
            raise
        # The folder the caller knew was removed meanwhile: create it and try once
        # more, here, where no piece of ``data`` was consumed yet (a streamed write
        # cannot be repeated once its pieces are read).
        make_private_dirs(folder)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=folder)
    size = 0
    try:
        with os.fdopen(fd, "wb") as handle:
            if isinstance(data, bytes | bytearray | memoryview):
                size = handle.write(data)
            else:
                for piece in data:  # whatever the pieces raise leaves no file behind
                    size += handle.write(piece)
            if before_rename is not None:
                handle.flush()
                before_rename(handle.fileno())
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync:
        fsync_dir(folder)
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
