"""Every combination of role x tenant x purpose x action x recording state x restriction x
hold x tags x contract state x evidence, checked against an explicit allow-list.

The allow-list below is written out by hand from the privacy policy, not derived
from the implementation: a grant anywhere outside it (or a denial inside it) fails.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from policies import (
    LEGAL_BASES,
    AccessRequest,
    Decision,
    Policy,
    Principal,
    Reason,
    RecordingFacts,
    decide_access,
)

# (role, purpose) -> the evidence the request must carry. Nothing else releases audio.
AUDIO_ALLOW_LIST: dict[tuple[str, str], frozenset[str]] = {
    ("supervisor", "customer-response"): frozenset(),
    ("supervisor", "quality-improvement"): frozenset({"justification"}),
    ("qa-reviewer", "quality-improvement"): frozenset({"justification"}),
    ("qa-vendor", "quality-improvement"): frozenset({"justification"}),
    ("compliance-officer", "legal-disclosure"): frozenset({"legal_basis", "reference"}),
    ("compliance-officer", "customer-disclosure"): frozenset({"reference"}),
}
TAG_BOUND = {"customer-response", "quality-improvement"}
REACHES_RESTRICTED = {"legal-disclosure"}
MAY_LIST = {"supervisor", "qa-reviewer", "qa-vendor", "compliance-officer"}

ROLES = ["supervisor", "qa-reviewer", "qa-vendor", "compliance-officer", "telephony", "operator"]
PURPOSES = [
    "customer-response",
    "quality-improvement",
    "legal-disclosure",
    "customer-disclosure",
    "sales-promotion",
    None,
]
ACTIONS = ["list", "metadata", "play", "download"]
STATES = ["stored", "expired", "erased"]
TAGS = [
    ("customer-response", "quality-improvement"),
    ("customer-response",),
    ("quality-improvement",),
]
# contract state -> (principal org, now); acme-qa's contract runs [2026-01-01, 2028-01-01)
CONTRACTS = {
    "live": ("acme-qa", datetime(2026, 11, 25, 12, tzinfo=UTC)),
    "not-started": ("acme-qa", datetime(2025, 12, 31, 23, 59, tzinfo=UTC)),
    "ended": ("acme-qa", datetime(2028, 1, 1, tzinfo=UTC)),
    "no-org": (None, datetime(2026, 11, 25, 12, tzinfo=UTC)),
    "unknown-org": ("shadow-qa", datetime(2026, 11, 25, 12, tzinfo=UTC)),
}
# (principal's token tenant, recording's tenant); the shipped policy's default tenant
# is acme (a token naming none acts there); "*" spans tenants, which only operator may
# hold (and operator never gets a recording).
TENANTS = {
    "own-default": (None, "acme"),
    "foreign-default": (None, "globex"),
    "own": ("globex", "globex"),
    "foreign": ("globex", "acme"),
    "span": ("*", "globex"),
}
SPANS_TENANTS = {"operator"}
JUSTIFICATIONS = [None, "QA-2026-311"]
LEGAL_BASIS_VALUES = [None, "consent", "astrology"]
REFERENCES = [None, "CASE-9"]


def expected_allow(
    role: str,
    purpose: str | None,
    action: str,
    recording: RecordingFacts,
    contract: str,
    evidence: dict[str, str | None],
    token_tenant: str | None = None,
) -> bool:
    if role not in ROLES[:4]:
        return False
    if token_tenant == "*":
        if role not in SPANS_TENANTS:
            return False
    elif (token_tenant or "acme") != recording.tenant:
        return False
    if role == "qa-vendor" and contract != "live":
        return False

    def usable(p: str) -> bool:
        return (
            (role, p) in AUDIO_ALLOW_LIST
            and (p not in TAG_BOUND or p in recording.purposes)
            and recording.state == "stored"
            and (not recording.restricted or p in REACHES_RESTRICTED)
        )

    if action in ("list", "metadata"):
        if role not in MAY_LIST:
            return False
        if purpose is not None:
            return usable(purpose)
        return any(usable(p) for (r, p) in AUDIO_ALLOW_LIST if r == role)
    if purpose is None or not usable(purpose):
        return False
    for needed in AUDIO_ALLOW_LIST[(role, purpose)]:
        value = evidence[needed]
        if not value or (needed == "legal_basis" and value not in LEGAL_BASES):
            return False
    return True


@pytest.mark.clause("management.safety", "purpose.limitation")
def test_no_combination_outside_the_allow_list_is_granted(
    policy: Policy, facts: Callable[..., RecordingFacts]
) -> None:
    recordings = {
        tenant: [
            facts(state=state, restricted=restricted, held=held, purposes=tags, tenant=tenant)
            for state, restricted, held, tags in itertools.product(
                STATES, (False, True), (False, True), TAGS
            )
        ]
        for tenant in ("acme", "globex")
    }
    requests = [
        (purpose, action, AccessRequest(action, purpose, justification, basis, reference))
        for purpose, action, justification, basis, reference in itertools.product(
            PURPOSES, ACTIONS, JUSTIFICATIONS, LEGAL_BASIS_VALUES, REFERENCES
        )
    ]
    mismatches: list[str] = []
    granted_pairs: set[tuple[str, str]] = set()
    granted_tenancy: set[str] = set()
    checked = 0
    for role_name, (contract, (org, now)), (
        tenancy,
        (token_tenant, rec_tenant),
    ) in itertools.product([*ROLES, "intruder"], CONTRACTS.items(), TENANTS.items()):
        principal = Principal("u1", role_name, org, token_tenant)
        for purpose, action, request in requests:
            evidence = {
                "justification": request.justification,
                "legal_basis": request.legal_basis,
                "reference": request.reference,
            }
            for recording in recordings[rec_tenant]:
                checked += 1
                decision = decide_access(principal, request, recording, policy, now)
                want = expected_allow(
                    role_name, purpose, action, recording, contract, evidence, token_tenant
                )
                if decision.allowed != want:
                    mismatches.append(
                        f"{role_name}/{contract}/{tenancy} {action} {purpose} {evidence} "
                        f"{recording.state} restricted={recording.restricted} "
                        f"tags={recording.purposes}: got {decision}"
                    )
                    continue
                assert decision.rule is not None
                if decision.allowed:
                    granted_tenancy.add(tenancy)
                    assert decision.reason is Reason.GRANTED
                    if action in ("play", "download"):
                        assert purpose is not None
                        assert decision.rule == f"purpose:{purpose}"
                        granted_pairs.add((role_name, purpose))
                    else:
                        assert decision.rule == f"role:{role_name}"
                else:
                    assert decision.decision is Decision.DENY
                    assert decision.reason is not Reason.GRANTED
                    assert decision.rule.startswith("access:")
    assert checked == 7 * 5 * len(TENANTS) * len(requests) * len(recordings["acme"])
    assert not mismatches, f"{len(mismatches)} mismatches, e.g.\n" + "\n".join(mismatches[:20])
    # every allow-list entry is actually reachable: the test is not vacuous
    assert granted_pairs == set(AUDIO_ALLOW_LIST)
    # 0 wrongful grants across tenants, and grants within one's own tenant do happen
    assert granted_tenancy == {"own-default", "own"}


# -- evaluation assignments ----------------------------------------------------------------
# An assignment variant -> how it relates to the request: None (no assignment), or an
# AssignmentFacts built for principal "u1" and recording "rec-1".
ASSIGNMENTS: dict[str, dict[str, str] | None] = {
    "none": None,
    "own-open": {"reviewer": "u1", "recording_id": "rec-1", "status": "open"},
    "own-completed": {"reviewer": "u1", "recording_id": "rec-1", "status": "completed"},
    "own-cancelled": {"reviewer": "u1", "recording_id": "rec-1", "status": "cancelled"},
    "other-reviewer": {"reviewer": "u2", "recording_id": "rec-1", "status": "open"},
    "other-recording": {"reviewer": "u1", "recording_id": "rec-2", "status": "open"},
    "other-purpose": {
        "reviewer": "u1", "recording_id": "rec-1", "status": "open", "purpose": "customer-response"
    },
}  # fmt: skip
# Which roles need an assignment, per policy variant: the shipped one (nobody) and one
# where the entrusted vendor hears only what it is assigned.
REQUIRES_ASSIGNMENT = {"shipped": frozenset(), "vendor-assigned": frozenset({"qa-vendor"})}


def expected_with_assignment(
    role: str,
    purpose: str | None,
    action: str,
    recording: RecordingFacts,
    contract: str,
    justification: str | None,
    variant: str,
    assignment: dict[str, str] | None,
) -> bool:
    """The hand-written rule: an assignment never widens what the role may do; it must be
    the caller's own, open, for this recording and purpose, and then it is the
    justification. A role requiring assignments gets nothing on a recording without one."""
    if assignment is not None:
        assigned_purpose = assignment.get("purpose", "quality-improvement")
        if (
            assignment["reviewer"] != "u1"
            or assignment["recording_id"] != recording.recording_id
            or assignment["status"] != "open"
            or (purpose is not None and purpose != assigned_purpose)
        ):
            return False
        if action in ("list", "metadata") and purpose is None:
            purpose = assigned_purpose
        justification = justification or "asg-1"
    elif role in REQUIRES_ASSIGNMENT[variant]:
        return False
    evidence = {"justification": justification, "legal_basis": None, "reference": None}
    return expected_allow(role, purpose, action, recording, contract, evidence)


@pytest.mark.clause("purpose.3-improvement")
def test_assignments_in_the_access_matrix(
    policy: Policy,
    facts: Callable[..., RecordingFacts],
    policy_variant: Callable[[Callable[[dict[str, object]], None]], Policy],
) -> None:
    from policies import AssignmentFacts

    def vendor_assigned(data: dict[str, object]) -> None:
        roles = data["roles"]
        assert isinstance(roles, dict)
        roles["qa-vendor"]["requires_assignment"] = True

    policies = {"shipped": policy, "vendor-assigned": policy_variant(vendor_assigned)}
    recordings = [
        facts(state=state, restricted=restricted, purposes=tags)
        for state, restricted, tags in itertools.product(STATES, (False, True), TAGS)
    ]
    mismatches: list[str] = []
    granted: set[tuple[str, str, str]] = set()
    checked = 0
    for variant, name, (contract, (org, now)), purpose, action, justification in itertools.product(
        policies, ASSIGNMENTS, CONTRACTS.items(), PURPOSES, ACTIONS, JUSTIFICATIONS
    ):
        spec = ASSIGNMENTS[name]
        assignment = None
        if spec is not None:
            assignment = AssignmentFacts(
                assignment_id="asg-1",
                reviewer=spec["reviewer"],
                recording_id=spec["recording_id"],
                purpose=spec.get("purpose", "quality-improvement"),
                status=spec["status"],
            )
        request = AccessRequest(action, purpose, justification, assignment=assignment)
        for role_name in [*ROLES, "intruder"]:
            principal = Principal("u1", role_name, org)
            for recording in recordings:
                checked += 1
                decision = decide_access(principal, request, recording, policies[variant], now)
                want = expected_with_assignment(
                    role_name, purpose, action, recording, contract, justification, variant, spec
                )
                if decision.allowed != want:
                    mismatches.append(
                        f"{variant} {role_name}/{contract} {action} {purpose} {name} "
                        f"justification={justification} {recording.state} "
                        f"restricted={recording.restricted} tags={recording.purposes}: {decision}"
                    )
                elif decision.allowed:
                    granted.add((variant, role_name, name))
                else:
                    assert decision.rule is not None and decision.rule.startswith("access:")
    assert checked == 2 * 7 * 5 * 6 * 4 * 2 * 7 * 18
    assert not mismatches, f"{len(mismatches)} mismatches, e.g.\n" + "\n".join(mismatches[:20])
    # Not vacuous: an open assignment grants each evaluating role; the vendor who needs
    # one is granted only with one.
    for role_name in ("qa-reviewer", "qa-vendor", "supervisor"):
        assert ("shipped", role_name, "own-open") in granted
    assert ("vendor-assigned", "qa-vendor", "own-open") in granted
    assert ("vendor-assigned", "qa-vendor", "none") not in granted
    assert ("shipped", "qa-vendor", "none") in granted


def test_an_assignment_stands_for_the_justification(
    policy: Policy, facts: Callable[..., RecordingFacts]
) -> None:
    from policies import AssignmentFacts

    now = CONTRACTS["live"][1]
    assignment = AssignmentFacts("asg-7", "u1", "rec-1", "quality-improvement", "open")
    principal = Principal("u1", "qa-reviewer")
    without = decide_access(
        principal, AccessRequest("play", "quality-improvement"), facts(), policy, now
    )
    assert without.reason is Reason.JUSTIFICATION_REQUIRED
    granted = decide_access(
        principal,
        AccessRequest("play", "quality-improvement", assignment=assignment),
        facts(),
        policy,
        now,
    )
    assert (granted.allowed, granted.rule) == (True, "purpose:quality-improvement")
    # A restricted recording stays denied, assignment or not.
    restricted = decide_access(
        principal,
        AccessRequest("play", "quality-improvement", assignment=assignment),
        facts(restricted=True),
        policy,
        now,
    )
    assert restricted.reason is Reason.RECORDING_RESTRICTED
    # Someone else's assignment names the reason before anything about the recording.
    stolen = decide_access(
        Principal("u9", "qa-reviewer"),
        AccessRequest("play", "quality-improvement", assignment=assignment),
        facts(state="erased"),
        policy,
        now,
    )
    assert (stolen.reason, stolen.rule) == (Reason.ASSIGNMENT_NOT_YOURS, "access:assignment")
