"""The worker's HTTP server (aiohttp): ingest API, health and metrics.

Every error is JSON with a stable ``error`` code (and a ``reason`` where a decision
or a token check produced one)::

    {"error": "unauthorized", "reason": "token-expired", "detail": "token has expired"}

Authentication is ``Authorization: Bearer <token>``; every refused token is audited
(``auth.denied``) before the 401 goes out.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from policies import Principal, decide_capability
from storage.catalog.audit import AuditDraft
from storage.errors import LandingError, StorageError
from storage.landing import LandingRejected
from streams.errors import EventRejected
from streams.events import SCHEMA_V1, parse_recording_event
from streams.http.auth import AuthError, TokenVerifier
from streams.metrics import Metrics
from streams.services import Services

__all__ = ["WebContext", "build_web_app", "json_error", "authenticate", "require", "audit_or_503"]

log = logging.getLogger(__name__)

CONTEXT_KEY: web.AppKey[WebContext] = web.AppKey("callvault", None)


@dataclass
class WebContext:
    services: Services
    metrics: Metrics
    tokens: TokenVerifier
    publish_recording: Callable[[bytes, str], Awaitable[None]]  # (event, recording id)
    health: Callable[[], dict[str, Any]]

    def now(self) -> datetime:
        return self.services.clock()


def json_error(status: int, error: str, detail: str, reason: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": error, "detail": detail}
    if reason:
        body["reason"] = reason
    return web.json_response(body, status=status)


def ctx_of(request: web.Request) -> WebContext:
    return request.app[CONTEXT_KEY]


async def authenticate(request: web.Request) -> Principal:
    """The caller's principal, or raise an HTTP 401 (audited first)."""
    ctx = ctx_of(request)
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else ""
    try:
        if not token:
            raise AuthError("token-missing", "send Authorization: Bearer <token>")
        return ctx.tokens.verify(token, ctx.now())
    except AuthError as exc:
        draft = AuditDraft(
            actor="anonymous",
            action="auth.denied",
            outcome="denied",
            reason=exc.reason,
            recording_id=None,
            details={
                "route": request.match_info.route.resource.canonical
                if request.match_info.route.resource
                else request.path
            },
        )
        await audit_or_503(request, draft)
        raise web.HTTPUnauthorized(
            text=json.dumps({"error": "unauthorized", "reason": exc.reason, "detail": exc.detail}),
            content_type="application/json",
            headers={"WWW-Authenticate": 'Bearer realm="callvault"'},
        ) from None


async def audit_or_503(request: web.Request, draft: AuditDraft) -> None:
    """Append ``draft``; when the audit log cannot be written, answer 503
    ``audit-unavailable`` (no decision goes out unaudited)."""
    try:
        await _run(request, ctx_of(request).services.audit.append, draft)
    except StorageError as exc:  # AuditError, CatalogError
        log.error("audit write failed: %s", exc)
        raise web.HTTPServiceUnavailable(
            text=json.dumps(
                {"error": "audit-unavailable", "detail": "the audit log cannot be written; retry"}
            ),
            content_type="application/json",
        ) from None


async def require(request: web.Request, capability: str) -> Principal:
    """Authenticate and check a non-audio capability (403 with a reason when missing)."""
    ctx = ctx_of(request)
    principal = await authenticate(request)
    decision = decide_capability(principal, capability, ctx.services.policy, ctx.now())
    if decision.decision != "allow":
        await audit_or_503(
            request,
            AuditDraft(
                actor=f"user:{principal.user}",
                action=f"{capability}.denied",
                outcome="denied",
                reason=str(decision.reason),
                recording_id=None,
                details={"role": principal.role},
            ),
        )
        raise web.HTTPForbidden(
            text=json.dumps(
                {
                    "error": "forbidden",
                    "reason": str(decision.reason),
                    "detail": f"{capability} not allowed",
                }
            ),
            content_type="application/json",
        )
    return principal


async def _run(request: web.Request, func: Callable[..., Any], *args: Any) -> Any:
    """Run blocking storage work off the event loop."""
    import asyncio

    return await asyncio.get_running_loop().run_in_executor(None, func, *args)


# -- views -------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    status = ctx_of(request).health()
    return web.json_response(status, status=200 if status.get("status") == "ok" else 503)


async def metrics_view(request: web.Request) -> web.Response:
    body = ctx_of(request).metrics.exposition()
    return web.Response(
        body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
    )


async def post_recording(request: web.Request) -> web.Response:
    """``POST /v1/recordings``: multipart with a ``metadata`` JSON part (the event
    without ``audio.uri``; ``audio.sha256`` optional, checked when given) and an
    ``audio`` part. Lands the audio, writes its sidecar, produces the event.
    Responds 202 with the recording id."""
    ctx = ctx_of(request)
    principal = await require(request, "ingest")
    if not request.content_type.startswith("multipart/"):
        return json_error(
            415, "unsupported-media-type", "send multipart/form-data with metadata and audio"
        )
    metadata: dict[str, Any] | None = None
    audio: bytes | None = None
    limit = ctx.services.config.max_audio_bytes
    try:
        reader = await request.multipart()
        async for part in reader:
            if part.name == "metadata":  # type: ignore[union-attr]
                raw = await part.read(decode=False)  # type: ignore[union-attr]
                if len(raw) > 64 * 1024:
                    return json_error(413, "too-large", "metadata larger than 64 KiB")
                try:
                    metadata = json.loads(raw)
                except ValueError:
                    return json_error(
                        400, "bad-request", "metadata is not JSON", reason="malformed"
                    )
            elif part.name == "audio":  # type: ignore[union-attr]
                chunks, size = [], 0
                while chunk := await part.read_chunk(1 << 16):  # type: ignore[union-attr]
                    size += len(chunk)
                    if size > limit:
                        return json_error(413, "too-large", f"audio larger than {limit} bytes")
                    chunks.append(chunk)
                audio = b"".join(chunks)
    except (ValueError, AssertionError) as exc:
        return json_error(400, "bad-request", f"malformed multipart body: {exc}")
    if not isinstance(metadata, dict) or audio is None:
        return json_error(
            400, "bad-request", "need a JSON object part 'metadata' and a part 'audio'"
        )
    if not audio:
        return json_error(400, "bad-request", "audio part is empty")

    digest = hashlib.sha256(audio).hexdigest()
    meta_audio = metadata.get("audio") if isinstance(metadata.get("audio"), dict) else {}
    declared = meta_audio.get("sha256")  # type: ignore[union-attr]
    if declared is not None and declared != digest:
        return json_error(
            400,
            "bad-request",
            "audio does not match metadata.audio.sha256",
            reason="sha256-mismatch",
        )
    audio_format = str(meta_audio.get("format", "wav"))  # type: ignore[union-attr]
    event = {**metadata, "schema": metadata.get("schema", SCHEMA_V1)}
    event["audio"] = {"uri": "file:///pending", "format": audio_format, "sha256": digest}
    try:
        parsed = parse_recording_event(event, now=ctx.now())
    except EventRejected as exc:
        return json_error(400, "invalid-event", exc.detail, reason=exc.reason)
    # The landing file is named by a keyed hash: recording ids may hold characters a
    # file name may not (":"), or personal data some PBXs put there.
    name = ctx.services.keyring.pseudonymize(parsed.tenant, f"landing:{parsed.recording_id}")
    try:
        uri = await _run(
            request, ctx.services.landing.land, f"{name[:40]}.{parsed.audio.format}", audio
        )
        event["audio"]["uri"] = uri
        await _run(request, ctx.services.landing.write_sidecar, uri, event)
    except LandingRejected as exc:
        return json_error(400, "invalid-event", "cannot land this audio", reason=exc.reason)
    except (LandingError, StorageError) as exc:
        log.error("landing write failed: %s", exc)
        return json_error(503, "landing-unavailable", "could not store the audio for ingest")
    await ctx.publish_recording(json.dumps(event).encode(), parsed.recording_id)
    log.info("recording %s accepted over HTTP from %s", parsed.recording_id, principal.user)
    return web.json_response(
        {"recording_id": parsed.recording_id, "status": "accepted", "sha256": digest}, status=202
    )


@web.middleware
async def count_requests(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    ctx = ctx_of(request)
    route = (
        request.match_info.route.resource.canonical
        if request.match_info.route.resource
        else "unmatched"
    )
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        ctx.metrics.http_requests.labels(route, f"{exc.status // 100}xx").inc()
        raise
    except Exception:
        ctx.metrics.http_requests.labels(route, "5xx").inc()
        log.exception("unhandled error on %s", route)
        return json_error(500, "internal", "internal error; see the worker log")
    ctx.metrics.http_requests.labels(route, f"{response.status // 100}xx").inc()
    return response


def build_web_app(
    ctx: WebContext, extra_routes: list[web.RouteDef] | None = None
) -> web.Application:
    app = web.Application(
        middlewares=[count_requests],
        client_max_size=ctx.services.config.max_audio_bytes + (1 << 20),
    )
    app[CONTEXT_KEY] = ctx
    app.add_routes(
        [
            web.get("/healthz", healthz),
            web.get("/metrics", metrics_view),
            web.post("/v1/recordings", post_recording),
            *(extra_routes or []),
        ]
    )
    return app
