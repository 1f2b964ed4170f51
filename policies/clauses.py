"""The map from privacy-policy clauses to what enforces them.

:func:`clause_report` lists every clause of the policy file with its mechanism,
rules (explicit ones first, then the policy rules naming the clause) and the
tests that exercise its wording, for ``callvault policy clauses``. A clause is
*covered* when it is organizational or has a mechanism; :func:`uncovered_clauses`
lists the others (the loader already refuses them, so for a loaded policy it is
empty). A clause is *enforced* only when its mechanism has tests: rules alone do
not count, and each listed test carries the pytest marker ``clause("<id>")``
(``tests/policies/test_clauses.py`` checks that the map and the markers agree).
:func:`format_clause_report` renders the report as plain text.
"""

from __future__ import annotations

from dataclasses import dataclass

from policies.model import Policy

__all__ = ["ClauseCoverage", "clause_report", "uncovered_clauses", "format_clause_report"]


@dataclass(frozen=True)
class ClauseCoverage:
    clause_id: str
    heading: str
    excerpt: str
    organizational: bool
    mechanism: str
    rules: tuple[str, ...]
    tests: tuple[str, ...]

    @property
    def title(self) -> str:
        """Same as ``heading`` (the spelling ``callvault policy clauses`` uses)."""
        return self.heading

    @property
    def covered(self) -> bool:
        return self.organizational or bool(self.mechanism.strip())

    @property
    def status(self) -> str:
        """``organizational``, ``enforced`` (a mechanism with tests), ``untested`` (a
        mechanism, maybe rules, but no test exercising the wording) or ``UNCOVERED``."""
        if self.organizational:
            return "organizational"
        if not self.covered:
            return "UNCOVERED"
        return "enforced" if self.tests else "untested"


def clause_report(policy: Policy) -> list[ClauseCoverage]:
    """One entry per clause, in policy-file order."""
    return [
        ClauseCoverage(
            clause_id=clause.id,
            heading=clause.heading,
            excerpt=clause.excerpt,
            organizational=clause.organizational,
            mechanism=clause.mechanism,
            rules=policy.rules_for_clause(clause.id),
            tests=clause.tests,
        )
        for clause in policy.clauses.values()
    ]


def uncovered_clauses(policy: Policy) -> list[str]:
    """Ids of clauses that are neither organizational nor backed by a mechanism."""
    return [entry.clause_id for entry in clause_report(policy) if not entry.covered]


def format_clause_report(report: list[ClauseCoverage]) -> str:
    """Plain text, one block per clause, ending with a one-line summary."""
    lines: list[str] = []
    for entry in report:
        lines.append(f"[{entry.status}] {entry.clause_id} - {entry.heading}")
        lines.append(f'    "{entry.excerpt}"')
        if entry.mechanism:
            lines.append(f"    mechanism: {entry.mechanism}")
        if entry.rules:
            lines.append(f"    rules: {', '.join(entry.rules)}")
        if not entry.organizational:
            lines.append(f"    tests ({len(entry.tests)}):" if entry.tests else "    tests: none")
        for test in entry.tests:
            lines.append(f"      {test}")
    counts: dict[str, int] = {}
    for entry in report:
        counts[entry.status] = counts.get(entry.status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    lines.append(f"{len(report)} clauses: {summary}")
    return "\n".join(lines)
