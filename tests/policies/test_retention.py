"""Retention classes, retain-until, deletion and erasure decisions (exact boundaries)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from policies import (
    Policy,
    PolicyInputError,
    RecordingFacts,
    RetentionReason,
    deletion_decision,
    erasure_decision,
    retain_until,
    retention_class_for,
)

Facts = Callable[..., RecordingFacts]
Variant = Callable[[Callable[[dict[str, Any]], None]], Policy]

STARTED = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
ENDED = datetime(2026, 3, 1, 9, 12, 30, tzinfo=UTC)
TICK = timedelta(microseconds=1)


def test_operational_purposes_keep_recordings_90_days(policy: Policy) -> None:
    retention_class = retention_class_for(("customer-response", "quality-improvement"), policy)
    assert retention_class.id == "standard-90d"
    assert retain_until(STARTED, ENDED, retention_class, policy) == ENDED + timedelta(days=90)


@pytest.mark.clause("storage-period")
def test_deletion_is_due_at_exactly_retain_until(policy: Policy, facts: Facts) -> None:
    until = ENDED + timedelta(days=90)
    recording = facts(started_at=STARTED, ended_at=ENDED, retain_until=until)
    before = deletion_decision(recording, policy, until - TICK)
    at = deletion_decision(recording, policy, until)
    after = deletion_decision(recording, policy, until + TICK)
    assert (before.delete, before.reason) == (False, RetentionReason.NOT_DUE)
    assert (at.delete, at.reason, at.rule) == (True, RetentionReason.DUE, "retention:due")
    assert after.delete is True


@pytest.mark.clause("storage-period.law")
def test_hold_beats_retention(policy: Policy, facts: Facts) -> None:
    until = ENDED + timedelta(days=90)
    long_after = until + timedelta(days=400)
    by_flag = deletion_decision(facts(retain_until=until, held=True), policy, long_after)
    assert (by_flag.delete, by_flag.reason, by_flag.hold_id) == (False, RetentionReason.HELD, None)
    by_ids = deletion_decision(facts(retain_until=until), policy, long_after, {"H-9", "H-2"})
    assert (by_ids.delete, by_ids.reason) == (False, RetentionReason.HELD)
    assert by_ids.hold_id == "H-2"  # deterministic: the smallest id
    assert by_ids.rule == "retention:legal-hold"


@pytest.mark.clause("requests.removal")
def test_hold_beats_erasure(policy: Policy, facts: Facts, now: datetime) -> None:
    decision = erasure_decision(facts(), policy, now, ["HOLD-7"])
    assert (decision.delete, decision.reason, decision.hold_id) == (
        False,
        RetentionReason.HELD,
        "HOLD-7",
    )
    assert not erasure_decision(facts(held=True), policy, now).delete


@pytest.mark.clause("requests.removal")
def test_erasure_ends_a_stored_recording(policy: Policy, facts: Facts, now: datetime) -> None:
    decision = erasure_decision(facts(), policy, now)
    assert (decision.delete, decision.reason, decision.rule) == (
        True,
        RetentionReason.ERASURE_REQUESTED,
        "retention:erasure",
    )
    # an expired recording is still erased (key destroyed, row becomes a tombstone) ...
    assert erasure_decision(facts(state="expired"), policy, now).delete
    # ... an erased one needs nothing more
    again = erasure_decision(facts(state="erased"), policy, now)
    assert (again.delete, again.reason) == (False, RetentionReason.ALREADY_ERASED)


@pytest.mark.parametrize("state", ["expired", "erased"])
def test_ended_recordings_are_not_deleted_again(
    policy: Policy, facts: Facts, now: datetime, state: str
) -> None:
    decision = deletion_decision(
        facts(state=state, retain_until=now - timedelta(days=1)), policy, now
    )
    assert (decision.delete, decision.reason) == (False, RetentionReason.NOT_STORED)


@pytest.mark.clause("storage-period")
def test_contract_termination_shortens_retention(policy: Policy) -> None:
    standard = policy.retention_classes["standard-90d"]
    period = timedelta(days=policy.termination_class.days)
    assert period == timedelta(days=30)
    # terminated 10 days after the call: 10 + 30 days < 90 days
    terminated = ENDED + timedelta(days=10)
    until = retain_until(STARTED, ENDED, standard, policy, contract_terminated_at=terminated)
    assert until == terminated + period
    # terminated late: the 90-day rule ends first, termination never extends it
    late = ENDED + timedelta(days=80)
    assert retain_until(STARTED, ENDED, standard, policy, contract_terminated_at=late) == (
        ENDED + timedelta(days=90)
    )
    # a former customer calling after the termination: the period runs from the call
    earlier = ENDED - timedelta(days=365)
    assert retain_until(STARTED, ENDED, standard, policy, contract_terminated_at=earlier) == (
        ENDED + period
    )


def test_end_of_contract_class_is_bounded_while_the_contract_is_live(policy: Policy) -> None:
    end_of_contract = policy.retention_classes["end-of-contract"]
    assert end_of_contract.max_days == 1825
    live = retain_until(STARTED, ENDED, end_of_contract, policy)
    assert live == ENDED + timedelta(days=1825)
    terminated = datetime(2027, 6, 30, tzinfo=UTC)
    ended = retain_until(STARTED, ENDED, end_of_contract, policy, contract_terminated_at=terminated)
    assert ended == terminated + timedelta(days=30)


def test_several_purposes_get_the_longest_class(policy_variant: Variant) -> None:
    def add_complaints(data: dict[str, Any]) -> None:
        data["purposes"]["complaint-handling"] = {
            "description": "Complaints kept longer.",
            "clause": "purpose.4-requests",
        }
        data["retention_classes"]["complaints-1y"] = {
            "description": "One year.",
            "clause": "storage-period",
            "anchor": "call-end",
            "days": 365,
        }
        data["retention_classes"]["also-90d"] = {
            "description": "Same horizon as standard, listed later.",
            "clause": "storage-period",
            "anchor": "call-end",
            "days": 90,
        }
        data["retention_rules"].append(
            {"purpose": "complaint-handling", "class": "complaints-1y", "clause": "storage-period"}
        )
        data["retention_rules"][1]["class"] = "also-90d"  # quality-improvement
        data["purposes"]["contract-confirmation"] = {
            "description": "Verbal contract confirmations.",
            "clause": "purpose.4-requests",
        }
        data["retention_rules"].append(
            {
                "purpose": "contract-confirmation",
                "class": "end-of-contract",
                "clause": "storage-period",
            }
        )

    policy = policy_variant(add_complaints)
    assert retention_class_for(["customer-response", "complaint-handling"], policy).id == (
        "complaints-1y"
    )
    assert retention_class_for(["complaint-handling", "customer-response"], policy).id == (
        "complaints-1y"
    )
    # equal horizons: the class listed first in the policy file wins, whatever the order
    assert retention_class_for(["quality-improvement", "customer-response"], policy).id == (
        "standard-90d"
    )
    # the contract-termination class ranks by its bound while live (5 years)
    both = ["complaint-handling", "contract-confirmation"]
    assert retention_class_for(both, policy).id == "end-of-contract"


@pytest.mark.parametrize(
    ("purposes", "message"),
    [
        ((), "at least one purpose"),
        ("customer-response", "at least one purpose"),
        (("customer-response", "sales-promotion"), "'sales-promotion' has no retention rule"),
        (("legal-disclosure",), "'legal-disclosure' has no retention rule"),
    ],
)
def test_retention_class_for_rejects_bad_purposes(
    policy: Policy, purposes: Any, message: str
) -> None:
    with pytest.raises(PolicyInputError, match=message):
        retention_class_for(purposes, policy)


def test_retention_inputs_are_checked(policy: Policy, facts: Facts, now: datetime) -> None:
    standard = policy.retention_classes["standard-90d"]
    with pytest.raises(PolicyInputError, match="ends .* before it starts"):
        retain_until(ENDED, STARTED, standard, policy)
    with pytest.raises(PolicyInputError, match="ended_at must be timezone-aware"):
        retain_until(STARTED, ENDED.replace(tzinfo=None), standard, policy)
    with pytest.raises(PolicyInputError, match="contract_terminated_at must be timezone-aware"):
        retain_until(STARTED, ENDED, standard, policy, contract_terminated_at=datetime(2026, 4, 1))
    with pytest.raises(PolicyInputError, match="now must be timezone-aware"):
        deletion_decision(facts(), policy, now.replace(tzinfo=None))
    with pytest.raises(PolicyInputError, match="not one string"):
        erasure_decision(facts(), policy, now, "HOLD-1")
