"""Privacy requests over HTTP (capability ``privacy-requests``), in the caller's tenant.

``POST /v1/privacy-requests`` files a request (201, or 200 for a ``request_id``
already known: the stored request, not a second one): without
``identity_verification`` it waits ``received``; with it, it is approved by its filer
and carried out at once unless the body says ``"approve": false``.
``GET /v1/privacy-requests[?status=&limit=&after=]`` lists them, open first (so
the overdue lead), then by due date, a page of ``limit`` (default
:data:`PAGE_DEFAULT`, at most :data:`PAGE_MAX`) at a time: ``next`` is the ``after``
of the following page (null on the last; an unknown cursor is 400 ``bad-cursor``);
``GET /v1/privacy-requests/{id}`` gives one's status, timeline, SLA, progress and
result. The workflow's steps: ``POST .../{id}/verify`` ``{verified_by, method[,
verified_at]}`` (``verified_by`` defaults to the caller), ``POST .../{id}/approve``
(carries it out), ``POST .../{id}/refuse`` ``{reason, note}`` (reason from
:class:`policies.RefusalReason`). A step the request's status does not allow is 409
``wrong-status``.

A request's ``tenant`` defaults to the caller's; another is 403 ``tenant-mismatch``;
another tenant's request is 404, like one that does not exist. The request body is
described in :mod:`streams.privacy`; a malformed one is 400 with the reason code of
:class:`~streams.errors.PrivacyRequestRejected`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from policies import Principal
from storage.catalog import PrivacyRequest, RequestStatus
from storage.errors import PrivacyRequestError, PrivacyRequestNotFound
from streams.errors import BadRequest
from streams.http.context import ctx_of, run
from streams.http.decisions import require, require_tenant, scope_of, store_call
from streams.http.params import json_object, query_int

__all__ = ["PAGE_DEFAULT", "PAGE_MAX", "ROUTES", "own_request", "request_json"]

#: Requests per page of ``GET /v1/privacy-requests`` unless ``limit`` says otherwise.
PAGE_DEFAULT = 200
PAGE_MAX = 1000


def request_json(found: PrivacyRequest, request: web.Request) -> dict[str, Any]:
    """A request as the API shows it: the stored fields, ``overdue``, its SLA and the
    whole days left until it is due (negative: overdue by)."""
    ctx = ctx_of(request)
    now = ctx.now()
    body = found.to_json(now)
    body["sla_days"] = ctx.services.policy.request_days(found.kind)
    body["days_left"] = (found.due_at - now).days
    return body


async def own_request(request: web.Request, principal: Principal) -> PrivacyRequest:
    """The request the path's ``{request_id}`` names, if it is of the caller's tenant
    (another tenant's: :class:`PrivacyRequestNotFound`, 404). The routes of this module
    under ``/v1/privacy-requests/{request_id}`` read it through this; the export route
    (:mod:`streams.http.exports`) does not: it looks the export up by request id
    (``exports.find``) and checks its tenant itself (``in_tenant``), also a 404."""
    request_id = request.match_info["request_id"]
    found: PrivacyRequest = await store_call(ctx_of(request).services.requests.get, request_id)
    own = scope_of(request, principal)
    if own is not None and found.tenant != own:
        raise PrivacyRequestNotFound(f"no privacy request {request_id!r}")
    return found


async def file_request(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    principal = await require(request, "privacy-requests")
    body = await json_object(request)
    own = scope_of(request, principal)
    if "tenant" not in body and own is not None:
        body = {**body, "tenant": own}
    tenant = body.get("tenant")
    if isinstance(tenant, str) and tenant:  # anything else: 400 from the body's validation
        await require_tenant(request, principal, tenant, "privacy-requests")
    known = False
    request_id = body.get("request_id")
    if isinstance(request_id, str) and request_id:
        try:
            existing = await run(ctx.services.requests.get, request_id)
            if own is not None and existing.tenant != own:
                raise BadRequest(f"request_id {request_id!r} is taken", "request-id-reused")
            known = True
        except PrivacyRequestNotFound:
            pass
    privacy = ctx.endoflife.privacy
    stored = await store_call(lambda: privacy.submit(body, requested_by=principal.user))
    return web.json_response(request_json(stored, request), status=200 if known else 201)


async def list_requests(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    principal = await require(request, "privacy-requests")
    status = request.query.get("status")
    statuses = None
    if status:
        try:
            statuses = (RequestStatus(status),)
        except ValueError:
            known = ", ".join(RequestStatus)
            raise BadRequest(f"unknown status {status!r} (known: {known})", "bad-field") from None
    own = scope_of(request, principal)
    limit = query_int(request.query, "limit", PAGE_DEFAULT, 1, PAGE_MAX)
    after = request.query.get("after") or None
    try:
        found, following = await store_call(
            lambda: ctx.services.requests.page_requests(
                statuses=statuses, tenant=own, limit=limit, after=after
            )
        )
    except PrivacyRequestError as exc:
        raise BadRequest(str(exc), "bad-cursor") from None
    return web.json_response(
        {"requests": [request_json(r, request) for r in found], "next": following}
    )


async def get_request(request: web.Request) -> web.Response:
    principal = await require(request, "privacy-requests")
    return web.json_response(request_json(await own_request(request, principal), request))


async def verify_request(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    principal = await require(request, "privacy-requests")
    found = await own_request(request, principal)
    body = await json_object(request)
    identity = {"verified_by": principal.user, **body}
    privacy = ctx.endoflife.privacy
    done = await store_call(lambda: privacy.verify(found.request_id, identity, by=principal.user))
    return web.json_response(request_json(done, request))


async def approve_request(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    principal = await require(request, "privacy-requests")
    found = await own_request(request, principal)
    privacy = ctx.endoflife.privacy
    done = await store_call(lambda: privacy.approve(found.request_id, by=principal.user))
    return web.json_response(request_json(done, request))


async def refuse_request(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    principal = await require(request, "privacy-requests")
    found = await own_request(request, principal)
    body = await json_object(request)
    reason, note = body.get("reason"), body.get("note")
    privacy = ctx.endoflife.privacy
    done = await store_call(
        lambda: privacy.refuse(
            found.request_id, by=principal.user, reason=str(reason or ""), note=str(note or "")
        )
    )
    return web.json_response(request_json(done, request))


ROUTES = [
    web.post("/v1/privacy-requests", file_request),
    web.get("/v1/privacy-requests", list_requests),
    web.get("/v1/privacy-requests/{request_id}", get_request),
    web.post("/v1/privacy-requests/{request_id}/verify", verify_request),
    web.post("/v1/privacy-requests/{request_id}/approve", approve_request),
    web.post("/v1/privacy-requests/{request_id}/refuse", refuse_request),
]
