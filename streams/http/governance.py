"""Governance over HTTP: legal holds, privacy requests, deletion receipts.

HTTP (JSON; errors ``{"error", "detail", "reason"?}``):

=========================================  ==================  ==============================
route                                      capability          does
=========================================  ==================  ==============================
``POST /v1/holds``                         manage-holds        place a hold (201)
``GET /v1/holds[?all=1]``                  manage-holds        active (or all) holds
``GET /v1/holds/{id}``                     manage-holds        one hold and what it covers
``DELETE /v1/holds/{id}``                  manage-holds        release (body/query ``reason``)
``POST /v1/privacy-requests``              privacy-requests    file + carry out (201, or 200
                                                               for a known ``request_id``)
``GET /v1/privacy-requests[?status=]``     privacy-requests    list
``GET /v1/privacy-requests/{id}``          privacy-requests    status, progress, result
``GET /v1/receipts/{id}``                  read-audit          a signed deletion receipt
``GET /v1/receipts?recording_id=``         read-audit          receipts of a recording
=========================================  ==================  ==============================

A hold body: ``{"scope": "recording"|"customer"|"call", "tenant", "recording_id" |
"customer_ref" | "call_id", "reason", "reference"}`` (``tenant`` may be left out for
``recording``). A customer is held by its pseudonymous subject_ref; the raw reference
is not stored.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from callvault.errors import CallvaultError
from storage.catalog import HoldScope, LegalHold, RequestStatus
from storage.errors import (
    AuditError,
    HoldError,
    HoldNotFound,
    PrivacyRequestNotFound,
    ReceiptNotFound,
)
from streams.endoflife import EndOfLife
from streams.errors import PrivacyRequestRejected
from streams.http.app import _run, ctx_of, json_error, require

__all__ = ["governance_routes"]

log = logging.getLogger(__name__)

_MAX_BODY = 64 * 1024


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.content.read(_MAX_BODY + 1)
    if len(raw) > _MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=_MAX_BODY, actual_size=len(raw))
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise _bad("malformed", "the body is not JSON") from None
    if not isinstance(data, dict):
        raise _bad("malformed", "the body must be a JSON object")
    return data


def _bad(reason: str, detail: str, status: int = 400) -> web.HTTPException:
    error = {400: "bad-request", 404: "not-found", 503: "unavailable"}[status]
    cls = {400: web.HTTPBadRequest, 404: web.HTTPNotFound, 503: web.HTTPServiceUnavailable}[status]
    return cls(
        text=json.dumps({"error": error, "reason": reason, "detail": detail}),
        content_type="application/json",
    )


def _hold_json(hold: LegalHold, covers: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        **hold.summary(),
        "tenant": hold.tenant,
        "target": hold.target,
        "active": hold.active,
        "released_at": hold.released_at.isoformat() if hold.released_at else None,
        "released_by": hold.released_by,
        "release_reason": hold.release_reason,
    }
    if covers is not None:
        body["covers"] = covers
    return body


def governance_routes(lifecycle: EndOfLife) -> list[web.RouteDef]:
    """The routes above, bound to ``lifecycle`` (for ``build_web_app(extra_routes=)``)."""

    async def call(request: web.Request, func: Any, *args: Any) -> Any:
        try:
            return await _run(request, func, *args)
        except (HoldNotFound, PrivacyRequestNotFound, ReceiptNotFound) as exc:
            raise _bad("not-found", str(exc), 404) from None
        except PrivacyRequestRejected as exc:
            raise _bad(exc.reason, exc.detail) from None
        except HoldError as exc:
            raise _bad("invalid-hold", str(exc)) from None
        except AuditError as exc:
            raise _bad("personal-data", f"refused: {exc}") from None
        except CallvaultError as exc:
            log.error("%s failed: %s", request.path, exc)
            raise _bad("backend-failed", "the catalog or vault failed; try again", 503) from None

    async def place_hold(request: web.Request) -> web.Response:
        principal = await require(request, "manage-holds")
        body = await _body(request)
        scope = body.get("scope")
        keys = {"recording": "recording_id", "customer": "customer_ref", "call": "call_id"}
        if scope not in keys:
            raise _bad("invalid-hold", "scope must be recording, customer or call")
        value = body.get(keys[scope])
        if not isinstance(value, str) or not value:
            raise _bad("invalid-hold", f"{keys[scope]} is required for scope {scope}")
        tenant = body.get("tenant")
        if scope == "recording" and not tenant:
            row = await call(request, ctx_of(request).services.catalog.get_recording, value)
            if row is None:
                raise _bad("not-found", f"no recording {value!r}", 404)
            tenant = row.tenant
        if not isinstance(tenant, str) or not tenant:
            raise _bad("invalid-hold", "tenant is required")
        target = value
        if scope == "customer":
            target = await call(request, lifecycle.services.keys.subject_ref, tenant, value)

        def place() -> tuple[LegalHold, list[str]]:
            hold = lifecycle.holds.place(
                tenant=tenant,
                scope=HoldScope.SUBJECT if scope == "customer" else HoldScope(scope),
                target=target,
                reason=str(body.get("reason") or ""),
                reference=str(body.get("reference") or ""),
                placed_by=principal.user,
                actor=f"user:{principal.user}",
            )
            if lifecycle.retention.metrics is not None:
                lifecycle.retention.metrics.legal_holds_active.set(lifecycle.holds.count_active())
            return hold, lifecycle.holds.covered_recording_ids(hold)

        hold, covers = await call(request, place)
        return web.json_response(_hold_json(hold, covers), status=201)

    async def list_holds(request: web.Request) -> web.Response:
        await require(request, "manage-holds")
        every = request.query.get("all", "") in ("1", "true", "yes")
        holds = await call(request, lambda: lifecycle.holds.list_holds(active_only=not every))
        return web.json_response({"holds": [_hold_json(h) for h in holds]})

    async def get_hold(request: web.Request) -> web.Response:
        await require(request, "manage-holds")
        hold_id = request.match_info["hold_id"]

        def fetch() -> tuple[LegalHold, list[str]]:
            hold = lifecycle.holds.get(hold_id)
            return hold, lifecycle.holds.covered_recording_ids(hold)

        hold, covers = await call(request, fetch)
        return web.json_response(_hold_json(hold, covers))

    async def release_hold(request: web.Request) -> web.Response:
        principal = await require(request, "manage-holds")
        body = await _body(request)
        reason = body.get("reason") or request.query.get("reason") or ""

        def release() -> LegalHold:
            hold = lifecycle.holds.release(
                request.match_info["hold_id"],
                released_by=principal.user,
                reason=str(reason),
                actor=f"user:{principal.user}",
            )
            if lifecycle.retention.metrics is not None:
                lifecycle.retention.metrics.legal_holds_active.set(lifecycle.holds.count_active())
            return hold

        hold = await call(request, release)
        return web.json_response(_hold_json(hold))

    async def post_request(request: web.Request) -> web.Response:
        principal = await require(request, "privacy-requests")
        body = await _body(request)
        known = False
        request_id = body.get("request_id")
        if isinstance(request_id, str) and request_id:
            try:
                await _run(request, lifecycle.privacy.get, request_id)
                known = True
            except PrivacyRequestNotFound:
                pass
        stored = await call(
            request, lambda: lifecycle.privacy.submit(body, requested_by=principal.user)
        )
        now = ctx_of(request).now()
        return web.json_response(stored.to_json(now), status=200 if known else 201)

    async def list_requests(request: web.Request) -> web.Response:
        await require(request, "privacy-requests")
        status = request.query.get("status")
        statuses = None
        if status:
            try:
                statuses = (RequestStatus(status),)
            except ValueError:
                raise _bad("bad-field", f"unknown status {status!r}") from None
        found = await call(
            request, lambda: lifecycle.privacy.store.list_requests(statuses=statuses)
        )
        now = ctx_of(request).now()
        return web.json_response({"requests": [r.to_json(now) for r in found]})

    async def get_request(request: web.Request) -> web.Response:
        await require(request, "privacy-requests")
        stored = await call(request, lifecycle.privacy.get, request.match_info["request_id"])
        return web.json_response(stored.to_json(ctx_of(request).now()))

    async def get_receipt(request: web.Request) -> web.Response:
        await require(request, "read-audit")
        receipt = await call(request, lifecycle.receipts.get, request.match_info["receipt_id"])
        return web.json_response(
            {**receipt.to_json(), "verified": lifecycle.signer.verify(receipt)}
        )

    async def list_receipts(request: web.Request) -> web.Response:
        await require(request, "read-audit")
        recording_id = request.query.get("recording_id")
        if not recording_id:
            return json_error(400, "bad-request", "give ?recording_id=", reason="missing-field")
        found = await call(request, lifecycle.receipts.for_recording, recording_id)
        return web.json_response(
            {"receipts": [{**r.to_json(), "verified": lifecycle.signer.verify(r)} for r in found]}
        )

    return [
        web.post("/v1/holds", place_hold),
        web.get("/v1/holds", list_holds),
        web.get("/v1/holds/{hold_id}", get_hold),
        web.delete("/v1/holds/{hold_id}", release_hold),
        web.post("/v1/privacy-requests", post_request),
        web.get("/v1/privacy-requests", list_requests),
        web.get("/v1/privacy-requests/{request_id}", get_request),
        web.get("/v1/receipts", list_receipts),
        web.get("/v1/receipts/{receipt_id}", get_receipt),
    ]
