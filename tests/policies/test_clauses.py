"""Every clause of the privacy policy maps to a mechanism (or is organizational),
is quoted verbatim, and the tests it names exist."""

from __future__ import annotations

import ast
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
    # every clause with a mechanism has tests (PCI silencing's are storage and e2e
    # tests; the statistics clause lists the retention/erasure tests that prove stats
    # survive)
    assert {c.id for c in non_organizational} - {c.id for c in enforced} == set()


def _clause_markers() -> dict[str, set[str]]:
    """``tests/...::test_name`` -> the clause ids of its ``@pytest.mark.clause(...)``
    (read from the source, so the whole suite need not be collected)."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        relative = path.relative_to(REPO).as_posix()
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
            ):
                assert "clause" not in ast.unparse(node.value), (
                    f"{relative}: mark tests one by one with @pytest.mark.clause, not pytestmark"
                )
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for decorator in node.decorator_list:
                if (
                    isinstance(decorator, ast.Call)
                    and ast.unparse(decorator.func) == "pytest.mark.clause"
                ):
                    ids = {ast.literal_eval(arg) for arg in decorator.args}
                    assert ids, f"{relative}::{node.name}: clause() needs an id"
                    found.setdefault(f"{relative}::{node.name}", set()).update(ids)
    return found


def test_the_clause_map_and_the_test_markers_agree(policy: Policy) -> None:
    markers = _clause_markers()
    mapped: dict[str, set[str]] = {}
    for clause in policy.clauses.values():
        for test_id in clause.tests:
            mapped.setdefault(test_id, set()).add(clause.id)
    unknown = {
        t: ids - set(policy.clauses) for t, ids in markers.items() if ids - set(policy.clauses)
    }
    assert unknown == {}, "markers naming clauses the policy does not have"
    # every test the map lists carries the marker, and every marker is in the map
    this = "tests/policies/test_clauses.py::test_the_clause_map_and_the_test_markers_agree"
    markers.pop(this, None)
    assert {t: sorted(ids) for t, ids in mapped.items()} == {
        t: sorted(ids) for t, ids in markers.items()
    }
    # no clause with a mechanism is left without a test; one stripped of them is shown so
    untested = [e.clause_id for e in clause_report(policy) if e.status == "untested"]
    assert untested == []
    stripped = dict(policy.clauses)
    stripped["storage-period"] = dataclasses.replace(stripped["storage-period"], tests=())
    report = clause_report(dataclasses.replace(policy, clauses=stripped))
    assert [e.clause_id for e in report if e.status == "untested"] == ["storage-period"]
    # the two clauses that only pretended: management.safety is shown by envelope,
    # audit, rate-guard and tenant tests, not only role tests; purpose.necessary-range
    # by a rate guard that trips, not by a config entry existing
    safety = set(policy.clauses["management.safety"].tests)
    for needed in ("test_envelope.py", "test_audit.py", "test_qa_audio.py", "tenant"):
        assert any(needed in t for t in safety), needed
    necessary = policy.clauses["purpose.necessary-range"].tests
    assert not any("test_rate_limits_exist" in t for t in necessary)
    assert any("rate_guard_trips" in t for t in necessary)


def test_clause_report_text(policy: Policy) -> None:
    text = format_clause_report(clause_report(policy))
    assert "[organizational] contact - Contact information" in text
    assert "[enforced] storage-period.law" in text
    assert "[enforced] collection.no-harmful" in text
    assert "    tests (3):\n      tests/storage/test_audio.py::" in text
    assert "rules: retention:legal-hold" in text
    assert "rules: access:legal-basis, access:reference, purpose:legal-disclosure" in text
    assert text.splitlines()[-1].startswith(f"{len(policy.clauses)} clauses: ")
    assert "UNCOVERED" not in text
