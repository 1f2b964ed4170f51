"""The policy model: what the policy file says, and the inputs and outputs of decisions.

Everything here is a frozen value. A :class:`Policy` is built only by
:func:`policies.loader.load_policy` (which validates it); decisions read it and
never change it. All datetimes are timezone-aware; decision functions raise
:class:`~policies.errors.PolicyInputError` when given a naive one.

Rule ids: every rule a decision can cite has a stable id that a clause of the
privacy policy claims (see ``clauses`` in ``data/policy.yaml``):

- rules written in the policy file: ``purpose:<id>``, ``role:<id>``,
  ``retention-class:<id>``, ``retention-rule:<purpose>``, ``legal-basis:<id>``,
  ``organisation:<id>``, ``rate-limit:<role>``;
- rules built into the code (the checks in ``access``, ``retention``, ``ingest``):
  :data:`BUILTIN_RULES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from policies.errors import PolicyInputError
from policies.forms import EvaluationForm, SamplingPlan

__all__ = [
    "Action",
    "Capability",
    "Anchor",
    "RecordingStatus",
    "Decision",
    "Reason",
    "BUILTIN_RULES",
    "DEFAULT_REFERENCE_PATTERN",
    "LEGAL_BASES",
    "Purpose",
    "Role",
    "RetentionClass",
    "RetentionRule",
    "LegalBasis",
    "Organisation",
    "RateLimit",
    "Clause",
    "Policy",
    "Principal",
    "ALL_TENANTS",
    "RefusalReason",
    "RecordingFacts",
    "AccessRequest",
    "AccessDecision",
    "AssignmentFacts",
    "AssignmentStatus",
    "require_aware",
]


class Action(StrEnum):
    """What a caller wants to do with a recording."""

    LIST = "list"
    METADATA = "metadata"
    PLAY = "play"
    DOWNLOAD = "download"

    @property
    def is_audio(self) -> bool:
        return self in (Action.PLAY, Action.DOWNLOAD)


class Capability(StrEnum):
    """Non-audio things a role may do (the closed list the policy file may grant)."""

    INGEST = "ingest"
    LIST_RECORDINGS = "list-recordings"
    READ_AUDIT = "read-audit"
    MANAGE_HOLDS = "manage-holds"
    PRIVACY_REQUESTS = "privacy-requests"
    VIEW_METRICS = "view-metrics"
    EVALUATE = "evaluate"  # score the evaluation assignments given to oneself
    MANAGE_EVALUATIONS = "manage-evaluations"  # assign, run sampling plans, read scores


class Anchor(StrEnum):
    """What a retention period counts from."""

    CALL_END = "call-end"
    CONTRACT_TERMINATION = "contract-termination"


class RecordingStatus(StrEnum):
    """Life-cycle states a recording can be in (same spelling as the catalog's)."""

    STORED = "stored"
    EXPIRED = "expired"
    ERASED = "erased"


class Decision(StrEnum):
    ALLOW = "allow"
    DENY = "deny"


class Reason(StrEnum):
    """Stable, machine-readable reason codes (carried by audit records and HTTP errors)."""

    GRANTED = "granted"
    UNKNOWN_ROLE = "unknown-role"
    NO_ORG = "no-org"
    UNKNOWN_ORG = "unknown-org"
    CONTRACT_NOT_LIVE = "contract-not-live"
    CAPABILITY_NOT_GRANTED = "capability-not-granted"
    UNKNOWN_CAPABILITY = "unknown-capability"
    NO_RECORDING = "no-recording"
    NO_PURPOSE = "no-purpose"
    UNKNOWN_PURPOSE = "unknown-purpose"
    ROLE_NOT_ALLOWED_PURPOSE = "role-not-allowed-purpose"
    PURPOSE_NOT_TAGGED = "purpose-not-tagged"
    RECORDING_NOT_STORED = "recording-not-stored"
    RECORDING_RESTRICTED = "recording-restricted"
    JUSTIFICATION_REQUIRED = "justification-required"
    LEGAL_BASIS_REQUIRED = "legal-basis-required"
    LEGAL_BASIS_UNKNOWN = "legal-basis-unknown"
    REFERENCE_REQUIRED = "reference-required"
    ASSIGNMENT_REQUIRED = "assignment-required"
    ASSIGNMENT_UNKNOWN = "assignment-unknown"
    ASSIGNMENT_NOT_YOURS = "assignment-not-yours"
    ASSIGNMENT_OTHER_RECORDING = "assignment-other-recording"
    ASSIGNMENT_PURPOSE = "assignment-purpose"
    ASSIGNMENT_CLOSED = "assignment-closed"
    TENANT_MISMATCH = "tenant-mismatch"
    TENANT_SPAN_NOT_ALLOWED = "tenant-span-not-allowed"


#: Rules implemented in code, by id, with what they check. The policy file's
#: ``clauses`` must claim each of them (the loader reports one that is unclaimed).
BUILTIN_RULES: Mapping[str, str] = {
    "access:default-deny": "anything not explicitly granted is denied",
    "access:unknown-role": "a principal whose role the policy does not define gets nothing",
    "access:capability": "non-audio actions need the capability on the role",
    "access:entrusted-contract": (
        "an entrusted role acts only for a listed organisation whose contract is live "
        "(start <= now < end)"
    ),
    "access:purpose-declared": "audio is released only for a declared purpose",
    "access:unknown-purpose": "a purpose the policy does not define is never granted",
    "access:role-purpose": "the role must be allowed the declared purpose",
    "access:tag-bound": "an operational purpose must be one the recording was tagged with",
    "access:stored-only": "expired or erased recordings are never served",
    "access:restriction": "a recording restricted by the customer is not used",
    "access:justification": "purposes that require it need a justification",
    "access:legal-basis": "third-party disclosure needs a legal basis from the closed list",
    "access:reference": "disclosures need a reference (case / privacy request id)",
    "access:tenant": (
        "a principal acts only within its tenant; only a role the policy lets span "
        "tenants may hold a token for every tenant"
    ),
    "access:assignment": (
        "an open evaluation assignment lets its reviewer use its recording for its purpose "
        "(the assignment id is the justification); a role requiring assignments gets audio "
        "only through one"
    ),
    "ingest:consent": "a recording whose consent was declined is not stored",
    "ingest:purposes": "recordings are tagged only with known, taggable purposes",
    "retention:longest-class": "a recording with several purposes gets the longest class",
    "retention:due": "a recording is deleted at exactly its retain-until",
    "retention:contract-termination": (
        "on contract termination retain-until becomes at most termination + period"
    ),
    "retention:legal-hold": "a legal hold always prevents deletion and erasure",
    "retention:erasure": "a customer's deletion request ends the recording",
}

#: The closed list of legal bases for third-party provision (privacy policy,
#: "Provision of personal information to a third party", cases (1)-(3)).
LEGAL_BASES: tuple[str, ...] = ("consent", "protect-life-body-property", "legal-requirement")


def require_aware(value: datetime, name: str) -> datetime:
    """Return ``value`` if it is timezone-aware.

    Raises:
        PolicyInputError: ``value`` is not a datetime or is naive.
    """
    if not isinstance(value, datetime):
        raise PolicyInputError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise PolicyInputError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    return value


# --------------------------------------------------------------------------- policy data


@dataclass(frozen=True)
class Purpose:
    """A purpose of use audio may be released for.

    ``tag_bound`` purposes are operational: a recording is tagged with them at
    ingest and audio is released for them only if the recording carries the tag.
    Purposes that are not tag-bound are disclosures (legal, to the customer):
    they apply to any stored recording but need the extra evidence below.
    """

    id: str
    description: str
    clause: str
    tag_bound: bool = True
    requires_justification: bool = False
    requires_legal_basis: bool = False
    requires_reference: bool = False
    overrides_restriction: bool = False

    @property
    def rule(self) -> str:
        return f"purpose:{self.id}"


@dataclass(frozen=True)
class Role:
    """A role: the purposes it may use audio for and its non-audio capabilities.

    An ``entrusted`` role is an external company's (privacy policy, "Entrustment"):
    its principals must name an organisation with a live contract.
    """

    id: str
    description: str
    clause: str
    purposes: tuple[str, ...] = ()
    capabilities: tuple[Capability, ...] = ()
    entrusted: bool = False
    #: Audio (and metadata) only through an open evaluation assignment to the principal.
    requires_assignment: bool = False
    #: Its principals may hold a token for every tenant (``ALL_TENANTS``).
    spans_tenants: bool = False

    @property
    def rule(self) -> str:
        return f"role:{self.id}"


@dataclass(frozen=True)
class RetentionClass:
    """How long a recording is kept.

    ``call-end`` classes: ``days`` after the call ended. The ``contract-termination``
    class: ``days`` after the customer's contract terminated, and at most
    ``max_days`` after the call ended while the contract is live.
    """

    id: str
    description: str
    clause: str
    anchor: Anchor
    days: int
    max_days: int | None = None

    @property
    def rule(self) -> str:
        return f"retention-class:{self.id}"

    @property
    def horizon_days(self) -> int:
        """Longest possible retention after the call ended (used to rank classes)."""
        if self.anchor is Anchor.CONTRACT_TERMINATION and self.max_days:
            return self.max_days
        return self.days


@dataclass(frozen=True)
class RetentionRule:
    """Recordings tagged with ``purpose`` are kept under ``retention_class``."""

    purpose: str
    retention_class: str
    clause: str

    @property
    def rule(self) -> str:
        return f"retention-rule:{self.purpose}"


@dataclass(frozen=True)
class LegalBasis:
    id: str
    description: str
    clause: str

    @property
    def rule(self) -> str:
        return f"legal-basis:{self.id}"


@dataclass(frozen=True)
class Organisation:
    """An entrusted external company and its confidentiality contract.

    The contract is live for ``contract_start <= now < contract_end``.
    """

    id: str
    name: str
    clause: str
    contract_start: datetime
    contract_end: datetime
    confidentiality_contract: str

    @property
    def rule(self) -> str:
        return f"organisation:{self.id}"

    def is_live(self, now: datetime) -> bool:
        """True when the contract covers ``now`` (start inclusive, end exclusive).

        Raises:
            PolicyInputError: ``now`` is naive.
        """
        require_aware(now, "now")
        return self.contract_start <= now < self.contract_end


@dataclass(frozen=True)
class RateLimit:
    role: str
    recordings_per_hour: int
    clause: str

    @property
    def rule(self) -> str:
        return f"rate-limit:{self.role}"


@dataclass(frozen=True)
class Clause:
    """One clause of the privacy policy and how it is honoured.

    ``rules`` are the rule ids the clause lists explicitly (built-in rules and
    any policy rule); policy rules that name this clause are added by
    :meth:`Policy.rules_for_clause`. ``tests`` are ``path::test_name`` ids.
    """

    id: str
    heading: str
    excerpt: str
    mechanism: str
    organizational: bool = False
    rules: tuple[str, ...] = ()
    tests: tuple[str, ...] = ()


_PolicyItem = (
    Purpose
    | Role
    | RetentionClass
    | LegalBasis
    | Organisation
    | RateLimit
    | EvaluationForm
    | SamplingPlan
)


#: Ticket, case, request and evaluation ids: the justification references the policy
#: accepts when its ``justifications.reference_pattern`` names none.
DEFAULT_REFERENCE_PATTERN = (
    r"(?:QA|CASE|TKT|TICKET|INC|EVAL|REQ|PR)-[A-Za-z0-9]{1,12}(?:-[A-Za-z0-9]{1,12}){0,3}"
    r"|asg-[0-9a-f]{12}"
)


@dataclass(frozen=True, eq=False)
class Policy:
    """A validated policy. Mappings are keyed by id, in file order; treat them as read-only."""

    source: str
    version: int
    purposes: Mapping[str, Purpose]
    default_purposes: tuple[str, ...]
    roles: Mapping[str, Role]
    retention_classes: Mapping[str, RetentionClass]
    retention_rules: tuple[RetentionRule, ...]
    legal_bases: Mapping[str, LegalBasis]
    organisations: Mapping[str, Organisation]
    rate_limits: Mapping[str, RateLimit]
    clauses: Mapping[str, Clause]
    #: Days within which a customer's privacy request must be answered
    #: (``privacy_requests.response_days``); an open request past it is overdue.
    request_response_days: int = 30
    #: Days per request kind (``privacy_requests.sla_days``), overriding ``response_days``.
    request_sla_days: Mapping[str, int] = field(default_factory=dict)
    #: The tenant of a principal whose token names none (tokens issued before tenants,
    #: an identity provider that sends no tenant claim): ``tenancy.default_tenant``.
    default_tenant: str = "default"
    #: Quality evaluation forms and sampling plans (``evaluation_forms``, ``sampling_plans``).
    evaluation_forms: Mapping[str, EvaluationForm] = field(default_factory=dict)
    sampling_plans: Mapping[str, SamplingPlan] = field(default_factory=dict)
    #: The ``sso:`` section as written (keys checked by the loader, role values mapped to
    #: policy roles); ``streams.http.oidc.SsoConfig.from_mapping`` makes the verifier's
    #: config of it. None: no single sign-on, local tokens only.
    sso: Mapping[str, Any] | None = None
    #: A justification matching this (``justifications.reference_pattern``, full match)
    #: is a reference and accepted as is; other text is checked for personal data
    #: (:mod:`policies.evidence`).
    justification_reference_pattern: str = DEFAULT_REFERENCE_PATTERN
    #: Days a disclosure's export may be downloaded (``exports.expiry_days``).
    export_expiry_days: int = 7

    def request_days(self, kind: str) -> int:
        """Days within which a request of ``kind`` must be answered (its SLA)."""
        return self.request_sla_days.get(kind, self.request_response_days)

    def rate_limit_for(self, role: str) -> int | None:
        """Recordings per hour a principal of ``role`` may fetch; ``None`` = no audio limit set."""
        limit = self.rate_limits.get(role)
        return limit.recordings_per_hour if limit else None

    def retention_class_of_purpose(self, purpose: str) -> RetentionClass | None:
        for rule in self.retention_rules:
            if rule.purpose == purpose:
                return self.retention_classes[rule.retention_class]
        return None

    @property
    def termination_class(self) -> RetentionClass:
        """The class whose ``days`` apply after a contract terminates (exactly one, validated)."""
        for retention_class in self.retention_classes.values():
            if retention_class.anchor is Anchor.CONTRACT_TERMINATION:
                return retention_class
        raise AssertionError("validated policy has a contract-termination class")

    def policy_rules(self) -> dict[str, str]:
        """Every rule written in the policy file, mapped to the clause id it names."""
        rules: dict[str, str] = {}
        groups: tuple[Mapping[str, _PolicyItem], ...] = (
            self.purposes,
            self.roles,
            self.retention_classes,
            self.legal_bases,
            self.organisations,
            self.rate_limits,
            self.evaluation_forms,
            self.sampling_plans,
        )
        for group in groups:
            for item in group.values():
                rules[item.rule] = item.clause
        for retention_rule in self.retention_rules:
            rules[retention_rule.rule] = retention_rule.clause
        return rules

    def rules_for_clause(self, clause_id: str) -> tuple[str, ...]:
        """The clause's explicit rules, then the policy rules naming it (no duplicates)."""
        clause = self.clauses[clause_id]
        found = list(clause.rules)
        for rule, named in self.policy_rules().items():
            if named == clause_id and rule not in found:
                found.append(rule)
        return tuple(found)

    def clauses_for_rule(self, rule: str) -> tuple[str, ...]:
        """Ids of the clauses a rule implements (for audit records)."""
        return tuple(cid for cid in self.clauses if rule in self.rules_for_clause(cid))


# --------------------------------------------------------------------------- decision inputs


class RefusalReason(StrEnum):
    """Why the privacy office may refuse a customer's request: the privacy policy's
    "unless there is a reasonable basis to refuse", as a closed list (a note says more)."""

    IDENTITY_UNVERIFIED = "identity-unverified"
    LEGAL_HOLD = "legal-hold"
    MANIFESTLY_UNFOUNDED = "manifestly-unfounded"
    LEGAL_OBLIGATION = "legal-obligation"


#: A token's tenant claim for every tenant (only roles with ``spans_tenants``).
ALL_TENANTS = "*"


@dataclass(frozen=True)
class Principal:
    """Who is asking. ``org`` is the entrusted organisation id, for entrusted roles;
    ``tenant`` the tenant the token names: a tenant id, :data:`ALL_TENANTS` (``"*"``,
    only for a role the policy lets span tenants) or None (not stated: the policy's
    ``default_tenant``). :func:`policies.tenant_scope` says which tenant it acts in."""

    user: str
    role: str
    org: str | None = None
    tenant: str | None = None


@dataclass(frozen=True)
class RecordingFacts:
    """What a decision needs to know about one recording (no audio, no customer identifier).

    Raises:
        PolicyInputError: on construction, for an unknown ``state`` or naive datetimes.
    """

    recording_id: str
    tenant: str
    purposes: tuple[str, ...]
    state: str
    restricted: bool
    held: bool
    retain_until: datetime
    started_at: datetime
    ended_at: datetime

    def __post_init__(self) -> None:
        if self.state not in set(RecordingStatus):
            raise PolicyInputError(
                f"recording state must be one of {', '.join(RecordingStatus)}, got {self.state!r}"
            )
        require_aware(self.retain_until, "retain_until")
        require_aware(self.started_at, "started_at")
        require_aware(self.ended_at, "ended_at")
        object.__setattr__(self, "purposes", tuple(self.purposes))


class AssignmentStatus(StrEnum):
    OPEN = "open"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class AssignmentFacts:
    """What an access decision needs to know of an evaluation assignment.

    Raises:
        PolicyInputError: on construction, for an unknown ``status``.
    """

    assignment_id: str
    reviewer: str
    recording_id: str
    purpose: str
    status: str

    def __post_init__(self) -> None:
        if self.status not in set(AssignmentStatus):
            raise PolicyInputError(
                f"assignment status must be one of {', '.join(AssignmentStatus)}, "
                f"got {self.status!r}"
            )


@dataclass(frozen=True)
class AccessRequest:
    """What is asked for. ``purpose`` is required for audio; the rest depend on the purpose.

    Raises:
        PolicyInputError: on construction, for an unknown ``action``.
    """

    action: str
    purpose: str | None = None
    justification: str | None = None
    legal_basis: str | None = None
    reference: str | None = None
    #: The evaluation assignment the request is made under (its id is the justification).
    assignment: AssignmentFacts | None = None

    def __post_init__(self) -> None:
        if self.action not in set(Action):
            raise PolicyInputError(
                f"action must be one of {', '.join(Action)}, got {self.action!r}"
            )


@dataclass(frozen=True)
class AccessDecision:
    """The outcome, its reason code and the id of the rule that decided it."""

    decision: Decision
    reason: Reason
    rule: str | None = None

    @property
    def allowed(self) -> bool:
        return self.decision is Decision.ALLOW
