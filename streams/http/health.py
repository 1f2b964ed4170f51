"""``GET /healthz`` (the worker's health, 503 when degraded) and ``GET /metrics``
(Prometheus exposition). Neither needs a token."""

from __future__ import annotations

from aiohttp import web

from streams.http.context import ctx_of

__all__ = ["ROUTES"]


async def healthz(request: web.Request) -> web.Response:
    status = ctx_of(request).health()
    return web.json_response(status, status=200 if status.get("status") == "ok" else 503)


async def metrics(request: web.Request) -> web.Response:
    body = ctx_of(request).metrics.exposition()
    return web.Response(
        body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
    )


ROUTES = [
    web.get("/healthz", healthz),
    web.get("/metrics", metrics),
]
