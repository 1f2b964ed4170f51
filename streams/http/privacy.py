"""Privacy requests over HTTP (capability ``privacy-requests``), in the caller's tenant.

``POST /v1/privacy-requests`` files a request (201, or 200 for a ``request_id``
already known: the stored request, not a second one): without
``identity_verification`` it waits ``received``; with it, it is approved by its filer
and carried out at once unless the body says ``"approve": false``.
``GET /v1/privacy-requests[?status=]`` lists them, overdue first, then by due date;
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
from storage.errors import PrivacyRequestNotFound
from streams.errors import BadRequest
from streams.http.context import ctx_of, run
from streams.http.decisions import require, require_tenant, scope_of, store_call
from streams.http.params import json_object

__all__ = ["ROUTES", "own_request", "request_json"]


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
    (another tenant's: :class:`PrivacyRequestNotFound`, 404). Every route under
    ``/v1/privacy-requests/{request_id}`` (the export too) reads it through this."""
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


def _overdue_first(found: list[PrivacyRequest], now: Any) -> list[PrivacyRequest]:
    return sorted(found, key=lambda r: (not r.overdue(now), not r.open, r.due_at, r.request_id))


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
    found = await store_call(
        lambda: ctx.services.requests.list_requests(statuses=statuses, tenant=own, limit=1000)
    )
    ordered = _overdue_first(found, ctx.now())
    return web.json_response({"requests": [request_json(r, request) for r in ordered]})


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
