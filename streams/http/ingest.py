"""``POST /v1/recordings`` (capability ``ingest``): audio pushed by a PBX.

The body is multipart with a ``metadata`` JSON part (the event without
``audio.uri``; ``audio.sha256`` optional, checked when given) and an ``audio`` part.
The view lands the audio, writes its sidecar event, produces the event to
``callvault.recordings`` and answers 202 with the recording id; the ingest agent does
the rest, as for an event from the topic.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from aiohttp import web

from storage.errors import LandingRejected, StorageError
from streams.bounds import load_json
from streams.errors import (
    BadRequest,
    InputRejected,
    LandingUnavailable,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from streams.events import SCHEMA_V1, parse_recording_event
from streams.http.context import ctx_of, run
from streams.http.decisions import require

__all__ = ["ROUTES"]

log = logging.getLogger(__name__)

_MAX_METADATA = 64 * 1024


async def _parts(request: web.Request, limit: int) -> tuple[dict[str, Any], bytes]:
    """The ``metadata`` object and the ``audio`` bytes of the multipart body."""
    if not request.content_type.startswith("multipart/"):
        raise UnsupportedMediaType("send multipart/form-data with metadata and audio")
    metadata: dict[str, Any] | None = None
    audio: bytes | None = None
    try:
        reader = await request.multipart()
        async for part in reader:
            if part.name == "metadata":  # type: ignore[union-attr]
                raw = await part.read(decode=False)  # type: ignore[union-attr]
                if len(raw) > _MAX_METADATA:
                    raise PayloadTooLarge("metadata larger than 64 KiB")
                try:
                    metadata = load_json(raw, max_bytes=_MAX_METADATA, multiline=False)
                except InputRejected as exc:
                    raise BadRequest(
                        f"metadata is not usable JSON: {exc.detail}", "malformed"
                    ) from None
            elif part.name == "audio":  # type: ignore[union-attr]
                chunks, size = [], 0
                while chunk := await part.read_chunk(1 << 16):  # type: ignore[union-attr]
                    size += len(chunk)
                    if size > limit:
                        raise PayloadTooLarge(f"audio larger than {limit} bytes")
                    chunks.append(chunk)
                audio = b"".join(chunks)
    except (ValueError, AssertionError) as exc:
        raise BadRequest(f"malformed multipart body: {exc}", None) from None
    if not isinstance(metadata, dict) or audio is None:
        raise BadRequest("need a JSON object part 'metadata' and a part 'audio'", None)
    if not audio:
        raise BadRequest("audio part is empty", None)
    return metadata, audio


async def post_recording(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    principal = await require(request, "ingest")
    metadata, audio = await _parts(request, ctx.services.config.max_audio_bytes)
    digest = hashlib.sha256(audio).hexdigest()
    meta_audio = metadata.get("audio") if isinstance(metadata.get("audio"), dict) else {}
    declared = meta_audio.get("sha256")  # type: ignore[union-attr]
    if declared is not None and declared != digest:
        raise BadRequest("audio does not match metadata.audio.sha256", "sha256-mismatch")
    audio_format = str(meta_audio.get("format", "wav"))  # type: ignore[union-attr]
    event = {**metadata, "schema": metadata.get("schema", SCHEMA_V1)}
    event["audio"] = {"uri": "file:///pending", "format": audio_format, "sha256": digest}
    # EventRejected: 400 invalid-event (before anything is landed)
    parsed = parse_recording_event(event, now=ctx.now(), window=ctx.services.config.call_window)
    # The landing file is named by a keyed hash: recording ids may hold characters a
    # file name may not (":"), or personal data some PBXs put there.
    name = ctx.services.keyring.pseudonymize(parsed.tenant, f"landing:{parsed.recording_id}")
    landing = ctx.services.landing
    try:
        uri = await run(landing.land, f"{name[:40]}.{parsed.audio.format}", audio)
        event["audio"]["uri"] = uri
        await run(landing.write_sidecar, uri, event)
    except LandingRejected:
        raise  # 400 invalid-event with its reason
    except StorageError as exc:
        log.error("landing write failed: %s", exc)
        raise LandingUnavailable("could not store the audio for ingest") from None
    await ctx.publish_recording(json.dumps(event).encode(), parsed.recording_id)
    log.info("recording %s accepted over HTTP from %s", parsed.recording_id, principal.user)
    return web.json_response(
        {"recording_id": parsed.recording_id, "status": "accepted", "sha256": digest}, status=202
    )


ROUTES = [web.post("/v1/recordings", post_recording)]
