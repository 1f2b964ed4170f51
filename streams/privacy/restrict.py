"""``restrict`` and ``lift-restriction``: the customer asks us to stop using (or to use
again) their recordings (see :mod:`streams.privacy`).

Without ``recording_ids`` the whole customer is (un)restricted, recordings ingested
later included (``SubjectRestrictions``, applied at ingest); the stored recordings
whose flag differs are changed, each audited.
"""

from __future__ import annotations

from typing import ClassVar

from storage.catalog import AuditDraft, PrivacyRequest, RequestStatus
from storage.types import RecordingState
from streams.privacy.context import BaseHandler

__all__ = ["RestrictHandler", "LiftRestrictionHandler"]


class RestrictHandler(BaseHandler):
    """``restrict``: no use of the customer's recordings but legal disclosure."""

    restricted: ClassVar[bool] = True

    def execute(self, request: PrivacyRequest) -> PrivacyRequest:
        ctx, flag = self.ctx, self.restricted
        if request.params.get("recording_ids") is None:
            if flag:
                ctx.restrictions.restrict(
                    subject_ref=request.subject_ref,
                    tenant=request.tenant,
                    request_id=request.request_id,
                    at=ctx.clock(),
                )
            else:
                ctx.restrictions.lift(request.subject_ref)
        rows = [
            row for row in ctx.rows(request, (RecordingState.STORED,)) if row.restricted != flag
        ]
        if rows:
            ctx.catalog.set_restricted(
                [row.recording_id for row in rows],
                flag,
                audit=AuditDraft(
                    actor=ctx.actor,
                    action="privacy.restricted" if flag else "privacy.restriction-lifted",
                    outcome="ok",
                    reason="requests.cessation",
                    details={"request_id": request.request_id, "rule": "access:restriction"},
                ),
            )
        changed = [row.recording_id for row in rows]
        return ctx.store.update(
            request,
            status=RequestStatus.COMPLETED,
            result={"changed": changed, "restricted": flag},
            progress={"changed": len(changed)},
        )


class LiftRestrictionHandler(RestrictHandler):
    """``lift-restriction``: the recordings may be used again within their purposes."""

    restricted: ClassVar[bool] = False
