"""Privacy requests over HTTP (capability ``privacy-requests``).

``POST /v1/privacy-requests`` files a request and carries it out (201, or 200 for a
``request_id`` already known: the stored request, not a second one);
``GET /v1/privacy-requests[?status=]`` lists them; ``GET /v1/privacy-requests/{id}``
gives one's status, progress and result. The request body is described in
:mod:`streams.privacy`; a malformed one is 400 with the reason code of
:class:`~streams.errors.PrivacyRequestRejected`.
"""

from __future__ import annotations

from aiohttp import web

from storage.catalog import RequestStatus
from storage.errors import PrivacyRequestNotFound
from streams.errors import BadRequest
from streams.http.context import ctx_of, run
from streams.http.decisions import require, store_call
from streams.http.params import json_object

__all__ = ["ROUTES"]


async def file_request(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    principal = await require(request, "privacy-requests")
    body = await json_object(request)
    known = False
    request_id = body.get("request_id")
    if isinstance(request_id, str) and request_id:
        try:
            await run(ctx.services.requests.get, request_id)
            known = True
        except PrivacyRequestNotFound:
            pass
    privacy = ctx.endoflife.privacy
    stored = await store_call(lambda: privacy.submit(body, requested_by=principal.user))
    return web.json_response(stored.to_json(ctx.now()), status=200 if known else 201)


async def list_requests(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    await require(request, "privacy-requests")
    status = request.query.get("status")
    statuses = None
    if status:
        try:
            statuses = (RequestStatus(status),)
        except ValueError:
            raise BadRequest(f"unknown status {status!r}", "bad-field") from None
    found = await store_call(lambda: ctx.services.requests.list_requests(statuses=statuses))
    now = ctx.now()
    return web.json_response({"requests": [r.to_json(now) for r in found]})


async def get_request(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    await require(request, "privacy-requests")
    stored = await store_call(ctx.services.requests.get, request.match_info["request_id"])
    return web.json_response(stored.to_json(ctx.now()))


ROUTES = [
    web.post("/v1/privacy-requests", file_request),
    web.get("/v1/privacy-requests", list_requests),
    web.get("/v1/privacy-requests/{request_id}", get_request),
]
