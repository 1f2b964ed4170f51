"""The per-principal rate guard: distinct recordings per sliding window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from policies import Principal, load_policy
from streams.http.rateguard import RATE_LIMITED, RateGuard

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
ALICE = Principal("alice", "qa-reviewer")


@pytest.mark.clause("purpose.necessary-range")
def test_limit_comes_from_the_policy_per_role() -> None:
    policy = load_policy()
    guard = RateGuard(policy.rate_limit_for)
    vendor = Principal("vera", "qa-vendor", "acme-qa")
    limit = policy.rate_limit_for("qa-vendor")
    assert limit == 30
    for i in range(limit):
        assert guard.admit(vendor, f"rec-{i}", T0 + timedelta(seconds=i)).allowed
    verdict = guard.admit(vendor, "rec-one-too-many", T0 + timedelta(minutes=1))
    assert not verdict.allowed
    assert verdict.reason == RATE_LIMITED
    assert (verdict.used, verdict.limit) == (30, 30)
    # The reviewer's own (higher) limit is untouched by the vendor's usage.
    assert guard.admit(ALICE, "rec-0", T0).allowed


def test_same_recording_again_does_not_count() -> None:
    guard = RateGuard(lambda role: 1)
    for minute in range(50):
        assert guard.admit(ALICE, "rec-1", T0 + timedelta(minutes=minute)).allowed
    assert guard.used(ALICE, T0 + timedelta(minutes=50)) == 1
    assert not guard.admit(ALICE, "rec-2", T0 + timedelta(minutes=50)).allowed


def test_window_slides_and_retry_after_says_when() -> None:
    guard = RateGuard(lambda role: 2)
    assert guard.admit(ALICE, "a", T0).allowed
    assert guard.admit(ALICE, "b", T0 + timedelta(minutes=30)).allowed
    denied = guard.admit(ALICE, "c", T0 + timedelta(minutes=40))
    assert not denied.allowed
    assert 20 * 60 <= denied.retry_after <= 20 * 60 + 1
    assert not guard.admit(ALICE, "c", T0 + timedelta(minutes=59, seconds=59)).allowed
    assert guard.admit(ALICE, "c", T0 + timedelta(hours=1)).allowed  # "a" left the window
    assert not guard.admit(ALICE, "d", T0 + timedelta(hours=1, minutes=1)).allowed


def test_principals_are_separate_and_unlimited_roles_pass() -> None:
    guard = RateGuard(lambda role: None if role == "supervisor" else 1)
    assert guard.admit(ALICE, "a", T0).allowed
    assert guard.admit(Principal("bob", "qa-reviewer"), "b", T0).allowed
    assert guard.admit(Principal("alice", "qa-vendor", "acme-qa"), "b", T0).allowed
    boss = Principal("sam", "supervisor")
    assert all(guard.admit(boss, f"r{i}", T0).allowed for i in range(500))


def test_zero_limit_denies_and_bad_window_is_refused() -> None:
    assert not RateGuard(lambda role: 0).admit(ALICE, "a", T0).allowed
    with pytest.raises(ValueError, match="positive"):
        RateGuard(lambda role: 1, window=timedelta(0))
