"""Files an operator names: read whole, bounded, and only when they are regular files.

Configuration, policy, import manifests, privacy requests, deletion receipts and secret
files are named by a person or a deployment, not produced by callvault, so each may be
anything a path can name. :func:`read_input_file` opens it without blocking (a FIFO
named by mistake would otherwise hang the process forever), refuses a folder, FIFO,
socket or device (``/dev/zero`` would fill the memory), and refuses a file larger than
the caller's bound before reading it. Every refusal is an
:class:`~callvault.errors.InputFileError` whose message names the file and the reason;
callers re-raise it as their own error (``ConfigError``, ``ManifestError``, ...).

A leaf module: it imports nothing of callvault but :mod:`callvault.errors`, so every
layer may use it (tests/test_layering.py).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from callvault.errors import InputFileError

__all__ = ["read_input_file", "read_input_text"]

_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def read_input_file(path: Path | str, *, max_bytes: int, what: str = "file") -> bytes:
    """The bytes of the regular file ``path`` (at most ``max_bytes``).

    ``what`` names the file in messages (``"manifest"``, ``"policy file"``).

    Raises:
        InputFileError: missing or unreadable (the OS's reason), not a regular file,
            or larger than ``max_bytes`` (also when it grew while read).
    """
    try:
        fd = os.open(path, _FLAGS)
    except OSError as exc:
        raise InputFileError(f"cannot read {what} {path}: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputFileError(
                f"{what} {path} is not a regular file (a folder, FIFO, socket or device)"
            )
        if info.st_size > max_bytes:
            raise InputFileError(
                f"{what} {path} has {info.st_size} bytes, more than the {max_bytes} allowed"
            )
        os.set_blocking(fd, True)
        pieces, size = [], 0
        while piece := os.read(fd, min(1 << 20, max_bytes + 1 - size)):
            pieces.append(piece)
            size += len(piece)
            if size > max_bytes:
                raise InputFileError(f"{what} {path} has more than the {max_bytes} bytes allowed")
    except OSError as exc:
        raise InputFileError(f"cannot read {what} {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    return b"".join(pieces)


def read_input_text(
    path: Path | str, *, max_bytes: int, what: str = "file", encoding: str = "utf-8"
) -> str:
    """:func:`read_input_file`, decoded (``utf-8-sig`` drops a byte-order mark).

    Raises:
        InputFileError: as :func:`read_input_file`, or the bytes are not ``encoding``.
    """
    raw = read_input_file(path, max_bytes=max_bytes, what=what)
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InputFileError(
            f"cannot read {what} {path}: not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from exc
