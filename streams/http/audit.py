"""What was done, for auditors (capability ``read-audit``).

``GET /v1/audit`` pages through the hash-chained audit log (the read itself is
audited as ``audit.read``); ``GET /v1/disclosures`` lists the disclosure ledger;
``GET /v1/receipts/{id}`` and ``GET /v1/receipts?recording_id=`` give signed deletion
receipts with ``verified`` (the signature checked against the keyring).

Everything is scoped to the caller's tenant: audit records of its tenant's recordings
or naming its tenant (the default tenant's auditors also see records naming none:
system records and those written before tenants), its tenant's disclosures and the
receipts of its tenant's recordings (another tenant's: 404).
"""

from __future__ import annotations

from aiohttp import web

from storage.catalog.audit import entry_json
from storage.types import AuditEntry
from streams.errors import BadRequest, NotFound
from streams.http.context import ctx_of, run
from streams.http.decisions import audit_or_503, draft, require, scope_of, store_call
from streams.http.params import query_int, query_text

__all__ = ["ROUTES"]


async def audit_entries(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    principal = await require(request, "read-audit")
    after = query_int(request.query, "after_seq", 0, 0, 2**62)
    limit = query_int(request.query, "limit", 100, 1, 1000)
    rid = query_text(request.query, "recording_id")
    action = query_text(request.query, "action")
    tenant = scope_of(request, principal)
    untenanted = tenant == ctx.services.policy.default_tenant

    def read() -> list[AuditEntry]:
        return list(
            ctx.services.audit.iter_entries(
                after_seq=after,
                limit=limit,
                recording_id=rid,
                action_prefix=action,
                tenant=tenant,
                untenanted=untenanted,
            )
        )

    entries = await run(read)
    await audit_or_503(
        request,
        draft(principal, "audit.read", "ok", "", None, after_seq=after,
              count=len(entries), filtered=rid is not None or action is not None),
    )  # fmt: skip
    return web.json_response(
        {
            "entries": [entry_json(entry) for entry in entries],
            "next_after_seq": entries[-1].seq if len(entries) == limit else None,
        },
        headers={"Cache-Control": "no-store"},
    )


async def disclosures(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    principal = await require(request, "read-audit")
    tenant = scope_of(request, principal)
    rid = query_text(request.query, "recording_id")
    limit = query_int(request.query, "limit", 100, 1, 1000)
    rows = await run(lambda: ctx.services.ledger.list(recording_id=rid, limit=limit, tenant=tenant))
    return web.json_response(
        {"disclosures": [{**d.__dict__, "disclosed_at": d.disclosed_at.isoformat()} for d in rows]},
        headers={"Cache-Control": "no-store"},
    )


async def _receipt_tenant_ok(request: web.Request, tenant: str | None, recording_id: str) -> bool:
    if tenant is None:
        return True
    row = await run(ctx_of(request).services.catalog.get_recording, recording_id)
    return row is not None and row.tenant == tenant


async def receipt(request: web.Request) -> web.Response:
    services = ctx_of(request).services
    principal = await require(request, "read-audit")
    found = await store_call(services.receipts.get, request.match_info["receipt_id"])
    if not await _receipt_tenant_ok(request, scope_of(request, principal), found.recording_id):
        raise NotFound("no such receipt")
    return web.json_response({**found.to_json(), "verified": services.signer.verify(found)})


async def receipts(request: web.Request) -> web.Response:
    services = ctx_of(request).services
    principal = await require(request, "read-audit")
    recording_id = request.query.get("recording_id")
    if not recording_id:
        raise BadRequest("give ?recording_id=", "missing-field")
    found = await store_call(services.receipts.for_recording, recording_id)
    if not await _receipt_tenant_ok(request, scope_of(request, principal), recording_id):
        found = []
    return web.json_response(
        {"receipts": [{**r.to_json(), "verified": services.signer.verify(r)} for r in found]}
    )


ROUTES = [
    web.get("/v1/audit", audit_entries),
    web.get("/v1/disclosures", disclosures),
    web.get("/v1/receipts", receipts),
    web.get("/v1/receipts/{receipt_id}", receipt),
]
