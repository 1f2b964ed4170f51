"""What is allowed: the policy data and pure decisions over it.

``policies`` imports neither ``storage`` nor ``streams``; apart from the loader
reading the policy file, nothing here does I/O or reads the clock (``now`` is
always passed in). See policies/README.md for the decision table.

    from policies import load_policy, decide_access, Principal, AccessRequest
    policy = load_policy()                      # packaged default, validated
    decision = decide_access(principal, AccessRequest("play", "quality-improvement",
                             justification="QA-123"), facts, policy, now)
    decision.decision, decision.reason, decision.rule
"""

from __future__ import annotations

from policies.access import could_use, decide_access, decide_capability, in_tenant, tenant_scope
from policies.clauses import ClauseCoverage, clause_report, format_clause_report, uncovered_clauses
from policies.errors import PolicyError, PolicyFileError, PolicyInputError
from policies.evaluations import (
    EvaluationScore,
    SampleCandidate,
    SampleExclusion,
    balanced_reviewers,
    period_bounds,
    period_of,
    pick_sample,
    previous_period,
    sampling_exclusion,
    score_evaluation,
)
from policies.evidence import PERSONAL_DATA, justification_problem
from policies.forms import (
    EvaluationForm,
    FormQuestion,
    FormSection,
    SamplePer,
    SamplePeriod,
    SamplingPlan,
    Scale,
)
from policies.ingest import (
    CONSENT_VALUES,
    IngestDecision,
    IngestReason,
    decide_ingest,
    resolve_purposes,
)
from policies.loader import Problem, check_policy, default_policy_path, load_policy, parse_policy
from policies.model import (
    ALL_TENANTS,
    BUILTIN_RULES,
    LEGAL_BASES,
    AccessDecision,
    AccessRequest,
    Action,
    Anchor,
    AssignmentFacts,
    AssignmentStatus,
    Capability,
    Clause,
    Decision,
    LegalBasis,
    Organisation,
    Policy,
    Principal,
    Purpose,
    RateLimit,
    Reason,
    RecordingFacts,
    RecordingStatus,
    RefusalReason,
    RetentionClass,
    RetentionRule,
    Role,
)
from policies.retention import (
    RULE_VERSION,
    ExpiryCut,
    RetentionDecision,
    RetentionReason,
    deletion_decision,
    erasure_decision,
    expiry_cut,
    is_overdue,
    retain_until,
    retention_class_for,
    retention_rules_digest,
)

__all__ = [
    # loading
    "load_policy",
    "check_policy",
    "parse_policy",
    "default_policy_path",
    "Problem",
    # model
    "Policy",
    "Purpose",
    "Role",
    "RetentionClass",
    "RetentionRule",
    "LegalBasis",
    "Organisation",
    "RateLimit",
    "Clause",
    "Principal",
    "ALL_TENANTS",
    "RefusalReason",
    "RecordingFacts",
    "RecordingStatus",
    "AccessRequest",
    "AccessDecision",
    "Action",
    "Capability",
    "Anchor",
    "Decision",
    "Reason",
    "BUILTIN_RULES",
    "LEGAL_BASES",
    "AssignmentFacts",
    "AssignmentStatus",
    # quality evaluations
    "EvaluationForm",
    "FormSection",
    "FormQuestion",
    "Scale",
    "SamplingPlan",
    "SamplePer",
    "SamplePeriod",
    "EvaluationScore",
    "SampleCandidate",
    "SampleExclusion",
    "score_evaluation",
    "period_of",
    "period_bounds",
    "previous_period",
    "sampling_exclusion",
    "pick_sample",
    "balanced_reviewers",
    # decisions
    "decide_access",
    "decide_capability",
    "could_use",
    "tenant_scope",
    "in_tenant",
    "decide_ingest",
    "resolve_purposes",
    "IngestDecision",
    "IngestReason",
    "CONSENT_VALUES",
    "retention_class_for",
    "retain_until",
    "deletion_decision",
    "erasure_decision",
    # justifications
    "PERSONAL_DATA",
    "justification_problem",
    "expiry_cut",
    "is_overdue",
    "retention_rules_digest",
    "ExpiryCut",
    "RULE_VERSION",
    "RetentionDecision",
    "RetentionReason",
    # clauses
    "clause_report",
    "uncovered_clauses",
    "format_clause_report",
    "ClauseCoverage",
    # errors
    "PolicyError",
    "PolicyFileError",
    "PolicyInputError",
]
