"""Access decisions: may this principal do this with this recording, now?

Pure functions of (principal, request, recording facts, policy, now): no I/O, no
clock, no state. Anything not granted by a rule below is denied (default deny).
Checks run in a fixed order and the first failing one gives the reason, so a
caller without a right learns nothing about the recording's state:

1. the role is defined (``unknown-role``); a token for every tenant needs a role
   that spans tenants (``tenant-span-not-allowed``); a recording of another tenant
   than the principal's (:func:`tenant_scope`) is never used (``tenant-mismatch``,
   rule ``access:tenant``);
2. an entrusted role names a listed organisation (``no-org``, ``unknown-org``)
   whose contract is live: ``start <= now < end`` (``contract-not-live``);
3. ``list``/``metadata`` need the ``list-recordings`` capability
   (``capability-not-granted``) and, for a recording, :func:`could_use` for the
   request's purpose if one is given, else for some purpose of the role;
4. ``play``/``download`` need a recording (``no-recording``), a declared
   (``no-purpose``) and known (``unknown-purpose``) purpose the role may use
   (``role-not-allowed-purpose``), that the recording was tagged with if the
   purpose is tag-bound (``purpose-not-tagged``); the recording stored
   (``recording-not-stored``) and not restricted by the customer unless the
   purpose overrides restrictions (``recording-restricted``); then the evidence
   the purpose requires: a justification (``justification-required``), a legal
   basis from the closed list (``legal-basis-required``, ``legal-basis-unknown``),
   a reference (``reference-required``).

Evaluation assignments (``request.assignment``, :class:`AssignmentFacts`): for any
action on a recording, right after the principal checks (and, for audio, the declared
purpose), an assignment named by the request must be the principal's
(``assignment-not-yours``), for this recording (``assignment-other-recording``) and
the requested purpose (``assignment-purpose``), and open (``assignment-closed``);
it then stands for the justification. A role with ``requires_assignment`` gets
nothing on a recording without one (``assignment-required``). The assignment never
overrides the purpose checks: a restricted, expired or untagged recording stays
denied. These denials cite ``access:assignment``.

A grant cites the purpose's rule (``purpose:<id>``) or, for capabilities and
listing, the role's (``role:<id>``); a denial cites the built-in rule that
failed (``access:...``). Rate limiting needs state and is the caller's job;
the limit is ``policy.rate_limit_for(role)``.
"""

from __future__ import annotations

from datetime import datetime

from policies.model import (
    ALL_TENANTS,
    LEGAL_BASES,
    AccessDecision,
    AccessRequest,
    Action,
    AssignmentFacts,
    AssignmentStatus,
    Capability,
    Decision,
    Policy,
    Principal,
    Reason,
    RecordingFacts,
    RecordingStatus,
    Role,
    require_aware,
)

__all__ = ["decide_access", "decide_capability", "could_use", "tenant_scope", "in_tenant"]


def _deny(reason: Reason, rule: str) -> AccessDecision:
    return AccessDecision(Decision.DENY, reason, rule)


def _allow(rule: str) -> AccessDecision:
    return AccessDecision(Decision.ALLOW, Reason.GRANTED, rule)


def tenant_scope(principal: Principal, policy: Policy) -> str | None:
    """The one tenant ``principal`` acts in, or None for every tenant (a token naming
    :data:`ALL_TENANTS` of a role with ``spans_tenants``). A token naming no tenant acts
    in the policy's ``default_tenant``. A spanning claim on any other role is scoped to
    no tenant at all (``""``): :func:`decide_access` denies it first anyway."""
    if principal.tenant is None:
        return policy.default_tenant
    if principal.tenant == ALL_TENANTS:
        role = policy.roles.get(principal.role)
        return None if role is not None and role.spans_tenants else ""
    return principal.tenant


def in_tenant(principal: Principal, tenant: str | None, policy: Policy) -> bool:
    """True when ``principal`` may act on something of ``tenant`` (None: no tenant,
    e.g. a dead letter too malformed to name one: only spanning principals)."""
    scope = tenant_scope(principal, policy)
    return scope is None or (tenant is not None and scope == tenant)


def _principal_check(principal: Principal, policy: Policy, now: datetime) -> AccessDecision | None:
    """A denial when the principal may do nothing at all now, else None."""
    role = policy.roles.get(principal.role)
    if role is None:
        return _deny(Reason.UNKNOWN_ROLE, "access:unknown-role")
    if principal.tenant == ALL_TENANTS and not role.spans_tenants:
        return _deny(Reason.TENANT_SPAN_NOT_ALLOWED, "access:tenant")
    if role.entrusted:
        if not principal.org:
            return _deny(Reason.NO_ORG, "access:entrusted-contract")
        organisation = policy.organisations.get(principal.org)
        if organisation is None:
            return _deny(Reason.UNKNOWN_ORG, "access:entrusted-contract")
        if not organisation.is_live(now):
            return _deny(Reason.CONTRACT_NOT_LIVE, "access:entrusted-contract")
    return None


def _purpose_check(
    principal: Principal, recording: RecordingFacts, purpose_id: str, policy: Policy
) -> AccessDecision | None:
    """A denial when ``purpose_id`` cannot be used on ``recording`` by this role, else None.

    Covers everything but the per-request evidence (justification, basis, reference).
    """
    purpose = policy.purposes.get(purpose_id)
    if purpose is None:
        return _deny(Reason.UNKNOWN_PURPOSE, "access:unknown-purpose")
    if purpose_id not in policy.roles[principal.role].purposes:
        return _deny(Reason.ROLE_NOT_ALLOWED_PURPOSE, "access:role-purpose")
    if purpose.tag_bound and purpose_id not in recording.purposes:
        return _deny(Reason.PURPOSE_NOT_TAGGED, "access:tag-bound")
    if recording.state != RecordingStatus.STORED:
        return _deny(Reason.RECORDING_NOT_STORED, "access:stored-only")
    if recording.restricted and not purpose.overrides_restriction:
        return _deny(Reason.RECORDING_RESTRICTED, "access:restriction")
    return None


def _assignment_check(
    principal: Principal,
    recording: RecordingFacts,
    assignment: AssignmentFacts,
    purpose: str | None,
) -> AccessDecision | None:
    """A denial when ``assignment`` does not cover this principal, recording and purpose."""
    rule = "access:assignment"
    if assignment.reviewer != principal.user:
        return _deny(Reason.ASSIGNMENT_NOT_YOURS, rule)
    if assignment.recording_id != recording.recording_id:
        return _deny(Reason.ASSIGNMENT_OTHER_RECORDING, rule)
    if purpose is not None and purpose != assignment.purpose:
        return _deny(Reason.ASSIGNMENT_PURPOSE, rule)
    if assignment.status != AssignmentStatus.OPEN:
        return _deny(Reason.ASSIGNMENT_CLOSED, rule)
    return None


def _assignment_gate(
    principal: Principal,
    role: Role,
    recording: RecordingFacts,
    assignment: AssignmentFacts | None,
    purpose: str | None,
) -> AccessDecision | None:
    """The assignment named (if any) must fit; a role requiring one must name one."""
    if assignment is not None:
        return _assignment_check(principal, recording, assignment, purpose)
    if role.requires_assignment:
        return _deny(Reason.ASSIGNMENT_REQUIRED, "access:assignment")
    return None


def could_use(
    principal: Principal,
    recording: RecordingFacts,
    policy: Policy,
    now: datetime,
    purpose: str | None = None,
    assignment: AssignmentFacts | None = None,
) -> bool:
    """True when the principal could be granted audio of ``recording`` for ``purpose``
    (any purpose of its role when ``None``; the assignment's purpose when one is
    given), given the evidence that purpose requires.

    This is what ``GET /v1/recordings`` filters by: a listing shows only recordings
    the caller could use.

    Raises:
        PolicyInputError: ``now`` is naive.
    """
    require_aware(now, "now")
    if _principal_check(principal, policy, now) is not None:
        return False
    if not in_tenant(principal, recording.tenant, policy):
        return False
    role = policy.roles[principal.role]
    if _assignment_gate(principal, role, recording, assignment, purpose) is not None:
        return False
    if purpose is not None:
        candidates: tuple[str, ...] = (purpose,)
    elif assignment is not None:
        candidates = (assignment.purpose,)
    else:
        candidates = role.purposes
    return any(_purpose_check(principal, recording, p, policy) is None for p in candidates)


def decide_capability(
    principal: Principal, capability: str, policy: Policy, now: datetime
) -> AccessDecision:
    """May the principal use a non-audio capability (``ingest``, ``read-audit``,
    ``manage-holds``, ``privacy-requests``, ``view-metrics``, ``list-recordings``)?

    Raises:
        PolicyInputError: ``now`` is naive.
    """
    require_aware(now, "now")
    denied = _principal_check(principal, policy, now)
    if denied is not None:
        return denied
    if capability not in set(Capability):
        return _deny(Reason.UNKNOWN_CAPABILITY, "access:capability")
    role = policy.roles[principal.role]
    if Capability(capability) not in role.capabilities:
        return _deny(Reason.CAPABILITY_NOT_GRANTED, "access:capability")
    return _allow(role.rule)


def decide_access(
    principal: Principal,
    request: AccessRequest,
    recording: RecordingFacts | None,
    policy: Policy,
    now: datetime,
) -> AccessDecision:
    """Decide one request on one recording (``recording`` may be ``None`` only for ``list``:
    "may this principal list at all?").

    Raises:
        PolicyInputError: ``now`` is naive.
    """
    require_aware(now, "now")
    denied = _principal_check(principal, policy, now)
    if denied is not None:
        return denied
    role = policy.roles[principal.role]
    action = Action(request.action)

    if not action.is_audio:
        if Capability.LIST_RECORDINGS not in role.capabilities:
            return _deny(Reason.CAPABILITY_NOT_GRANTED, "access:capability")
        if recording is None:
            if action is Action.LIST:
                return _allow(role.rule)
            return _deny(Reason.NO_RECORDING, "access:default-deny")
        if not in_tenant(principal, recording.tenant, policy):
            return _deny(Reason.TENANT_MISMATCH, "access:tenant")
        gate = _assignment_gate(principal, role, recording, request.assignment, request.purpose)
        if gate is not None:
            return gate
        if request.purpose is not None:
            candidates: tuple[str, ...] = (request.purpose,)
        elif request.assignment is not None:
            candidates = (request.assignment.purpose,)
        else:
            candidates = role.purposes
        first_denial: AccessDecision | None = None
        for purpose_id in candidates:
            denial = _purpose_check(principal, recording, purpose_id, policy)
            if denial is None:
                return _allow(role.rule)
            first_denial = first_denial or denial
        return first_denial or _deny(Reason.ROLE_NOT_ALLOWED_PURPOSE, "access:role-purpose")

    if recording is None:
        return _deny(Reason.NO_RECORDING, "access:default-deny")
    if not in_tenant(principal, recording.tenant, policy):
        return _deny(Reason.TENANT_MISMATCH, "access:tenant")
    if not request.purpose:
        return _deny(Reason.NO_PURPOSE, "access:purpose-declared")
    gate = _assignment_gate(principal, role, recording, request.assignment, request.purpose)
    if gate is not None:
        return gate
    denial = _purpose_check(principal, recording, request.purpose, policy)
    if denial is not None:
        return denial
    purpose = policy.purposes[request.purpose]
    justified = _given(request.justification) or request.assignment is not None
    if purpose.requires_justification and not justified:
        return _deny(Reason.JUSTIFICATION_REQUIRED, "access:justification")
    if purpose.requires_legal_basis:
        if not _given(request.legal_basis):
            return _deny(Reason.LEGAL_BASIS_REQUIRED, "access:legal-basis")
        if request.legal_basis not in LEGAL_BASES or request.legal_basis not in policy.legal_bases:
            return _deny(Reason.LEGAL_BASIS_UNKNOWN, "access:legal-basis")
    if purpose.requires_reference and not _given(request.reference):
        return _deny(Reason.REFERENCE_REQUIRED, "access:reference")
    return _allow(purpose.rule)


def _given(value: str | None) -> bool:
    return value is not None and bool(value.strip())
