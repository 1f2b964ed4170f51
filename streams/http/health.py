"""``GET /healthz`` (liveness: the event loop answers; no I/O, so a slow catalog never
gets a live worker restarted), ``GET /readyz`` (readiness: 200 ``{"ready": true}`` or
503 with the reasons, from the worker's last check, see :mod:`streams.readiness`) and
``GET /metrics`` (Prometheus exposition). None needs a token."""

from __future__ import annotations

from aiohttp import web

from streams.http.context import ctx_of

__all__ = ["ROUTES"]


async def healthz(request: web.Request) -> web.Response:
    status = ctx_of(request).health()
    return web.json_response(status, status=200 if status.get("status") == "ok" else 503)


async def readyz(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    report = ctx.readiness() if ctx.readiness is not None else {"ready": True, "reasons": []}
    return web.json_response(
        report, status=200 if report.get("ready") else 503, headers={"Cache-Control": "no-store"}
    )


async def metrics(request: web.Request) -> web.Response:
    body = ctx_of(request).metrics.exposition()
    return web.Response(
        body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
    )


ROUTES = [
    web.get("/healthz", healthz),
    web.get("/readyz", readyz),
    web.get("/metrics", metrics),
]
