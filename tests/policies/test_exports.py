"""The public surface of ``policies`` is pinned, and the package stays pure."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import policies

PACKAGE = Path(policies.__file__).parent


def test_public_surface_is_pinned() -> None:
    assert sorted(policies.__all__) == sorted(
        [
            "load_policy", "check_policy", "parse_policy", "default_policy_path", "Problem",
            "Policy", "Purpose", "Role", "RetentionClass", "RetentionRule", "LegalBasis",
            "Organisation", "RateLimit", "Clause", "Principal", "RecordingFacts",
            "RecordingStatus", "AccessRequest", "AccessDecision", "Action", "Capability",
            "Anchor", "Decision", "Reason", "BUILTIN_RULES", "LEGAL_BASES",
            "decide_access", "decide_capability", "could_use", "decide_ingest",
            "resolve_purposes", "IngestDecision", "IngestReason", "CONSENT_VALUES",
            "retention_class_for", "retain_until", "deletion_decision", "erasure_decision",
            "RetentionDecision", "RetentionReason", "expiry_cut", "is_overdue", "ExpiryCut",
            "retention_rules_digest", "RULE_VERSION", "clause_report", "uncovered_clauses",
            "format_clause_report", "ClauseCoverage", "PolicyError", "PolicyFileError",
            "PolicyInputError", "AssignmentFacts", "AssignmentStatus", "EvaluationForm",
            "FormSection", "FormQuestion", "Scale", "SamplingPlan", "SamplePer", "SamplePeriod",
            "EvaluationScore", "SampleCandidate", "SampleExclusion", "score_evaluation",
            "period_of", "period_bounds", "previous_period", "sampling_exclusion",
            "pick_sample", "balanced_reviewers", "ALL_TENANTS", "RefusalReason", "tenant_scope",
            "in_tenant", "PERSONAL_DATA", "justification_problem",
        ]
    )  # fmt: skip
    for name in policies.__all__:
        assert getattr(policies, name) is not None


def test_every_module_declares_all() -> None:
    for module in PACKAGE.glob("*.py"):
        if module.name == "__init__.py":
            continue
        tree = ast.parse(module.read_text(encoding="utf-8"))
        names = {
            target.id
            for node in tree.body
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        assert "__all__" in names, module.name


def test_policies_imports_neither_storage_nor_streams() -> None:
    for module in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not roots & {"storage", "streams", "os", "socket", "boto3"}, module.name
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, policies; print(sorted(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "'storage" not in loaded and "'streams" not in loaded
