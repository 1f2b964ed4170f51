"""Quality evaluations over HTTP: forms, assignments, scores, timeline notes, sampling
runs and supervisors' summaries.

- ``GET /v1/evaluation-forms`` (``evaluate``): the policy's forms.
- ``GET /v1/assignments[?status=&reviewer=&plan=]`` (``evaluate``): the caller's own
  assignments (anyone's with ``manage-evaluations``), each with its recording's metadata.
- ``POST /v1/assignments`` (``manage-evaluations``): ``{recording_id, reviewer,
  form_id?, due_days?}`` -> 201.
- ``GET /v1/assignments/{id}`` (``evaluate``: its reviewer; or ``manage-evaluations``):
  form, answers, score, notes, recording.
- ``PUT /v1/assignments/{id}/evaluation`` (its reviewer): ``{answers, comment?,
  revision, complete?}``.
- ``POST /v1/assignments/{id}/notes`` (its reviewer): ``{at_ms, text, channel?}`` -> 201.
- ``POST /v1/assignments/{id}/cancel``, ``.../reopen`` (``manage-evaluations``).
- ``GET /v1/sampling-plans``, ``POST /v1/sampling-plans/{plan}/runs`` ``{period?,
  reviewers, tenant?}`` -> 201 the run (``manage-evaluations``).
- ``GET /v1/evaluations/summary?by=agent|queue[&plan=&tenant=&from=&to=]``
  (``manage-evaluations``): scores per agent or queue.

The reviewer's access to the assigned recording goes through the access decision with
the assignment (:func:`policies.decide_access`, ``access:assignment``): opening,
scoring or annotating an assignment whose recording was restricted, erased or expired
since is denied and audited like any other access; the audio itself is fetched with
``POST /v1/recordings/{id}/grants`` ``{"purpose", "assignment"}`` (the assignment id is
the audited justification). Scores and notes never enter the audit log; they are
sealed under the customer's key (:mod:`streams.evaluations`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from aiohttp import web

from policies import (
    AccessDecision,
    AccessRequest,
    PolicyInputError,
    Principal,
    Reason,
    decide_access,
    decide_capability,
)
from storage.catalog.evaluations import Assignment, AssignmentState
from storage.errors import AssignmentNotFound
from storage.types import RecordingRow
from streams.errors import BadRequest
from streams.evaluations import assignment_facts, form_json
from streams.facts import facts_of
from streams.http.context import ctx_of, run
from streams.http.decisions import (
    ASSIGNMENT_ID,
    audit_or_503,
    audited_denial,
    draft,
    recording_row,
    require,
    require_tenant,
    scope_of,
    store_call,
)
from streams.http.params import json_object, query_text, query_when
from streams.http.recordings import public_recording, usable_purposes

__all__ = ["ROUTES"]

T = TypeVar("T")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$")


def _assignment_id(request: web.Request) -> str:
    value = request.match_info["assignment_id"]
    if not ASSIGNMENT_ID.match(value):
        raise BadRequest("malformed assignment id (asg- and 12 hex digits)")
    return value


def _may_manage(request: web.Request, principal: Principal) -> bool:
    ctx = ctx_of(request)
    decision = decide_capability(principal, "manage-evaluations", ctx.services.policy, ctx.now())
    return decision.allowed


async def _own_or_managed(
    request: web.Request, principal: Principal, *, write: bool
) -> tuple[Assignment, bool]:
    """The assignment of the path, if the caller is its reviewer (or, to read, a manager),
    and whether the caller is its reviewer. To write, the reviewer's access to the
    recording is decided with the assignment (audited when denied); an open
    assignment's reviewer is held to the same decision to read it.

    Raises:
        AssignmentNotFound: no such assignment (404).
        AccessDenied: someone else's assignment, its recording may not be used now, or
            (to write) the assignment is completed or cancelled (all audited).
    """
    ctx = ctx_of(request)
    assignment = await run(ctx.services.evaluations.get, _assignment_id(request))
    own = scope_of(request, principal)
    if own is not None and assignment.tenant != own:  # another tenant's: as if none
        raise AssignmentNotFound(f"no assignment {assignment.assignment_id!r}")
    mine = assignment.reviewer == principal.user
    if not mine:
        if write or not _may_manage(request, principal):
            raise await audited_denial(
                request, principal, "metadata", str(Reason.ASSIGNMENT_NOT_YOURS),
                assignment.recording_id, assignment.purpose,
                assignment_id=assignment.assignment_id,
            )  # fmt: skip
        return assignment, False
    if not write and assignment.status is not AssignmentState.OPEN:
        return assignment, True  # one's own finished evaluation (no audio through it)
    row = await recording_row(request, assignment.recording_id)
    decision = _recording_decision(request, principal, assignment, row)
    if not decision.allowed:
        reason = str(Reason.RECORDING_NOT_STORED) if row is None else str(decision.reason)
        raise await audited_denial(
            request, principal, "metadata", reason, assignment.recording_id, assignment.purpose,
            assignment_id=assignment.assignment_id,
        )  # fmt: skip
    return assignment, True


def _recording_decision(
    request: web.Request, principal: Principal, assignment: Assignment, row: RecordingRow | None
) -> AccessDecision:
    """May the caller see the assignment's recording: its reviewer under the assignment,
    anyone else by the usual rules."""
    ctx = ctx_of(request)
    mine = assignment.reviewer == principal.user
    return decide_access(
        principal,
        AccessRequest(
            "metadata",
            assignment.purpose,
            assignment=assignment_facts(assignment) if mine else None,
        ),
        None if row is None else facts_of(row),
        ctx.services.policy,
        ctx.now(),
    )


async def _with_recording(
    request: web.Request, principal: Principal, assignment: Assignment
) -> dict[str, Any]:
    """The assignment, with its recording's metadata when the caller may see it now."""
    ctx = ctx_of(request)
    body = assignment.to_json(ctx.now())
    row = await recording_row(request, assignment.recording_id)
    body["recording"] = None
    if row is not None and _recording_decision(request, principal, assignment, row).allowed:
        facts = assignment_facts(assignment) if assignment.reviewer == principal.user else None
        body["recording"] = public_recording(
            row, usable_purposes(principal, row, ctx, ctx.now(), facts)
        )
    return body


async def _call(func: Callable[[], T]) -> T:
    """A service call off the event loop; bad input to the policy is a 400 ``bad-field``."""
    try:
        result: T = await store_call(func)
    except PolicyInputError as exc:
        raise BadRequest(str(exc), "bad-field") from None
    return result


# -- forms and plans ---------------------------------------------------------------------------
async def list_forms(request: web.Request) -> web.Response:
    await require(request, "evaluate")
    forms = ctx_of(request).services.policy.evaluation_forms
    return web.json_response({"forms": [form_json(f) for f in forms.values()]})


async def list_plans(request: web.Request) -> web.Response:
    await require(request, "manage-evaluations")
    plans = ctx_of(request).services.policy.sampling_plans
    return web.json_response(
        {
            "plans": [
                {
                    "plan_id": p.id,
                    "description": p.description,
                    "form_id": p.form,
                    "count": p.count,
                    "per": p.per.value,
                    "period": p.period.value,
                    "purpose": p.purpose,
                    "due_days": p.due_days,
                    "queues": list(p.queues),
                    "reviewer_role": p.reviewer_role,
                    "reviewers": list(p.reviewers),
                    "org": p.org,
                }  # fmt: skip
                for p in plans.values()
            ]
        }
    )


async def run_plan(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    principal = await require(request, "manage-evaluations")
    body = await json_object(request)
    reviewers = body.get("reviewers")
    if reviewers is not None and (
        not isinstance(reviewers, list)
        or not all(isinstance(r, str) and _NAME.match(r) for r in reviewers)
    ):
        raise BadRequest("reviewers must be a list of user ids", "bad-field")
    period, tenant = body.get("period"), body.get("tenant")
    for name, value in (("period", period), ("tenant", tenant)):
        if value is not None and not isinstance(value, str):
            raise BadRequest(f"{name} must be a string", "bad-field")
    plan_id = request.match_info["plan_id"]
    if plan_id not in ctx.services.policy.sampling_plans:
        raise BadRequest(f"unknown sampling plan {plan_id!r}", "bad-field")
    tenant = tenant or scope_of(request, principal)  # a plan runs in the caller's tenant
    await require_tenant(request, principal, tenant, "manage-evaluations")
    outcome = await _call(
        lambda: ctx.evaluations.run_plan(
            plan_id,
            actor=f"user:{principal.user}",
            period=period,
            reviewers=reviewers,
            tenant=tenant,
        )
    )
    return web.json_response(outcome.to_json(ctx.now()), status=201)


# -- assignments ---------------------------------------------------------------------------------
async def list_assignments(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    principal = await require(request, "evaluate")
    manager = _may_manage(request, principal)
    query = request.query
    unknown = sorted(set(query) - {"status", "reviewer", "plan"})
    if unknown:
        raise BadRequest(f"unknown parameter {unknown[0]!r}", "unknown-parameter")
    status = query_text(query, "status")
    if status is not None and status not in set(AssignmentState):
        raise BadRequest(f"status must be one of {', '.join(AssignmentState)}")
    reviewer = query_text(query, "reviewer")
    if not manager:
        if reviewer not in (None, principal.user):
            raise await audited_denial(
                request, principal, "list", str(Reason.CAPABILITY_NOT_GRANTED), None,
                via="assignments",
            )  # fmt: skip
        reviewer = principal.user
    found = await run(
        lambda: ctx.services.evaluations.list_assignments(
            reviewer=reviewer,
            statuses=None if status is None else [status],
            plan_id=query_text(query, "plan"),
            tenant=scope_of(request, principal),
            limit=500,
        )
    )
    items = [await _with_recording(request, principal, a) for a in found]
    record = draft(
        principal, "access.list", "granted", str(Reason.GRANTED), None,
        via="assignments", count=len(items),
    )  # fmt: skip
    await audit_or_503(request, record, "the listing could not be audited")
    return web.json_response({"assignments": items}, headers={"Cache-Control": "no-store"})


async def create_assignment(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    principal = await require(request, "manage-evaluations")
    body = await json_object(request)
    recording_id, reviewer = body.get("recording_id"), body.get("reviewer")
    if (
        not isinstance(recording_id, str)
        or not isinstance(reviewer, str)
        or not _NAME.match(reviewer)
    ):
        raise BadRequest("give recording_id and reviewer (a user id)", "bad-field")
    form_id, due_days = body.get("form_id"), body.get("due_days", 7)
    if form_id is not None and not isinstance(form_id, str):
        raise BadRequest("form_id must be a string", "bad-field")
    if isinstance(due_days, bool) or not isinstance(due_days, int):
        raise BadRequest("due_days must be a whole number", "bad-field")
    assignment = await _call(
        lambda: ctx.evaluations.assign(
            recording_id,
            reviewer=reviewer,
            actor=f"user:{principal.user}",
            form_id=form_id,
            due_days=due_days,
        )
    )
    return web.json_response(await _with_recording(request, principal, assignment), status=201)


async def get_assignment(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    principal = await require(request, "evaluate")
    assignment, _ = await _own_or_managed(request, principal, write=False)
    view = await _call(lambda: ctx.evaluations.view(assignment, reader=f"user:{principal.user}"))
    body = view.to_json(ctx.now())
    body["recording"] = (await _with_recording(request, principal, assignment))["recording"]
    return web.json_response(body, headers={"Cache-Control": "no-store"})


def _answers(value: Any) -> dict[str, int | None]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and (v is None or (isinstance(v, int) and not isinstance(v, bool)))
        for k, v in value.items()
    ):
        raise BadRequest("answers must map question ids to whole numbers or null", "bad-field")
    return dict(value)


async def save_evaluation(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    principal = await require(request, "evaluate")
    assignment, _ = await _own_or_managed(request, principal, write=True)
    body = await json_object(request)
    answers = _answers(body.get("answers", {}))
    comment, revision, complete = (
        body.get("comment"),
        body.get("revision"),
        body.get("complete", False),
    )
    if comment is not None and not isinstance(comment, str):
        raise BadRequest("comment must be a string", "bad-field")
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
        raise BadRequest(
            "revision (the one you loaded, 0 for a new evaluation) is required", "bad-field"
        )
    if not isinstance(complete, bool):
        raise BadRequest("complete must be true or false", "bad-field")
    view = await _call(
        lambda: ctx.evaluations.save(
            assignment,
            answers=answers,
            comment=comment or None,
            based_on=revision,
            complete=complete,
            actor=f"user:{principal.user}",
            author=principal.user,
        )
    )
    return web.json_response(view.to_json(ctx.now()))


async def add_note(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    principal = await require(request, "evaluate")
    assignment, _ = await _own_or_managed(request, principal, write=True)
    body = await json_object(request)
    text, at_ms, channel = body.get("text"), body.get("at_ms"), body.get("channel")
    if not isinstance(text, str):
        raise BadRequest("text is required", "bad-field")
    if isinstance(at_ms, bool) or not isinstance(at_ms, int):
        raise BadRequest("at_ms (the position in the call, in ms) is required", "bad-field")
    note = await _call(
        lambda: ctx.evaluations.add_note(
            assignment,
            at_ms=at_ms,
            text=text,
            channel=channel,
            actor=f"user:{principal.user}",
            author=principal.user,
        )
    )
    return web.json_response(note.to_json(), status=201)


async def _set_status(request: web.Request, status: AssignmentState) -> web.Response:
    ctx = ctx_of(request)
    principal = await require(request, "manage-evaluations")
    assignment_id = _assignment_id(request)
    body = await json_object(request)
    reason = body.get("reason") or ""
    if not isinstance(reason, str) or len(reason) > 200:
        raise BadRequest("reason must be a short text", "bad-field")
    changed = await store_call(
        lambda: ctx.services.evaluations.set_status(
            assignment_id, status, actor=f"user:{principal.user}", reason=reason
        )
    )
    return web.json_response(changed.to_json(ctx.now()))


async def cancel_assignment(request: web.Request) -> web.Response:
    return await _set_status(request, AssignmentState.CANCELLED)


async def reopen_assignment(request: web.Request) -> web.Response:
    return await _set_status(request, AssignmentState.OPEN)


async def summary(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    principal = await require(request, "manage-evaluations")
    query = request.query
    unknown = sorted(set(query) - {"by", "plan", "tenant", "from", "to"})
    if unknown:
        raise BadRequest(f"unknown parameter {unknown[0]!r}", "unknown-parameter")
    by = query_text(query, "by") or "agent"
    if by not in ("agent", "queue"):
        raise BadRequest("by must be agent or queue")
    tenant = query_text(query, "tenant") or scope_of(request, principal)
    await require_tenant(request, principal, tenant, "manage-evaluations")
    groups = await run(
        lambda: ctx.evaluations.summary(
            by=by,
            tenant=tenant,
            plan_id=query_text(query, "plan"),
            completed_from=query_when(query, "from", end=False),
            completed_to=query_when(query, "to", end=True),
        )
    )
    record = draft(
        principal, "qa.summary-read", "granted", str(Reason.GRANTED), None, by=by,
        groups=len(groups),
    )  # fmt: skip
    await audit_or_503(request, record, "the summary could not be audited")
    return web.json_response({"by": by, "groups": groups}, headers={"Cache-Control": "no-store"})


ROUTES = [
    web.get("/v1/evaluation-forms", list_forms),
    web.get("/v1/sampling-plans", list_plans),
    web.post("/v1/sampling-plans/{plan_id}/runs", run_plan),
    web.get("/v1/assignments", list_assignments),
    web.post("/v1/assignments", create_assignment),
    web.get("/v1/assignments/{assignment_id}", get_assignment),
    web.put("/v1/assignments/{assignment_id}/evaluation", save_evaluation),
    web.post("/v1/assignments/{assignment_id}/notes", add_note),
    web.post("/v1/assignments/{assignment_id}/cancel", cancel_assignment),
    web.post("/v1/assignments/{assignment_id}/reopen", reopen_assignment),
    web.get("/v1/evaluations/summary", summary),
]
