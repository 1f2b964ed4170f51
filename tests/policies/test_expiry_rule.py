"""The expiry rule is written once (policies.retention): its cut, its decision, what
counts as overdue, and the digest that reschedules stored recordings when it changes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

import policies.retention
from policies import (
    RULE_VERSION,
    Policy,
    PolicyInputError,
    RecordingFacts,
    RecordingStatus,
    deletion_decision,
    expiry_cut,
    is_overdue,
    retention_rules_digest,
)

Facts = Callable[..., RecordingFacts]
UNTIL = datetime(2027, 2, 1, 12, 0, 0, 500_000, tzinfo=UTC)
TICK = timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("state", "now", "admitted"),
    [
        (RecordingStatus.STORED, UNTIL - TICK, False),
        (RecordingStatus.STORED, UNTIL, True),
        (RecordingStatus.STORED, UNTIL + timedelta(days=900), True),
        (RecordingStatus.EXPIRED, UNTIL + TICK, False),
        (RecordingStatus.ERASED, UNTIL + TICK, False),
    ],
)
def test_the_cut_admits_stored_recordings_from_exactly_retain_until(
    facts: Facts, state: RecordingStatus, now: datetime, admitted: bool
) -> None:
    cut = expiry_cut(now)
    assert cut.cutoff == now and cut.state is RecordingStatus.STORED
    assert cut.admits(facts(retain_until=UNTIL, state=state.value)) is admitted


def test_every_deletion_the_rule_decides_is_inside_its_cut(policy: Policy, facts: Facts) -> None:
    """The catalog selects with the cut only: the decision must never want more."""
    for state in RecordingStatus:
        for offset in (-TICK, timedelta(0), TICK, timedelta(days=1)):
            for held in (False, True):
                recording = facts(retain_until=UNTIL, state=state.value, held=held)
                now = UNTIL + offset
                decision = deletion_decision(recording, policy, now)
                if decision.delete:
                    assert expiry_cut(now).admits(recording)
                assert is_overdue(recording, policy, now) is decision.delete


def test_a_hold_takes_a_recording_out_of_the_overdue_count(policy: Policy, facts: Facts) -> None:
    recording = facts(retain_until=UNTIL)
    assert is_overdue(recording, policy, UNTIL)
    assert not is_overdue(recording, policy, UNTIL, ["HOLD-1"])
    assert not is_overdue(facts(retain_until=UNTIL, held=True), policy, UNTIL)


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(PolicyInputError, match="timezone-aware"):
        expiry_cut(datetime(2027, 1, 1))


def test_the_digest_covers_the_rule_version_and_the_policy_data(
    policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest = retention_rules_digest(policy)
    assert digest == retention_rules_digest(policy)  # stable
    monkeypatch.setattr(policies.retention, "RULE_VERSION", RULE_VERSION + 1)
    assert retention_rules_digest(policy) != digest
    monkeypatch.undo()
    first = next(iter(policy.retention_classes.values()))
    changed = dataclasses.replace(first, days=first.days + 1)
    other = dataclasses.replace(
        policy, retention_classes={**policy.retention_classes, first.id: changed}
    )
    assert retention_rules_digest(other) != digest
