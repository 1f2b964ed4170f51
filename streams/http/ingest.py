"""Telephony's routes (capability ``ingest``): push audio, and learn what became of it.

``POST /v1/recordings``: the body is multipart with a ``metadata`` JSON part (the
event without ``audio.uri``; ``audio.sha256`` optional, checked when given) and an
``audio`` part. Before answering, the view validates the event and its purposes (400
``invalid-event`` with the reason code), probes the audio (:func:`storage.audio_probe.probe`: its
container is the declared format and its first seconds decode; else 422
``unprocessable`` with ``audio-mislabelled``, ``audio-undecodable`` or
``audio-unsupported``), lands it, claims the landing file for the recording id, writes
its sidecar event, audits ``ingest.accepted`` and produces the event to
``callvault.recordings``; 202 with the recording id. The ingest agent does the rest.

``GET /v1/recordings/{id}/status``: ``accepted | stored | declined | dead-lettered``
with the reason code (and nothing else: no personal data, no URI, no digest), for a
caller whose token is of the recording's tenant (a token naming no tenant is of the
policy's default tenant). A recording it does not know, or of another tenant, is 404
``no-recording``. A token pushes only for its own tenant: an event of another tenant is
403 ``tenant-mismatch`` (audited ``ingest.denied``), before anything is landed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from aiohttp import web

from policies import in_tenant
from storage.audio_probe import probe
from storage.catalog.audit import AuditDraft
from storage.errors import (
    AudioError,
    AudioMislabelled,
    LandingRejected,
    StorageError,
    UnsupportedAudioFormat,
)
from streams.bounds import load_json
from streams.errors import (
    BadRequest,
    InputRejected,
    LandingUnavailable,
    NotFound,
    PayloadTooLarge,
    Unprocessable,
    UnsupportedMediaType,
)
from streams.events import SCHEMA_V1, RejectReason, parse_recording_event
from streams.http.context import ctx_of, run
from streams.http.decisions import audit_or_503, require, require_tenant
from streams.http.params import recording_id_of
from streams.ingest import decide_event
from streams.refs import landing_key, recording_ref
from streams.services import Services

__all__ = ["ROUTES", "STATUSES", "ingest_status"]

log = logging.getLogger(__name__)

_MAX_METADATA = 64 * 1024
#: What the status route answers, by the last ingest audit action of the recording.
STATUSES = {
    "ingest.accepted": "accepted",
    "dlq.replayed": "accepted",
    "ingest.declined": "declined",
    "ingest.rejected": "dead-lettered",
}


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


def _probe(audio: bytes, audio_format: str) -> None:
    """Raise :class:`Unprocessable` for audio telephony should fix and send again."""
    try:
        probe(audio, audio_format)
    except AudioMislabelled as exc:
        raise Unprocessable(str(RejectReason.AUDIO_MISLABELLED), str(exc)) from None
    except UnsupportedAudioFormat as exc:
        raise Unprocessable(str(RejectReason.AUDIO_UNSUPPORTED), str(exc)) from None
    except AudioError as exc:
        raise Unprocessable(str(RejectReason.AUDIO_UNDECODABLE), str(exc)) from None


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
    decide_event(parsed, ctx.services.policy)  # an unknown purpose: 400 now, not a DLQ entry
    await require_tenant(request, principal, parsed.tenant, "ingest")
    await run(_probe, audio, parsed.audio.format)  # Unprocessable: 422, nothing landed
    services = ctx.services
    # The landing file is named by a keyed hash: recording ids may hold characters a
    # file name may not (":"), or personal data some PBXs put there.
    name = services.keyring.pseudonymize(parsed.tenant, f"landing:{parsed.recording_id}")
    landing = services.landing
    try:
        uri = await run(landing.land, f"{name[:40]}.{parsed.audio.format}", audio)
        event["audio"]["uri"] = uri
        # Claimed now, so no other event can take or destroy this file meanwhile.
        await run(
            services.claims.claim,
            [(landing_key(services.keyring, uri), parsed.recording_id, parsed.tenant)],
        )
        await run(landing.write_sidecar, uri, event)
    except LandingRejected:
        raise  # 400 invalid-event with its reason
    except StorageError as exc:
        log.error("landing write failed (%s)", type(exc).__name__)
        raise LandingUnavailable("could not store the audio for ingest") from None
    await audit_or_503(
        request,
        AuditDraft(
            actor=f"user:{principal.user}",
            action="ingest.accepted",
            outcome="ok",
            reason="",
            recording_id=parsed.recording_id,
            details={"tenant": parsed.tenant, "via": "http", "format": parsed.audio.format},
        ),
    )
    try:
        await ctx.publish_recording(json.dumps(event).encode(), parsed.recording_id)
    except Exception as exc:  # the broker: the landed file and its sidecar stay
        log.error("could not queue an accepted upload (%s)", type(exc).__name__)
        raise LandingUnavailable(
            "the audio was landed but could not be queued; send it again"
        ) from None
    log.info(
        "recording %s accepted over HTTP",
        recording_ref(services.keyring, parsed.recording_id),
    )
    return web.json_response(
        {"recording_id": parsed.recording_id, "status": "accepted", "sha256": digest}, status=202
    )


def ingest_status(services: Services, recording_id: str) -> dict[str, Any] | None:
    """``{recording_id, tenant, status, reason, at}`` of one recording, or None when
    nothing is known of it (blocking: catalog and audit log reads)."""
    row = services.catalog.get_recording(recording_id)
    if row is not None:
        return {
            "recording_id": recording_id,
            "tenant": row.tenant,
            "status": "stored",
            "reason": None,
            "at": row.created_at.isoformat(),
        }
    last = None
    for entry in services.audit.iter_entries(recording_id=recording_id):
        if entry.action in STATUSES:
            last = entry
    if last is None:
        return None
    tenant = last.details.get("tenant") if isinstance(last.details, dict) else None
    dead = STATUSES[last.action] == "dead-lettered"
    return {
        "recording_id": recording_id,
        "tenant": tenant if isinstance(tenant, str) else None,
        "status": STATUSES[last.action],
        "reason": (last.reason or None) if dead or last.action == "ingest.declined" else None,
        "at": last.at.isoformat(),
    }


async def recording_status(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    principal = await require(request, "ingest")
    rid = recording_id_of(request)
    status = await run(ingest_status, ctx.services, rid)
    if status is None or not in_tenant(principal, status["tenant"], ctx.services.policy):
        raise NotFound("no such recording", "no-recording")
    return web.json_response(status, headers={"Cache-Control": "no-store"})


ROUTES = [
    web.post("/v1/recordings", post_recording),
    web.get("/v1/recordings/{recording_id}/status", recording_status),
]
