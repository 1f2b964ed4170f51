"""The worker's HTTP app: every route, and the one middleware that answers errors.

:func:`build_web_app` registers the route table of every route module (``ROUTES``
lists of plain ``async def view(request)`` functions) over one
:class:`~streams.http.context.WebContext`. The :func:`answer_errors` middleware counts
every request (``callvault_http_requests_total{route, status}``) and turns whatever a
view raised into its JSON error with :func:`streams.http.errors.error_response`::

    {"error": "unauthorized", "reason": "token-expired", "detail": "token has expired"}
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from streams.http import (
    audio,
    audit,
    evaluations,
    exports,
    health,
    holds,
    ingest,
    page,
    privacy,
    recordings,
    sources,
    waveform,
)
from streams.http.context import CONTEXT_KEY, WebContext, ctx_of
from streams.http.errors import error_response

__all__ = ["build_web_app", "answer_errors", "ROUTES"]

#: Every route, in registration order (see the route table in README.md).
ROUTES: list[web.RouteDef] = [
    *health.ROUTES,
    *ingest.ROUTES,
    *page.ROUTES,
    *recordings.ROUTES,
    *audio.ROUTES,
    *audit.ROUTES,
    *holds.ROUTES,
    *privacy.ROUTES,
    *exports.ROUTES,
    *evaluations.ROUTES,
    *waveform.ROUTES,
    *sources.ROUTES,
]


@web.middleware
async def answer_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Count the request by route and status class; answer what the view raised."""
    ctx = ctx_of(request)
    resource = request.match_info.route.resource
    route = resource.canonical if resource else "unmatched"
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # aiohttp's own: unknown route, wrong method
        ctx.metrics.http_requests.labels(route, f"{exc.status // 100}xx").inc()
        raise
    except Exception as exc:
        response = error_response(exc, route)
    ctx.metrics.http_requests.labels(route, f"{response.status // 100}xx").inc()
    return response


def build_web_app(ctx: WebContext) -> web.Application:
    """The aiohttp app serving every route over ``ctx``."""
    app = web.Application(
        middlewares=[answer_errors],
        client_max_size=ctx.services.config.max_audio_bytes + (1 << 20),
    )
    app[CONTEXT_KEY] = ctx
    app.add_routes(ROUTES)
    return app
