"""Telephony sources over HTTP: S3 notifications and Twilio's recording callbacks.

- ``POST /v1/sources/s3-events`` (capability ``ingest``, e.g. a MinIO webhook target
  with ``auth_token = "Bearer <token>"``): a JSON S3 notification (AWS ``Records``,
  SNS envelope, EventBridge; :mod:`streams.sources.notifications`). Every object it
  names must lie under a source binding of the caller's tenant (403
  ``unknown-source`` / ``tenant-mismatch``, audited); then the notification goes to
  ``callvault.s3-events`` as it is, where the worker maps it like one from the topic:
  202 ``{"accepted": n}``.
- ``POST /v1/sources/twilio``: Twilio's ``RecordingStatusCallback``, form-encoded,
  authenticated by its ``X-Twilio-Signature`` (no bearer token; a missing or wrong
  signature is 403 and audited): the media is fetched, landed and its event produced
  (:mod:`streams.sources.twilio`): 202 ``{"recording_id"}``; a callback for a
  recording not completed yet: 200 ``{"status": "skipped"}``.

Refusals answer ``{"error", "reason", "detail"}`` with the source's reason code
(``streams.sources.SourceReason``) and are counted in
``callvault_source_notifications_refused_total{source, reason}``.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from aiohttp import web

from policies import in_tenant
from storage.catalog.audit import AuditDraft
from storage.errors import LandingError
from storage.landing import SIDECAR_SUFFIX
from streams.errors import LandingUnavailable, PayloadTooLarge, SourceRefused, UnsupportedMediaType
from streams.http.context import WebContext, ctx_of
from streams.http.decisions import audit_or_503, require
from streams.sources import Sources
from streams.sources.base import SourceOutcome, SourceReason, refuse
from streams.sources.notifications import MAX_NOTIFICATION_BYTES, parse_s3_notification

__all__ = ["ROUTES"]

log = logging.getLogger(__name__)

_MAX_FORM = 64 * 1024


def _sources(ctx: WebContext) -> Sources:
    if ctx.sources is None:
        raise LandingUnavailable("telephony sources are not enabled on this worker")
    return ctx.sources


async def _refused(
    request: web.Request, source: str, exc: SourceRefused, actor: str, *, counted: bool = False
) -> SourceRefused:
    """Count (as received too, unless ``counted``) and audit a refusal; returns it."""
    ctx = ctx_of(request)
    if not counted:
        ctx.metrics.source_received.labels(source).inc()
    ctx.metrics.source_refused.labels(source, exc.reason).inc()
    await audit_or_503(
        request,
        AuditDraft(
            actor=actor,
            action="source.refused",
            outcome="denied",
            reason=exc.reason,
            recording_id=None,
            details={"source": source, "route": request.path},
        ),
    )
    return exc


async def _body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body larger than {limit} bytes")
    body = await request.content.read(limit + 1)
    if len(body) > limit:
        raise PayloadTooLarge(f"body larger than {limit} bytes")
    return body


async def post_s3_events(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    principal = await require(request, "ingest")
    sources = _sources(ctx)
    actor = f"user:{principal.user}"
    body = await _body(request, MAX_NOTIFICATION_BYTES)
    try:
        notices = parse_s3_notification(body)
        for notice in notices:
            key = notice.key.removesuffix(SIDECAR_SUFFIX)
            binding = sources.bindings.s3_for(notice.bucket, key) or (
                sources.bindings.connect_for_object(notice.bucket, key)
            )
            if binding is None:
                raise refuse(
                    SourceReason.UNKNOWN_SOURCE, "no S3 source covers an object named", status=403
                )
            if not in_tenant(principal, binding.defaults.tenant, ctx.services.policy):
                raise refuse(
                    SourceReason.TENANT_MISMATCH,
                    "an object named lies under another tenant's source",
                    status=403,
                )
    except SourceRefused as exc:
        raise await _refused(request, "s3", exc, actor) from None
    if ctx.publish_s3_event is None:
        raise LandingUnavailable("this worker does not consume callvault.s3-events")
    if notices:
        await ctx.publish_s3_event(body, f"{notices[0].bucket}/{notices[0].key}")
    return web.json_response({"accepted": len(notices)}, status=202)


async def post_twilio(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    sources = _sources(ctx)
    if request.content_type != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType("Twilio callbacks are application/x-www-form-urlencoded")
    raw = await _body(request, _MAX_FORM)
    try:
        params = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        exc = refuse(SourceReason.MALFORMED, "the callback body is not UTF-8")
        raise await _refused(request, "twilio", exc, "source:twilio") from None
    account = dict(params).get("AccountSid", "")
    binding = sources.bindings.twilio_for(account)
    # The URL Twilio signed: the public base it was told, or the URL as received.
    url = (
        f"{binding.public_url}{request.path_qs}"
        if binding is not None and binding.public_url
        else str(request.url)
    )
    ctx.metrics.source_received.labels("twilio").inc()
    try:
        outcome: SourceOutcome = await sources.twilio.handle(
            url, params, request.headers.get("X-Twilio-Signature")
        )
    except SourceRefused as exc:
        raise await _refused(request, "twilio", exc, "source:twilio", counted=True) from None
    except LandingError as exc:
        log.error("Twilio media could not be landed: %s", exc)
        raise LandingUnavailable("could not store the recording for ingest") from None
    outcome.count(ctx.metrics)
    if outcome.status != "mapped" or outcome.recording_id is None:
        return web.json_response({"status": outcome.status, "reason": outcome.reason})
    await ctx.publish_recording(outcome.payload, outcome.recording_id)
    return web.json_response(
        {"recording_id": outcome.recording_id, "status": "accepted"}, status=202
    )


ROUTES = [
    web.post("/v1/sources/s3-events", post_s3_events),
    web.post("/v1/sources/twilio", post_twilio),
]
