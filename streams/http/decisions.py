"""What the views share: who is calling, and decisions audited before they go out.

- :func:`authenticate` / :func:`require`: the caller's principal, or a refusal that
  is audited (``auth.denied``, ``<capability>.denied``) before it is raised.
- :func:`require_tenant` / :func:`scope_of`: the caller acts only in its tenant
  (``tenant-mismatch``, audited); the tenant a caller's listings are confined to.
- :func:`audit_or_503`: append an audit record durably, or raise
  :class:`~streams.errors.AuditUnavailable` (no decision goes out unaudited).
- :func:`audited_denial`: audit and count an access denial, and return the
  :class:`~streams.errors.AccessDenied` for the view to raise.
- :func:`count_decision`: the ``callvault_access_decisions_total`` metric.
- :func:`store_call`: a governance store call; its audit layer refusing the record
  (free text that looks like personal data) is a 400 ``personal-data``.
- :func:`assignment_for_access`: the evaluation assignment a request names (its id is
  the justification), as the access decision sees it; an unknown one is an audited
  denial ``assignment-unknown``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

from policies import AssignmentFacts, Principal, Reason, decide_capability, in_tenant, tenant_scope
from storage.catalog.audit import AuditDraft
from storage.errors import AuditError, StorageError
from storage.types import AuditEntry, RecordingRow
from streams.errors import AccessDenied, AuditUnavailable, AuthError, BadRequest
from streams.evaluations import assignment_facts
from streams.http.context import WebContext, ctx_of, run

__all__ = [
    "authenticate",
    "auth_denied",
    "require",
    "require_tenant",
    "scope_of",
    "audit_or_503",
    "draft",
    "audited_denial",
    "count_decision",
    "recording_row",
    "store_call",
    "assignment_for_access",
    "ASSIGNMENT_ID",
]

#: An evaluation assignment id (``storage.catalog.evaluations.new_assignment_id``).
ASSIGNMENT_ID = re.compile(r"^asg-[0-9a-f]{12}$")

log = logging.getLogger(__name__)


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource else request.path


async def auth_denied(request: web.Request, exc: AuthError) -> AuthError:
    """Audit a refused token or grant (``auth.denied``); returns ``exc`` to raise."""
    await audit_or_503(
        request,
        AuditDraft(
            actor="anonymous",
            action="auth.denied",
            outcome="denied",
            reason=exc.reason,
            recording_id=None,
            details={"route": _route(request)},
        ),
    )
    return exc


async def authenticate(request: web.Request) -> Principal:
    """The caller's principal. Raises AuthError (audited first)."""
    ctx = ctx_of(request)
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else ""
    try:
        if not token:
            raise AuthError("token-missing", "send Authorization: Bearer <token>")
        verify_async = getattr(ctx.tokens, "averify", None)
        if verify_async is not None:  # an IdP's keys may need a fetch: not on the loop
            principal: Principal = await verify_async(token, ctx.now())
            return principal
        return ctx.tokens.verify(token, ctx.now())
    except AuthError as exc:
        raise await auth_denied(request, exc) from None


async def require(request: web.Request, capability: str) -> Principal:
    """Authenticate and check a non-audio capability.

    Raises:
        AuthError: no valid token (audited).
        AccessDenied: the role lacks ``capability`` (audited as ``<capability>.denied``).
    """
    ctx = ctx_of(request)
    principal = await authenticate(request)
    decision = decide_capability(principal, capability, ctx.services.policy, ctx.now())
    if decision.decision != "allow":
        await audit_or_503(
            request,
            AuditDraft(
                actor=f"user:{principal.user}",
                action=f"{capability}.denied",
                outcome="denied",
                reason=str(decision.reason),
                recording_id=None,
                details={"role": principal.role},
            ),
        )
        raise AccessDenied(str(decision.reason), f"{capability} not allowed")
    return principal


def scope_of(request: web.Request, principal: Principal) -> str | None:
    """The one tenant ``principal`` acts in (None: every tenant, a spanning role)."""
    return tenant_scope(principal, ctx_of(request).services.policy)


async def require_tenant(
    request: web.Request, principal: Principal, tenant: str | None, capability: str
) -> None:
    """Refuse (403 ``tenant-mismatch``, audited ``<capability>.denied``) a caller naming a
    tenant other than its own.

    Raises:
        AccessDenied: ``tenant`` is not the principal's.
        AuditUnavailable: the refusal could not be audited.
    """
    if in_tenant(principal, tenant, ctx_of(request).services.policy):
        return
    record = draft(principal, f"{capability}.denied", "denied", str(Reason.TENANT_MISMATCH), None)
    record.details["route"] = _route(request)
    await audit_or_503(request, record)
    raise AccessDenied(
        str(Reason.TENANT_MISMATCH), "your token is for another tenant than the one named"
    )


async def audit_or_503(
    request: web.Request,
    draft: AuditDraft,
    detail: str = "the audit log cannot be written; retry",
) -> AuditEntry:
    """Append ``draft`` (committed when this returns).

    Raises:
        AuditUnavailable: the audit log cannot be written (answered 503 with ``detail``).
    """
    try:
        entry: AuditEntry = await run(ctx_of(request).services.audit.append, draft)
    except StorageError as exc:  # AuditError, CatalogError
        log.error("audit write failed (%s): %s", draft.action, exc)
        raise AuditUnavailable(detail) from None
    return entry


def draft(
    principal: Principal,
    action: str,
    outcome: str,
    reason: str,
    recording_id: str | None,
    **details: Any,
) -> AuditDraft:
    """The audit record of a decision by ``principal`` (``None`` details left out)."""
    base: dict[str, Any] = {"role": principal.role}
    if principal.org:
        base["org"] = principal.org
    if principal.tenant:
        base["tenant"] = principal.tenant
    base.update({k: v for k, v in details.items() if v is not None})
    return AuditDraft(
        actor=f"user:{principal.user}",
        action=action,
        outcome=outcome,
        reason=reason,
        recording_id=recording_id,
        details=base,
    )


def count_decision(
    ctx: WebContext,
    principal: Principal,
    action: str,
    purpose: str | None,
    outcome: str,
    reason: str,
) -> None:
    """Count one access decision (labels bounded by the policy's roles and purposes)."""
    policy = ctx.services.policy
    role = principal.role if principal.role in policy.roles else "other"
    label = "none" if purpose is None else purpose if purpose in policy.purposes else "other"
    ctx.metrics.access_decisions.labels(outcome, reason, role, label, action).inc()


async def audited_denial(
    request: web.Request,
    principal: Principal,
    action: str,
    reason: str,
    recording_id: str | None,
    purpose: str | None = None,
    *,
    retry_after: int | None = None,
    **details: Any,
) -> AccessDenied:
    """Audit (durably) and count the denial of ``access.<action>``; returns the error
    to raise. Raises AuditUnavailable when the denial cannot be audited."""
    record = draft(
        principal, f"access.{action}", "denied", reason, recording_id, purpose=purpose, **details
    )
    await audit_or_503(request, record, "the decision could not be audited")
    count_decision(ctx_of(request), principal, action, purpose, "denied", reason)
    return AccessDenied(reason, retry_after=retry_after)


async def recording_row(request: web.Request, recording_id: str) -> RecordingRow | None:
    """The catalog row of ``recording_id`` (None when there is none)."""
    row: RecordingRow | None = await run(
        ctx_of(request).services.catalog.get_recording, recording_id
    )
    return row


async def store_call(func: Callable[..., Any], *args: Any) -> Any:
    """Run a governance store call off the event loop.

    The stores audit what they do; an :class:`~storage.errors.AuditError` means the
    audit layer refused the record (a reason or reference that looks like personal
    data) and is answered 400 ``personal-data``.
    """
    try:
        return await run(func, *args)
    except AuditError as exc:
        raise BadRequest(f"refused: {exc}", "personal-data") from None


async def assignment_for_access(
    request: web.Request,
    principal: Principal,
    assignment_id: str,
    action: str,
    recording_id: str,
    purpose: str | None,
    /,
    **details: Any,
) -> AssignmentFacts:
    """The facts of the assignment a request names, for its access decision.

    Raises:
        AccessDenied: no such assignment (``assignment-unknown``, audited).
    """
    found = await run(ctx_of(request).services.evaluations.find, assignment_id)
    if found is None:
        raise await audited_denial(
            request, principal, action, str(Reason.ASSIGNMENT_UNKNOWN), recording_id, purpose,
            **{"assignment_id": assignment_id, **details},
        )  # fmt: skip
    return assignment_facts(found)
