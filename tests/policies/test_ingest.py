"""Ingest decisions: consent, purpose tags and the retention a new recording gets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from policies import IngestReason, Policy, PolicyInputError, decide_ingest, resolve_purposes

STARTED = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
ENDED = datetime(2026, 11, 20, 10, 7, tzinfo=UTC)


def ingest(policy: Policy, consent: str, purposes: Any = None) -> Any:
    return decide_ingest(consent, purposes, policy, started_at=STARTED, ended_at=ENDED)


@pytest.mark.clause("collection.necessary-range")
def test_declined_consent_is_not_stored(policy: Policy) -> None:
    decision = ingest(policy, "declined")
    assert (decision.store, decision.reason, decision.rule) == (
        False,
        IngestReason.CONSENT_DECLINED,
        "ingest:consent",
    )
    assert decision.purposes == () and decision.retain_until is None
    # declined wins even over an event that is otherwise bad: nothing is kept for the DLQ
    assert ingest(policy, "declined", ["sales-promotion"]).store is False


@pytest.mark.parametrize("consent", ["notified", "granted"])
@pytest.mark.clause("collection.fair-methods")
def test_notified_and_granted_consent_are_stored(policy: Policy, consent: str) -> None:
    decision = ingest(policy, consent, ["quality-improvement"])
    assert decision.store is True
    assert decision.reason is IngestReason.STORE
    assert decision.purposes == ("quality-improvement",)
    assert decision.retention_class == "standard-90d"
    assert decision.retain_until == ENDED + timedelta(days=90)


@pytest.mark.clause("collection.call-recording", "collection.necessary-range")
def test_missing_purposes_default_to_the_operational_ones(policy: Policy) -> None:
    decision = ingest(policy, "notified")
    assert decision.purposes == ("customer-response", "quality-improvement")
    assert resolve_purposes(None, policy) == policy.default_purposes
    assert tuple(p.id for p in policy.purposes.values() if p.tag_bound) == (
        "customer-response",
        "quality-improvement",
    )


@pytest.mark.parametrize("consent", ["", "yes", "DECLINED", "unknown"])
@pytest.mark.clause("collection.fair-methods")
def test_unknown_consent_is_a_bad_event(policy: Policy, consent: str) -> None:
    with pytest.raises(
        PolicyInputError, match="consent must be one of notified, granted, declined"
    ):
        ingest(policy, consent)


@pytest.mark.parametrize(
    ("purposes", "message"),
    [
        ([], "at least one purpose"),
        ("quality-improvement", "not one string"),
        (["quality-improvement", "sales-promotion"], "unknown purpose 'sales-promotion'"),
        (["legal-disclosure"], "'legal-disclosure' is a disclosure purpose"),
    ],
)
def test_bad_purposes_are_rejected(policy: Policy, purposes: Any, message: str) -> None:
    with pytest.raises(PolicyInputError, match=message):
        ingest(policy, "granted", purposes)


def test_duplicate_purposes_are_tagged_once(policy: Policy) -> None:
    resolved = resolve_purposes(
        ["quality-improvement", "customer-response", "quality-improvement"], policy
    )
    assert resolved == ("quality-improvement", "customer-response")


def test_a_call_ending_before_it_starts_is_rejected(policy: Policy) -> None:
    with pytest.raises(PolicyInputError, match="before it starts"):
        decide_ingest("granted", None, policy, started_at=ENDED, ended_at=STARTED)
