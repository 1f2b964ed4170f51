"""Reading the audit log and the disclosure ledger over HTTP (capability ``read-audit``).

``GET /v1/audit`` pages through the hash-chained audit log (the read itself is audited
as ``audit.read``); ``GET /v1/disclosures`` lists the disclosure ledger.
"""

from __future__ import annotations

from aiohttp import web

from storage.catalog.audit import entry_json
from storage.types import AuditEntry
from streams.http.app import _run, ctx_of, require
from streams.http.decisions import QaViews
from streams.http.params import BadRequest, bad_request, query_int, query_text

__all__ = ["AuditViews"]


class AuditViews(QaViews):
    """``GET /v1/audit`` and ``GET /v1/disclosures``."""

    # -- GET /v1/audit ----------------------------------------------------------------------------
    async def audit_entries(self, request: web.Request) -> web.StreamResponse:
        ctx = ctx_of(request)
        principal = await require(request, "read-audit")
        try:
            after = query_int(request.query, "after_seq", 0, 0, 2**62)
            limit = query_int(request.query, "limit", 100, 1, 1000)
            rid = query_text(request.query, "recording_id")
            action = query_text(request.query, "action")
        except BadRequest as exc:
            return bad_request(exc)

        def read() -> list[AuditEntry]:
            return list(
                ctx.services.audit.iter_entries(
                    after_seq=after, limit=limit, recording_id=rid, action_prefix=action
                )
            )

        entries = await _run(request, read)
        await self._audit(
            request,
            self._draft(principal, "audit.read", "ok", "", None, after_seq=after,
                        count=len(entries), filtered=rid is not None or action is not None),
        )  # fmt: skip
        return web.json_response(
            {
                "entries": [entry_json(entry) for entry in entries],
                "next_after_seq": entries[-1].seq if len(entries) == limit else None,
            },
            headers={"Cache-Control": "no-store"},
        )

    # -- GET /v1/disclosures ----------------------------------------------------------------------
    async def disclosures(self, request: web.Request) -> web.StreamResponse:
        ctx = ctx_of(request)
        await require(request, "read-audit")
        try:
            rid = query_text(request.query, "recording_id")
            limit = query_int(request.query, "limit", 100, 1, 1000)
        except BadRequest as exc:
            return bad_request(exc)
        rows = await _run(request, lambda: self.ledger(ctx).list(recording_id=rid, limit=limit))
        return web.json_response(
            {
                "disclosures": [
                    {**d.__dict__, "disclosed_at": d.disclosed_at.isoformat()} for d in rows
                ]
            },
            headers={"Cache-Control": "no-store"},
        )
