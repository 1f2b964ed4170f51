"""Legal holds over HTTP (capability ``manage-holds``).

``POST /v1/holds`` places a hold (201), ``GET /v1/holds[?all=1]`` lists the active
(or all) holds, ``GET /v1/holds/{id}`` gives one and what it covers,
``DELETE /v1/holds/{id}`` releases it (body or query ``reason``). Placing and
releasing mirror the hold into the vault before answering (S3 legal hold on every
version of the covered objects where the bucket has Object Lock, and the
``legal-hold`` tag); what could not be mirrored stays queued for the next sweep.

A hold body: ``{"scope": "recording"|"customer"|"call", "tenant", "recording_id" |
"customer_ref" | "call_id", "reason", "reference"}`` (``tenant`` may be left out for
``recording``). A customer is held by its pseudonymous subject_ref; the raw reference
is not stored.

Holds are the caller's tenant's only: ``tenant`` defaults to it, another is 403
``tenant-mismatch``; another tenant's recording or hold is 404, like one that does not
exist, and listings show the caller's tenant's holds only.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from policies import justification_problem
from storage.catalog import HoldScope, LegalHold
from storage.customer import NOT_CANONICAL, customer_ref_problem
from storage.subjectdetails import sealed_subject
from streams.errors import BadRequest, NotFound
from streams.http.context import WebContext, ctx_of
from streams.http.decisions import require, require_tenant, scope_of, store_call
from streams.http.params import json_object

__all__ = ["ROUTES", "hold_json"]

_TARGET_FIELD = {"recording": "recording_id", "customer": "customer_ref", "call": "call_id"}


def hold_json(hold: LegalHold, covers: list[str] | None = None) -> dict[str, Any]:
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


def _refresh_gauge(ctx: WebContext) -> None:
    metrics = ctx.endoflife.retention.metrics
    if metrics is not None:
        metrics.legal_holds_active.set(ctx.services.holds.count_active())


async def place_hold(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    holds = ctx.services.holds
    principal = await require(request, "manage-holds")
    body = await json_object(request)
    scope = body.get("scope")
    if scope not in _TARGET_FIELD:
        raise BadRequest("scope must be recording, customer or call", "invalid-hold")
    field = _TARGET_FIELD[scope]
    value = body.get(field)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{field} is required for scope {scope}", "invalid-hold")
    own = scope_of(request, principal)
    tenant = body.get("tenant")
    if scope == "recording" and not tenant:
        row = await store_call(ctx.services.catalog.get_recording, value)
        if row is None or (own is not None and row.tenant != own):
            raise NotFound(f"no recording {value!r}")
        tenant = row.tenant
    tenant = tenant or own
    if not isinstance(tenant, str) or not tenant:
        raise BadRequest("tenant is required", "invalid-hold")
    await require_tenant(request, principal, tenant, "manage-holds")
    target = value
    if scope == "customer":
        problem = customer_ref_problem(value)
        if problem is not None:  # refused as every path refuses it, never stripped
            raise BadRequest(problem, NOT_CANONICAL)
        target = await store_call(ctx.services.keys.subject_ref, tenant, value)

    for name in ("reason", "reference"):
        text = body.get(name)
        if isinstance(text, str) and (problem := justification_problem(text, ctx.services.policy)):
            raise BadRequest(
                problem.replace("the justification", f"the hold's {name}"), "personal-data"
            )

    def place() -> tuple[LegalHold, list[str]]:
        sealed = sealed_subject(ctx.services.keys, target) if scope == "customer" else None
        hold = holds.place(
            tenant=tenant,
            scope=HoldScope.SUBJECT if scope == "customer" else HoldScope(scope),
            target=target,
            reason=str(body.get("reason") or ""),
            reference=str(body.get("reference") or ""),
            placed_by=principal.user,
            actor=f"user:{principal.user}",
            sealed_target=sealed,
        )
        _refresh_gauge(ctx)
        ctx.endoflife.sync_vault(holds_only=True)  # the S3 legal hold of what it covers, now
        return hold, holds.covered_recording_ids(hold)

    hold, covers = await store_call(place)
    return web.json_response(hold_json(hold, covers), status=201)


async def list_holds(request: web.Request) -> web.Response:
    holds = ctx_of(request).services.holds
    principal = await require(request, "manage-holds")
    own = scope_of(request, principal)
    every = request.query.get("all", "") in ("1", "true", "yes")
    found = await store_call(lambda: holds.list_holds(active_only=not every))
    return web.json_response(
        {"holds": [hold_json(h) for h in found if own is None or h.tenant == own]}
    )


async def _own_hold(request: web.Request, own: str | None) -> LegalHold:
    """The hold the path names, if it is of the caller's tenant (else 404)."""
    hold_id = request.match_info["hold_id"]
    hold: LegalHold = await store_call(ctx_of(request).services.holds.get, hold_id)
    if own is not None and hold.tenant != own:
        raise NotFound(f"no legal hold {hold_id!r}")
    return hold


async def get_hold(request: web.Request) -> web.Response:
    holds = ctx_of(request).services.holds
    principal = await require(request, "manage-holds")
    hold = await _own_hold(request, scope_of(request, principal))
    covers = await store_call(holds.covered_recording_ids, hold)
    return web.json_response(hold_json(hold, covers))


async def release_hold(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    principal = await require(request, "manage-holds")
    await _own_hold(request, scope_of(request, principal))
    body = await json_object(request)
    reason = body.get("reason") or request.query.get("reason") or ""

    def release() -> LegalHold:
        hold = ctx.services.holds.release(
            request.match_info["hold_id"],
            released_by=principal.user,
            reason=str(reason),
            actor=f"user:{principal.user}",
        )
        _refresh_gauge(ctx)
        ctx.endoflife.sync_vault(holds_only=True)  # clears the S3 legal hold no other hold needs
        return hold

    hold = await store_call(release)
    return web.json_response(hold_json(hold))


ROUTES = [
    web.post("/v1/holds", place_hold),
    web.get("/v1/holds", list_holds),
    web.get("/v1/holds/{hold_id}", get_hold),
    web.delete("/v1/holds/{hold_id}", release_hold),
]
