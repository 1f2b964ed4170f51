"""Access decisions, case by case, against the shipped policy (pure, no server)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from policies import (
    AccessRequest,
    Decision,
    Policy,
    PolicyInputError,
    Principal,
    Reason,
    RecordingFacts,
    could_use,
    decide_access,
    decide_capability,
)

Facts = Callable[..., RecordingFacts]

SUPERVISOR = Principal("sam", "supervisor")
REVIEWER = Principal("quinn", "qa-reviewer")
VENDOR = Principal("val", "qa-vendor", "acme-qa")
COMPLIANCE = Principal("cora", "compliance-officer")
OPERATOR = Principal("otto", "operator")
TELEPHONY = Principal("pbx-1", "telephony")

QA_PLAY = AccessRequest("play", "quality-improvement", justification="QA-2026-311 coaching")


@pytest.mark.clause("purpose.3-improvement")
def test_qa_reviewer_may_play_for_quality_improvement(
    policy: Policy, facts: Facts, now: datetime
) -> None:
    decision = decide_access(REVIEWER, QA_PLAY, facts(), policy, now)
    assert decision.decision is Decision.ALLOW
    assert decision.reason is Reason.GRANTED
    assert decision.rule == "purpose:quality-improvement"
    download = AccessRequest("download", "quality-improvement", justification="QA-1")
    assert decide_access(REVIEWER, download, facts(), policy, now).allowed


@pytest.mark.clause("purpose.4-requests")
def test_supervisor_may_play_for_customer_response(
    policy: Policy, facts: Facts, now: datetime
) -> None:
    request = AccessRequest("play", "customer-response")
    decision = decide_access(SUPERVISOR, request, facts(), policy, now)
    assert (decision.decision, decision.rule) == (Decision.ALLOW, "purpose:customer-response")
    # the QA reviewer may not use customer-response
    denied = decide_access(REVIEWER, request, facts(), policy, now)
    assert (denied.decision, denied.reason) == (Decision.DENY, Reason.ROLE_NOT_ALLOWED_PURPOSE)
    assert denied.rule == "access:role-purpose"


@pytest.mark.parametrize("justification", [None, "", "   "])
@pytest.mark.clause("purpose.necessary-range")
def test_quality_review_needs_a_justification(
    policy: Policy, facts: Facts, now: datetime, justification: str | None
) -> None:
    request = AccessRequest("play", "quality-improvement", justification=justification)
    decision = decide_access(REVIEWER, request, facts(), policy, now)
    assert (decision.decision, decision.reason) == (Decision.DENY, Reason.JUSTIFICATION_REQUIRED)
    assert decision.rule == "access:justification"


@pytest.mark.clause("purpose.limitation")
def test_audio_without_a_purpose_is_denied(policy: Policy, facts: Facts, now: datetime) -> None:
    for principal in (SUPERVISOR, REVIEWER, VENDOR, COMPLIANCE):
        decision = decide_access(principal, AccessRequest("play"), facts(), policy, now)
        assert (decision.decision, decision.reason) == (Decision.DENY, Reason.NO_PURPOSE)


@pytest.mark.clause("purpose.limitation")
def test_audio_for_a_purpose_the_recording_was_not_tagged_with_is_denied(
    policy: Policy, facts: Facts, now: datetime
) -> None:
    only_response = facts(purposes=("customer-response",))
    decision = decide_access(REVIEWER, QA_PLAY, only_response, policy, now)
    assert (decision.decision, decision.reason) == (Decision.DENY, Reason.PURPOSE_NOT_TAGGED)
    assert decision.rule == "access:tag-bound"
    # ... and it is not even listed for the reviewer
    assert not could_use(REVIEWER, only_response, policy, now)
    assert could_use(SUPERVISOR, only_response, policy, now)


@pytest.mark.parametrize("purpose", ["sales-promotion", "contract-confirmation", "marketing"])
@pytest.mark.clause("purpose.1-contracts", "purpose.2-sales")
def test_purposes_outside_the_policy_are_denied(
    policy: Policy, facts: Facts, now: datetime, purpose: str
) -> None:
    tagged = facts(purposes=("customer-response", "quality-improvement", purpose))
    for principal in (SUPERVISOR, REVIEWER, VENDOR, COMPLIANCE):
        request = AccessRequest(
            "play", purpose, justification="j", legal_basis="consent", reference="r"
        )
        decision = decide_access(principal, request, tagged, policy, now)
        assert (decision.decision, decision.reason) == (Decision.DENY, Reason.UNKNOWN_PURPOSE)


@pytest.mark.parametrize(
    ("at", "allowed"),
    [
        (datetime(2025, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), False),  # not started
        (datetime(2026, 1, 1, tzinfo=UTC), True),  # start is inclusive
        (datetime(2027, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), True),
        (datetime(2028, 1, 1, tzinfo=UTC), False),  # end is exclusive
    ],
)
@pytest.mark.clause("entrustment")
def test_vendor_needs_a_live_contract(
    policy: Policy, facts: Facts, at: datetime, allowed: bool
) -> None:
    recording = facts(started_at=at - timedelta(hours=1), ended_at=at - timedelta(minutes=50))
    decision = decide_access(VENDOR, QA_PLAY, recording, policy, at)
    assert decision.allowed is allowed
    if not allowed:
        assert decision.reason is Reason.CONTRACT_NOT_LIVE
        assert decision.rule == "access:entrusted-contract"
        listing = decide_access(VENDOR, AccessRequest("list"), None, policy, at)
        assert listing.reason is Reason.CONTRACT_NOT_LIVE
        assert not could_use(VENDOR, recording, policy, at)
        capability = decide_capability(VENDOR, "list-recordings", policy, at)
        assert capability.reason is Reason.CONTRACT_NOT_LIVE


@pytest.mark.parametrize(
    ("org", "reason"), [(None, Reason.NO_ORG), ("", Reason.NO_ORG), ("evil-qa", Reason.UNKNOWN_ORG)]
)
@pytest.mark.clause("entrustment")
def test_vendor_without_a_known_org_is_denied(
    policy: Policy, facts: Facts, now: datetime, org: str | None, reason: Reason
) -> None:
    vendor = Principal("val", "qa-vendor", org)
    decision = decide_access(vendor, QA_PLAY, facts(), policy, now)
    assert (decision.decision, decision.reason) == (Decision.DENY, reason)


@pytest.mark.clause("third-party")
def test_legal_disclosure_needs_basis_and_reference(
    policy: Policy, facts: Facts, now: datetime
) -> None:
    def ask(**kwargs: str | None) -> Reason:
        request = AccessRequest("download", "legal-disclosure", **kwargs)
        return decide_access(COMPLIANCE, request, facts(), policy, now).reason

    assert ask(reference="COURT-7") is Reason.LEGAL_BASIS_REQUIRED
    assert ask(legal_basis="because", reference="COURT-7") is Reason.LEGAL_BASIS_UNKNOWN
    assert ask(legal_basis="legal-requirement") is Reason.REFERENCE_REQUIRED
    assert ask(legal_basis="legal-requirement", reference=" ") is Reason.REFERENCE_REQUIRED
    assert ask(legal_basis="legal-requirement", reference="COURT-7") is Reason.GRANTED
    # a recording never tagged with legal-disclosure may still be disclosed (not tag-bound)
    assert "legal-disclosure" not in facts().purposes
    # nobody else may disclose, whatever evidence they bring
    request = AccessRequest("download", "legal-disclosure", legal_basis="consent", reference="r")
    for principal in (SUPERVISOR, REVIEWER, VENDOR, OPERATOR, TELEPHONY):
        assert not decide_access(principal, request, facts(), policy, now).allowed


@pytest.mark.parametrize("basis", ["consent", "protect-life-body-property", "legal-requirement"])
@pytest.mark.clause("third-party.1-consent", "third-party.2-vital", "third-party.3-law")
def test_each_legal_basis_of_the_closed_list_is_accepted(
    policy: Policy, facts: Facts, now: datetime, basis: str
) -> None:
    request = AccessRequest("download", "legal-disclosure", legal_basis=basis, reference="CASE-1")
    decision = decide_access(COMPLIANCE, request, facts(), policy, now)
    assert (decision.decision, decision.rule) == (Decision.ALLOW, "purpose:legal-disclosure")
    assert basis in policy.legal_bases


@pytest.mark.clause("requests.confirmation")
def test_customer_disclosure_needs_a_reference(policy: Policy, facts: Facts, now: datetime) -> None:
    without = AccessRequest("download", "customer-disclosure")
    decision = decide_access(COMPLIANCE, without, facts(), policy, now)
    assert (decision.decision, decision.reason) == (Decision.DENY, Reason.REFERENCE_REQUIRED)
    with_ref = AccessRequest("download", "customer-disclosure", reference="PR-0042")
    assert decide_access(COMPLIANCE, with_ref, facts(), policy, now).allowed
    assert not decide_access(SUPERVISOR, with_ref, facts(), policy, now).allowed


@pytest.mark.clause("requests.cessation")
def test_restricted_recording_is_only_released_for_legal_disclosure(
    policy: Policy, facts: Facts, now: datetime
) -> None:
    restricted = facts(restricted=True)
    for principal, request in [
        (REVIEWER, QA_PLAY),
        (SUPERVISOR, AccessRequest("play", "customer-response")),
        (VENDOR, QA_PLAY),
        (COMPLIANCE, AccessRequest("download", "customer-disclosure", reference="PR-1")),
    ]:
        decision = decide_access(principal, request, restricted, policy, now)
        assert (decision.decision, decision.reason) == (Decision.DENY, Reason.RECORDING_RESTRICTED)
        assert not could_use(principal, restricted, policy, now, request.purpose)
    legal = AccessRequest(
        "download", "legal-disclosure", legal_basis="legal-requirement", reference="C"
    )
    assert decide_access(COMPLIANCE, legal, restricted, policy, now).allowed
    # a restricted recording is hidden from QA listings
    assert not decide_access(REVIEWER, AccessRequest("metadata"), restricted, policy, now).allowed


@pytest.mark.parametrize("state", ["expired", "erased"])
def test_ended_recordings_are_never_served(
    policy: Policy, facts: Facts, now: datetime, state: str
) -> None:
    ended = facts(state=state)
    legal = AccessRequest("download", "legal-disclosure", legal_basis="consent", reference="C")
    for principal, request in [(REVIEWER, QA_PLAY), (COMPLIANCE, legal)]:
        decision = decide_access(principal, request, ended, policy, now)
        assert (decision.decision, decision.reason) == (Decision.DENY, Reason.RECORDING_NOT_STORED)
    metadata = decide_access(REVIEWER, AccessRequest("metadata"), ended, policy, now)
    assert metadata.reason is Reason.RECORDING_NOT_STORED


def test_a_held_recording_is_still_usable(policy: Policy, facts: Facts, now: datetime) -> None:
    assert decide_access(REVIEWER, QA_PLAY, facts(held=True), policy, now).allowed


@pytest.mark.clause("requests.identity")
def test_only_compliance_handles_privacy_requests(policy: Policy, now: datetime) -> None:
    for capability in ("privacy-requests", "manage-holds", "read-audit"):
        allowed = {
            role
            for role in policy.roles
            if decide_capability(Principal("u", role, "acme-qa"), capability, policy, now).allowed
        }
        assert allowed == {"compliance-officer"}, capability


def test_capabilities_of_each_role(policy: Policy, now: datetime) -> None:
    expected = {
        "ingest": {"telephony"},
        "view-metrics": {"operator"},
        "list-recordings": {"supervisor", "qa-reviewer", "qa-vendor", "compliance-officer"},
    }
    for capability, roles in expected.items():
        granted = {
            role
            for role in policy.roles
            if decide_capability(Principal("u", role, "acme-qa"), capability, policy, now).allowed
        }
        assert granted == roles, capability
    denied = decide_capability(OPERATOR, "ingest", policy, now)
    assert (denied.reason, denied.rule) == (Reason.CAPABILITY_NOT_GRANTED, "access:capability")
    unknown = decide_capability(OPERATOR, "launch-missiles", policy, now)
    assert unknown.reason is Reason.UNKNOWN_CAPABILITY
    ingest = decide_capability(TELEPHONY, "ingest", policy, now)
    assert (ingest.decision, ingest.rule) == (Decision.ALLOW, "role:telephony")


@pytest.mark.clause("management.safety")
def test_operator_and_telephony_never_get_audio(
    policy: Policy, facts: Facts, now: datetime
) -> None:
    for principal in (OPERATOR, TELEPHONY):
        for purpose in policy.purposes:
            for action in ("play", "download"):
                request = AccessRequest(
                    action, purpose, justification="j", legal_basis="consent", reference="r"
                )
                decision = decide_access(principal, request, facts(), policy, now)
                assert decision.reason is Reason.ROLE_NOT_ALLOWED_PURPOSE
        assert not could_use(principal, facts(), policy, now)
        listing = decide_access(principal, AccessRequest("list"), None, policy, now)
        assert listing.reason is Reason.CAPABILITY_NOT_GRANTED


def test_unknown_role_gets_nothing(policy: Policy, facts: Facts, now: datetime) -> None:
    stranger = Principal("mallory", "admin")
    for action in ("list", "metadata", "play", "download"):
        decision = decide_access(
            stranger, AccessRequest(action, "quality-improvement"), facts(), policy, now
        )
        assert (decision.reason, decision.rule) == (Reason.UNKNOWN_ROLE, "access:unknown-role")
    assert decide_capability(stranger, "view-metrics", policy, now).reason is Reason.UNKNOWN_ROLE


def test_listing_follows_could_use(policy: Policy, facts: Facts, now: datetime) -> None:
    recordings = [
        facts(recording_id="both"),
        facts(recording_id="response-only", purposes=("customer-response",)),
        facts(recording_id="restricted", restricted=True),
        facts(recording_id="expired", state="expired"),
    ]
    visible = {
        principal.role: [r.recording_id for r in recordings if could_use(principal, r, policy, now)]
        for principal in (SUPERVISOR, REVIEWER, VENDOR, COMPLIANCE, OPERATOR)
    }
    assert visible == {
        "supervisor": ["both", "response-only"],
        "qa-reviewer": ["both"],
        "qa-vendor": ["both"],
        "compliance-officer": ["both", "response-only", "restricted"],
        "operator": [],
    }
    # a listing for a named purpose narrows it
    assert not could_use(SUPERVISOR, recordings[1], policy, now, "quality-improvement")
    narrowed = decide_access(
        SUPERVISOR, AccessRequest("metadata", "quality-improvement"), recordings[1], policy, now
    )
    assert narrowed.reason is Reason.PURPOSE_NOT_TAGGED
    assert decide_access(SUPERVISOR, AccessRequest("metadata"), recordings[1], policy, now).allowed


def test_metadata_needs_a_recording(policy: Policy, now: datetime) -> None:
    decision = decide_access(REVIEWER, AccessRequest("metadata"), None, policy, now)
    assert decision.reason is Reason.NO_RECORDING
    assert decide_access(REVIEWER, QA_PLAY, None, policy, now).reason is Reason.NO_RECORDING
    assert decide_access(REVIEWER, AccessRequest("list"), None, policy, now).allowed


def test_every_cited_rule_is_claimed_by_a_clause(
    policy: Policy, facts: Facts, now: datetime
) -> None:
    samples = [
        decide_access(Principal("x", "nobody"), QA_PLAY, facts(), policy, now),
        decide_access(REVIEWER, AccessRequest("play"), facts(), policy, now),
        decide_access(REVIEWER, QA_PLAY, facts(restricted=True), policy, now),
        decide_access(REVIEWER, QA_PLAY, facts(), policy, now),
        decide_capability(OPERATOR, "view-metrics", policy, now),
    ]
    for decision in samples:
        assert decision.rule is not None
        assert policy.clauses_for_rule(decision.rule), decision.rule


def test_bad_input_is_rejected_clearly(policy: Policy, facts: Facts) -> None:
    naive = datetime(2026, 11, 25, 12, 0)
    with pytest.raises(PolicyInputError, match="now must be timezone-aware"):
        decide_access(REVIEWER, QA_PLAY, facts(), policy, naive)
    with pytest.raises(PolicyInputError, match="now must be timezone-aware"):
        decide_capability(REVIEWER, "list-recordings", policy, naive)
    with pytest.raises(PolicyInputError, match="action must be one of"):
        AccessRequest("stream", "quality-improvement")
    with pytest.raises(PolicyInputError, match="recording state must be one of"):
        facts(state="archived")
    with pytest.raises(PolicyInputError, match="started_at must be timezone-aware"):
        facts(started_at=naive)


def test_rate_limit_for(policy: Policy) -> None:
    assert policy.rate_limit_for("qa-vendor") == 30
    assert policy.rate_limit_for("qa-reviewer") == 60
    assert policy.rate_limit_for("operator") is None
    assert policy.rate_limit_for("no-such-role") is None


@pytest.mark.clause("management.safety")
def test_tenants_cannot_see_each_other(policy: Policy, facts: Facts, now: datetime) -> None:
    from policies import ALL_TENANTS, tenant_scope

    globex = facts(tenant="globex")
    play = AccessRequest("play", "quality-improvement", justification="QA-1")
    own = Principal("quinn", "qa-reviewer", tenant="globex")
    other = Principal("quinn", "qa-reviewer", tenant="acme")
    legacy = Principal("quinn", "qa-reviewer")  # a token naming no tenant: the default
    assert decide_access(own, play, globex, policy, now).allowed
    for stranger in (other, legacy):
        denied = decide_access(stranger, play, globex, policy, now)
        assert (denied.reason, denied.rule) == (Reason.TENANT_MISMATCH, "access:tenant")
        listed = decide_access(stranger, AccessRequest("metadata"), globex, policy, now)
        assert listed.reason is Reason.TENANT_MISMATCH
    assert tenant_scope(legacy, policy) == policy.default_tenant == "acme"
    # Only a role the policy lets span tenants may hold a token for every tenant.
    spanning = Principal("cora", "compliance-officer", tenant=ALL_TENANTS)
    denied = decide_access(spanning, AccessRequest("metadata"), globex, policy, now)
    assert (denied.reason, denied.rule) == (Reason.TENANT_SPAN_NOT_ALLOWED, "access:tenant")
    assert not decide_capability(spanning, "read-audit", policy, now).allowed
    operator = Principal("otto", "operator", tenant=ALL_TENANTS)
    assert decide_capability(operator, "view-metrics", policy, now).allowed
    assert tenant_scope(operator, policy) is None
