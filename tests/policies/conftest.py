"""Fixtures for the pure policy tests: the shipped policy, a fixed clock, recording facts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from policies import Policy, RecordingFacts, default_policy_path, load_policy, parse_policy

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def policy() -> Policy:
    return load_policy()


@pytest.fixture
def now() -> datetime:
    return NOW


def make_facts(**overrides: Any) -> RecordingFacts:
    """A stored, unrestricted recording tagged with both operational purposes."""
    values: dict[str, Any] = {
        "recording_id": "rec-1",
        "tenant": "acme",
        "purposes": ("customer-response", "quality-improvement"),
        "state": "stored",
        "restricted": False,
        "held": False,
        "started_at": NOW - timedelta(days=3, minutes=5),
        "ended_at": NOW - timedelta(days=3),
        "retain_until": NOW + timedelta(days=87),
    }
    values.update(overrides)
    return RecordingFacts(**values)


@pytest.fixture
def facts() -> Callable[..., RecordingFacts]:
    return make_facts


@pytest.fixture
def policy_variant() -> Callable[[Callable[[dict[str, Any]], None]], Policy]:
    """Build a policy from the shipped file after ``mutate`` edits its parsed data."""

    def build(mutate: Callable[[dict[str, Any]], None]) -> Policy:
        data = yaml.safe_load(default_policy_path().read_text(encoding="utf-8"))
        mutate(data)
        return parse_policy(yaml.safe_dump(data, sort_keys=False), "variant.yaml")

    return build
