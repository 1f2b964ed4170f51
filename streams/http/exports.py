"""``GET /v1/privacy-requests/{id}/export``: a disclosure's export as a ZIP, decrypted
on the fly, never written to disk.

Who: the ``compliance-officer`` role only (and it must hold ``privacy-requests``), of
the request's tenant; anyone else is 403, audited ``privacy.export-denied``. What:

- 404 ``no-export``: the request has no export (not a disclosure, or not carried out),
  or it is another tenant's;
- 502 ``integrity-failure`` / ``export-tampered``: the stored manifest's signature no
  longer verifies;
- 410 ``export-expired``: past its expiry (``exports.expiry_days`` in the policy,
  default 7 days after the disclosure; file the request again for a fresh one);
- 410 ``export-erased``: the customer was erased since (a recording of the manifest is
  erased or its key destroyed); 410 ``export-stale``: a recording of it has expired;
- 200 ``application/zip``: ``manifest.json`` (the signed manifest), then per released
  recording ``audio/<n>-<id>.wav`` (the stored codec, exactly as stored) and
  ``metadata/<n>-<id>.json``. Each download is counted and audited
  (``privacy.export-downloaded``: request id, export id, recordings, download number)
  before the first byte.

The ZIP is written by a thread into a bounded queue the response drains (at most a
few 64 KiB chunks in memory per download), each recording read chunk by chunk
(``KeyService.open_ranges``); a failing chunk (tampering) cuts the download.
"""

from __future__ import annotations

import asyncio
import json
import queue
import re
import threading
import zipfile
from typing import Any

from aiohttp import web

from policies import Principal, in_tenant
from storage.catalog.audit import AuditDraft
from storage.catalog.exports import DisclosureExport
from storage.errors import KeyDestroyed, StorageError
from storage.types import RecordingRow, RecordingState
from streams.errors import AccessDenied, AudioFailure, AuditUnavailable, NotFound
from streams.http.context import ctx_of, run
from streams.http.decisions import audit_or_503, require

__all__ = ["ROUTES", "EXPORT_ROLE"]

#: The one role that may download a customer's export.
EXPORT_ROLE = "compliance-officer"
_WINDOW = 256 * 1024  # plaintext bytes decrypted per step (4 envelope chunks)
_QUEUE_CHUNKS = 8
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class _QueueWriter:
    """A write-only file for :class:`zipfile.ZipFile` that hands chunks to a bounded
    queue (``None`` ends the stream; an exception instance aborts it)."""

    def __init__(self, chunks: queue.Queue[bytes | BaseException | None]) -> None:
        self._chunks = chunks
        self._written = 0
        self.cancelled = threading.Event()

    def write(self, data: bytes, /) -> int:
        if self.cancelled.is_set():
            raise OSError("the download was cancelled")
        if data:
            self._chunks.put(bytes(data))
            self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None


def _entry_name(index: int, recording_id: str) -> str:
    return f"{index:03d}-{_SAFE.sub('_', recording_id)[:80]}"


def _check_current(export: DisclosureExport, rows: dict[str, RecordingRow], ctx: Any) -> None:
    """Raises AudioFailure 410 when the manifest no longer describes what may go out."""
    for item in export.manifest.get("exported", []):
        row = rows.get(str(item.get("recording_id")))
        if row is None or row.state is RecordingState.ERASED:
            raise AudioFailure(
                410, "gone", "export-erased", "the customer's recordings were erased since"
            )
        key = ctx.services.catalog.get_subject_key_by_id(row.subject_key_id)
        if key is None or key.wrapped_key is None:
            raise AudioFailure(
                410, "gone", "export-erased", "the customer's key was destroyed (erased)"
            )
        if row.state is not RecordingState.STORED or row.object_key != item.get("object_key"):
            raise AudioFailure(
                410,
                "gone",
                "export-stale",
                "a recording of this export has expired or changed; file the request again",
            )


def _write_zip(export: DisclosureExport, rows: dict[str, RecordingRow], ctx: Any,
               out: _QueueWriter) -> None:  # fmt: skip
    keys, vault = ctx.services.keys, ctx.services.vault
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        archive.writestr(
            "manifest.json", json.dumps(export.signed_manifest(), indent=2, sort_keys=True)
        )
        for index, item in enumerate(export.manifest.get("exported", []), start=1):
            row = rows[str(item["recording_id"])]
            name = _entry_name(index, row.recording_id)

            def fetch(start: int, end: int, key: str = row.object_key) -> bytes:
                data: bytes = vault.get_range(key, start, end)
                return data

            ranges = keys.open_ranges(fetch)
            ranges.unlock()  # a shredded key is reported before any byte of this entry
            size = ranges.header.plaintext_size
            with archive.open(f"audio/{name}.wav", "w", force_zip64=size > 0xFFFF0000) as entry:
                for start in range(0, size, _WINDOW):
                    entry.write(ranges.read(start, min(size, start + _WINDOW) - 1))
            metadata = {
                "recording_id": row.recording_id,
                "started_at": row.started_at.isoformat(),
                "ended_at": row.ended_at.isoformat(),
                "duration_ms": row.duration_ms,
                "queue": row.queue,
                "direction": row.direction,
                "purposes": list(row.purposes),
                "audio_format": row.audio_format,
                "sample_rate": row.sample_rate,
                "channels": row.channels,
                "pci_silenced_ms": row.pci_redacted_ms,
                "retain_until": row.retain_until.isoformat(),
            }
            archive.writestr(f"metadata/{name}.json", json.dumps(metadata, indent=2))


async def _stream(
    request: web.Request, export: DisclosureExport, rows: dict[str, RecordingRow]
) -> web.StreamResponse:
    ctx = ctx_of(request)
    loop = asyncio.get_running_loop()
    chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=_QUEUE_CHUNKS)
    writer = _QueueWriter(chunks)

    def produce() -> None:
        try:
            _write_zip(export, rows, ctx, writer)
        except BaseException as exc:  # handed to the response, which cuts the download
            chunks.put(exc)
            return
        chunks.put(None)

    producer = loop.run_in_executor(None, produce)
    first = await loop.run_in_executor(None, chunks.get)
    if isinstance(first, BaseException):
        await producer
        raise _failure(first)
    response = web.StreamResponse(
        status=200,
        headers={
            "Content-Type": "application/zip",
            "Content-Disposition": f'attachment; filename="{export.request_id}-export.zip"',
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
        },
    )
    await response.prepare(request)
    try:
        chunk: bytes | BaseException | None = first
        while chunk is not None:
            if isinstance(chunk, BaseException):
                raise _failure(chunk)  # mid-stream: the connection is cut, no clean end
            await response.write(chunk)
            chunk = await loop.run_in_executor(None, chunks.get)
    except BaseException:
        writer.cancelled.set()
        _drain(chunks)
        await producer
        raise
    await producer
    await response.write_eof()
    return response


def _drain(chunks: queue.Queue[bytes | BaseException | None]) -> None:
    """Unblock the producer after a cut download."""
    while True:
        try:
            chunks.get_nowait()
        except queue.Empty:
            return


def _failure(exc: BaseException) -> BaseException:
    if isinstance(exc, KeyDestroyed):
        return AudioFailure(410, "gone", "export-erased", "the customer's key was destroyed")
    if isinstance(exc, StorageError):
        return AudioFailure(
            502, "integrity-failure", "integrity-failure", "a recording could not be read"
        )
    return exc


def _rows(ctx: Any, export: DisclosureExport) -> dict[str, RecordingRow]:
    ids = [str(item.get("recording_id")) for item in export.manifest.get("exported", [])]
    rows: dict[str, RecordingRow] = ctx.services.endoflife.rows_by_id(ids)
    return rows


async def download_export(request: web.Request) -> web.StreamResponse:
    ctx = ctx_of(request)
    principal: Principal = await require(request, "privacy-requests")
    request_id = request.match_info["request_id"]
    if principal.role != EXPORT_ROLE:
        await audit_or_503(
            request,
            AuditDraft(
                actor=f"user:{principal.user}",
                action="privacy.export-denied",
                outcome="denied",
                reason="role-not-allowed-export",
                details={"request_id": request_id, "role": principal.role},
            ),
        )
        raise AccessDenied("role-not-allowed-export", "only a compliance officer may download")
    exports = ctx.services.exports()
    export = await run(exports.find, request_id)
    if export is None or not in_tenant(principal, export.tenant, ctx.services.policy):
        raise NotFound("this privacy request has no export", "no-export")  # nor another's
    if not export.verified:
        raise AudioFailure(
            502, "integrity-failure", "export-tampered", "the export manifest does not verify"
        )
    if export.expired(ctx.now()):
        raise AudioFailure(
            410, "gone", "export-expired",
            f"the export expired at {export.expires_at.isoformat()}; file the request again",
        )  # fmt: skip
    rows = await run(_rows, ctx, export)
    await run(_check_current, export, rows, ctx)
    released = len(export.manifest.get("exported", []))
    try:
        await run(
            exports.count_download,
            export,
            AuditDraft(
                actor=f"user:{principal.user}",
                action="privacy.export-downloaded",
                outcome="granted",
                reason="customer-disclosure",
                details={
                    "request_id": export.request_id,
                    "export_id": export.export_id,
                    "recordings": released,
                },
            ),
        )
    except StorageError as exc:
        raise AuditUnavailable(
            f"the download cannot be audited; retry ({type(exc).__name__})"
        ) from None
    return await _stream(request, export, rows)


ROUTES = [web.get("/v1/privacy-requests/{request_id}/export", download_export)]
