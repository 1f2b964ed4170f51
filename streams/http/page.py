"""The QA page: ``GET /`` and ``GET /static/{name}`` (no token; the page's script
sends the reviewer's bearer token to the API). Served with a strict CSP."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from streams.errors import NotFound

__all__ = ["ROUTES"]

_STATIC = {"qa.js": "application/javascript", "qa.css": "text/css"}
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "media-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def _read(name: str) -> bytes:
    return resources.files("streams.http").joinpath(f"static/{name}").read_bytes()


async def index(request: web.Request) -> web.Response:
    return web.Response(
        body=_read("index.html"), content_type="text/html", charset="utf-8", headers=_PAGE_HEADERS
    )


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in _STATIC:
        raise NotFound("no such file", reason=None)
    return web.Response(
        body=_read(name), content_type=_STATIC[name], charset="utf-8", headers=_PAGE_HEADERS
    )


ROUTES = [
    web.get("/", index),
    web.get("/static/{name}", static),
]
