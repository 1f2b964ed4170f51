"""Decrypted audio over HTTP: read a sealed recording by plaintext range and stream it.

What a caller may rely on:

- :func:`prepare_audio` (blocking; run it in an executor) checks the object against
  the catalog (size, recording id), unwraps the data key, resolves the ``Range``
  header and decrypts the first window; it has no side effects (no audit, no
  metrics), so it may run while the grant's audit record is being committed.
- :func:`stream_audio` sends the status line only after that first window was
  authenticated, then decrypts later windows (whole chunks only, never more than a
  range covers) in a thread while the previous window is written. A chunk that fails
  authentication mid-stream cuts the connection: its bytes are never produced.
- Failures are :class:`AudioFailure` with the HTTP status, ``error`` and ``reason``
  codes: ``integrity-failure`` (502; tampered, truncated or missing object),
  ``key-destroyed`` (410; crypto-shredded subject), ``key-unavailable`` (500),
  ``vault-unavailable`` (503). :class:`~streams.http.ranges.RangeNotSatisfiable` for 416.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from storage.crypto.envelope import EnvelopeHeader
from storage.crypto.keys import KeyService, RecordingRanges
from storage.errors import (
    IntegrityError,
    KeyDestroyed,
    KeyringError,
    RecordingNotFound,
    StorageError,
)
from storage.types import RecordingRow
from storage.vault import Vault
from streams.errors import INTEGRITY_FAILURE, AudioFailure
from streams.http.ranges import content_range, parse_range

__all__ = [
    "AudioFailure",
    "AudioReader",
    "PreparedAudio",
    "prepare_audio",
    "stream_audio",
    "INTEGRITY_FAILURE",
    "OBJECT_MISSING",
    "KEY_DESTROYED",
]

OBJECT_MISSING = "object-missing"
KEY_DESTROYED = "key-destroyed"


def _integrity(detail: str, reason: str = INTEGRITY_FAILURE) -> AudioFailure:
    return AudioFailure(502, INTEGRITY_FAILURE, reason, detail)


def _vault_down() -> AudioFailure:
    return AudioFailure(503, "vault-unavailable", "vault", "the vault could not be read")


class AudioReader:
    """Reads and decrypts one recording's object by plaintext range (blocking calls)."""

    def __init__(self, vault: Vault, keys: KeyService, row: RecordingRow) -> None:
        self._vault = vault
        self._keys = keys
        self._row = row
        self._ranges: RecordingRanges | None = None

    def _fetch(self, start: int, end: int) -> bytes:
        key = self._row.object_key
        try:
            return self._vault.get_range(key, start, end)
        except RecordingNotFound:
            raise
        except StorageError:
            # A range past the end of a shortened object: let the envelope see it short.
            if start >= self._vault.head(key).size:
                return b""
            raise

    def open(self) -> EnvelopeHeader:
        """Check the object and unwrap its data key. Raises AudioFailure."""
        row = self._row
        try:
            # A truncated or extended object is refused before anything is decrypted.
            if self._vault.head(row.object_key).size != row.stored_size:
                raise IntegrityError("the stored object's size differs from the catalog's")
            ranges = self._keys.open_ranges(self._fetch)
            header = ranges.header
            if not self._keys.header_matches(header, row.recording_id):
                raise IntegrityError("the stored object belongs to another recording")
            if header.sealed_size(ranges.header_len) != row.stored_size:
                raise IntegrityError("the object's header disagrees with the catalog's size")
            ranges.unlock()
        except RecordingNotFound as exc:
            raise _integrity("the recording's object is missing", OBJECT_MISSING) from exc
        except IntegrityError as exc:
            raise _integrity(
                "the stored recording failed its integrity check; nothing was served"
            ) from exc
        except KeyDestroyed as exc:
            raise AudioFailure(
                410, "gone", KEY_DESTROYED, "the recording was erased (its key was destroyed)"
            ) from exc
        except KeyringError as exc:
            raise AudioFailure(
                500, "key-unavailable", "keyring", "the recording's key could not be unwrapped"
            ) from exc
        except StorageError as exc:
            raise _vault_down() from exc
        self._ranges = ranges
        return header

    def read(self, start: int, end: int) -> bytes:
        """Plaintext ``[start, end]`` (inclusive), authenticated. Raises AudioFailure."""
        assert self._ranges is not None, "open() first"
        try:
            return self._ranges.read(start, end)
        except RecordingNotFound as exc:
            raise _integrity("the recording's object is missing", OBJECT_MISSING) from exc
        except IntegrityError as exc:
            raise _integrity("the stored recording failed its integrity check") from exc
        except StorageError as exc:
            raise _vault_down() from exc


@dataclass(frozen=True)
class PreparedAudio:
    """Everything needed to start the response: the selected range and its first window."""

    reader: AudioReader
    header: EnvelopeHeader
    size: int
    start: int
    end: int
    partial: bool
    first: bytes
    etag: str


def window_end(start: int, chunk: int, window: int) -> int:
    """Last byte of a decryption window from ``start``: whole chunks, at least one."""
    return (start // chunk + max(1, window // chunk)) * chunk - 1


def prepare_audio(
    vault: Vault,
    keys: KeyService,
    row: RecordingRow,
    range_header: str | None,
    if_range: str | None,
    first_window: int,
) -> PreparedAudio:
    """Open the object, resolve the range and decrypt the first window (blocking).

    Raises:
        AudioFailure: the object is missing, tampered, erased, or the vault is down.
        RangeNotSatisfiable: the range selects no byte.
    """
    reader = AudioReader(vault, keys, row)
    header = reader.open()
    size = header.plaintext_size
    etag = f'"{row.ciphertext_sha256[:32]}"'
    if if_range is not None and if_range != etag:
        range_header = None
    selected = parse_range(range_header, size)
    start, end = selected if selected is not None else (0, size - 1)
    first = b""
    if size:
        first = reader.read(start, min(end, window_end(start, header.chunk_size, first_window)))
    return PreparedAudio(reader, header, size, start, end, selected is not None, first, etag)


async def stream_audio(
    request: web.Request,
    prepared: PreparedAudio,
    *,
    filename: str | None,
    window: int,
    on_bytes: Callable[[int], None],
    on_failure: Callable[[AudioFailure], Awaitable[object]],
) -> web.StreamResponse:
    """Send ``prepared`` (200 or 206); ``filename`` makes it an attachment (download).

    ``on_bytes(n)`` counts bytes sent; ``on_failure`` is awaited when a later window
    fails, before the connection is cut.
    """
    loop = asyncio.get_running_loop()
    header, start, end, size = prepared.header, prepared.start, prepared.end, prepared.size
    response = web.StreamResponse(
        status=206 if prepared.partial else 200,
        headers={
            "Content-Type": header.content_type or "audio/wav",
            "Accept-Ranges": "bytes",
            "Content-Disposition": f'attachment; filename="{filename}"' if filename else "inline",
            "Cache-Control": "no-store, private",
            "ETag": prepared.etag,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )
    if prepared.partial:
        response.headers["Content-Range"] = content_range(start, end, size)
    response.content_length = end - start + 1 if size else 0
    await response.prepare(request)

    def schedule(position: int) -> tuple[int, asyncio.Future[bytes]] | None:
        if not size or position > end:
            return None
        stop = min(end, window_end(position, header.chunk_size, window))
        return stop, loop.run_in_executor(None, prepared.reader.read, position, stop)

    position = start + len(prepared.first)
    pending = schedule(position)  # decrypt the next window while this one is written
    try:
        await response.write(prepared.first)
        on_bytes(len(prepared.first))
        while pending is not None:
            stop, future = pending
            try:
                data = await future
            except AudioFailure as failure:
                pending = None
                # Headers are out: cut the connection so the short body shows as a
                # failed transfer; the failing chunk's bytes were never produced.
                await on_failure(failure)
                response.force_close()
                if request.transport is not None:
                    request.transport.close()
                return response
            pending = schedule(stop + 1)
            await response.write(data)
            on_bytes(len(data))
    except BaseException:
        if pending is not None:  # the client went away: drop the window being decrypted
            pending[1].cancel()
        raise
    await response.write_eof()
    return response
