"""Justifications (policies.evidence): the policy's reference pattern, free text without
e-mail addresses or digit runs that can be phone or card numbers; the pattern and the
export expiry are validated policy data."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from policies import Policy, PolicyFileError, justification_problem, load_policy

REFUSED = [
    "+14155550100",
    "call back +1 415 555 0100",
    "415-555-0100",
    "card 4111 1111 1111 1111",
    "4111111111111111",
    "reach her at (415) 555.0100",
    "jane@example.com asked",
    "ref 0049 30 1234567",
]
ACCEPTED = ["QA-123", "CASE-2026-0042", "asg-0123456789ab", "re-check of 2026-11-25 10:30",
            "coaching session 3", "ticket 12345"]  # fmt: skip


@pytest.mark.parametrize("text", REFUSED)
def test_personal_data_is_refused(text: str) -> None:
    problem = justification_problem(text, load_policy())
    assert problem is not None and "personal data" in problem
    assert text not in problem


@pytest.mark.parametrize("text", ACCEPTED)
def test_references_and_plain_text_are_accepted(text: str) -> None:
    assert justification_problem(text, load_policy()) is None


def test_the_policy_sets_the_reference_pattern_and_the_export_expiry(
    policy_variant: Callable[[Callable[[dict[str, Any]], None]], Policy],
) -> None:
    def tighten(data: dict[str, Any]) -> None:
        data["justifications"] = {"reference_pattern": r"JIRA-[0-9]{1,6}"}
        data["exports"] = {"expiry_days": 3}

    policy = policy_variant(tighten)
    assert policy.export_expiry_days == 3
    assert justification_problem("JIRA-12", policy) is None
    assert justification_problem("JIRA-4155550100", policy) is not None  # no match: free text
    assert load_policy().export_expiry_days == 7


@pytest.mark.parametrize(
    ("section", "value", "message"),
    [
        ("justifications", {"reference_pattern": "("}, "not a regular expression"),
        ("justifications", {"reference_pattern": ".*"}, "must not match the empty text"),
        ("justifications", {"pattern": "X-1"}, "unknown key"),
        ("exports", {"expiry_days": 0}, "greater than zero"),
    ],
)
def test_bad_sections_are_reported(
    policy_variant: Callable[[Callable[[dict[str, Any]], None]], Policy],
    section: str,
    value: Any,
    message: str,
) -> None:
    def mutate(data: dict[str, Any]) -> None:
        data[section] = value

    with pytest.raises(PolicyFileError, match=message):
        policy_variant(mutate)
