"""Every clause of the privacy policy maps to a mechanism (or is organizational),
is quoted verbatim, and the tests it names exist."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from policies import (
    BUILTIN_RULES,
    Policy,
    clause_report,
    default_policy_path,
    format_clause_report,
    uncovered_clauses,
)

REPO = Path(__file__).resolve().parents[2]
PRIVACY_POLICY = default_policy_path().with_name("privacy-policy.txt")


def normalized(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def privacy_paragraphs() -> list[str]:
    """Each bullet and numbered item of the privacy policy (headings left out)."""
    paragraphs = []
    for line in PRIVACY_POLICY.read_text(encoding="utf-8").splitlines():
        item = line.strip().lstrip("•").strip()
        if line.strip().startswith("•") or re.match(r"\(\d\)", item):
            paragraphs.append(normalized(item))
    return paragraphs


def test_every_clause_is_covered(policy: Policy) -> None:
    report = clause_report(policy)
    assert [entry.clause_id for entry in report] == list(policy.clauses)
    assert uncovered_clauses(policy) == []
    assert all(entry.covered for entry in report)
    assert report[0].title == report[0].heading == policy.clauses[report[0].clause_id].heading
    # the check is real: a clause stripped of its mechanism is reported
    stripped = dict(policy.clauses)
    stripped["storage-period"] = dataclasses.replace(stripped["storage-period"], mechanism="")
    assert uncovered_clauses(dataclasses.replace(policy, clauses=stripped)) == ["storage-period"]


def test_clause_excerpts_are_quoted_verbatim_from_the_privacy_policy(policy: Policy) -> None:
    text = normalized(PRIVACY_POLICY.read_text(encoding="utf-8"))
    misquoted = [c.id for c in policy.clauses.values() if normalized(c.excerpt) not in text]
    assert misquoted == []


def test_every_paragraph_of_the_privacy_policy_has_a_clause(policy: Policy) -> None:
    paragraphs = privacy_paragraphs()
    assert len(paragraphs) >= 15  # the parser found the bullets and numbered items
    excerpts = [normalized(c.excerpt) for c in policy.clauses.values()]
    orphans = [p for p in paragraphs if not any(e in p for e in excerpts)]
    assert orphans == []


def test_listed_tests_exist_in_the_suite(policy: Policy) -> None:
    missing = []
    for clause in policy.clauses.values():
        for test_id in clause.tests:
            file_part, _, name = test_id.partition("::")
            path = REPO / file_part
            if not path.is_file() or f"def {name}(" not in path.read_text(encoding="utf-8"):
                missing.append(f"{clause.id}: {test_id}")
    assert missing == []


def test_every_rule_is_tied_to_a_clause(policy: Policy) -> None:
    claimed = {rule for clause in policy.clauses.values() for rule in clause.rules}
    assert set(BUILTIN_RULES) <= claimed
    for rule, clause_id in policy.policy_rules().items():
        assert clause_id in policy.clauses, rule
        assert clause_id in policy.clauses_for_rule(rule)
    non_organizational = [c for c in policy.clauses.values() if not c.organizational]
    enforced = [c for c in non_organizational if policy.rules_for_clause(c.id) or c.tests]
    # only the clauses enforced outside policies (PCI silencing) lack both; the
    # statistics clause lists the retention/erasure tests that prove stats survive
    assert {c.id for c in non_organizational} - {c.id for c in enforced} == {
        "collection.no-harmful",
    }


def test_clause_report_text(policy: Policy) -> None:
    text = format_clause_report(clause_report(policy))
    assert "[organizational] contact - Contact information" in text
    assert "[enforced] storage-period.law" in text
    assert "rules: retention:legal-hold" in text
    assert "rules: access:legal-basis, access:reference, purpose:legal-disclosure" in text
    assert text.splitlines()[-1].startswith(f"{len(policy.clauses)} clauses: ")
    assert "UNCOVERED" not in text
