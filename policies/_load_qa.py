"""Validation of the policy file's QA sections (private to :mod:`policies.loader`):
``evaluation_forms``, ``sampling_plans`` and ``sso``.

Each function takes the loader's checker (it reports located problems through it) and
returns what it could build; what is wrong is reported, never raised.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from policies._yaml import child_path
from policies.forms import (
    EvaluationForm,
    FormQuestion,
    FormSection,
    SamplePer,
    SamplePeriod,
    SamplingPlan,
    Scale,
)
from policies.model import Capability, Organisation, Purpose, Role

T = TypeVar("T")


class _Checker(Protocol):
    """What these functions use of the loader's checker (``policies.loader._Checker``)."""

    problems: list[Any]

    def problem(self, path: str, message: str) -> None: ...
    def mapping(self, value: Any, path: str) -> dict[str, Any] | None: ...
    def entry(
        self, value: Any, path: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
    ) -> dict[str, Any] | None: ...
    def get(
        self,
        fields: dict[str, Any],
        key: str,
        path: str,
        check: Callable[[Any, str], T | None],
        default: T | None = None,
    ) -> T | None: ...
    def text(self, value: Any, path: str) -> str | None: ...
    def flag(self, value: Any, path: str) -> bool | None: ...
    def positive(self, value: Any, path: str) -> int | None: ...
    def texts(self, value: Any, path: str) -> list[tuple[str, str]] | None: ...
    def clause_ref(self, fields: dict[str, Any], path: str) -> str: ...


__all__ = ["evaluation_forms", "sampling_plans", "sso_section", "SSO_KEYS"]

#: Keys of the ``sso:`` section (the fields of ``streams.http.oidc.SsoConfig``, which
#: checks their types and values when the worker starts; ``callvault policy check``
#: runs that check too).
SSO_KEYS = (
    "issuer",
    "audience",
    "client_id",
    "scope",
    "algorithms",
    "claims",
    "roles",
    "jwks_uri",
    "token_types",
    "tenant_required",
    "leeway_seconds",
    "jwks_timeout_seconds",
    "jwks_max_age_seconds",
    "jwks_min_refresh_seconds",
    "user_prefix",
)
_MAX_QUESTIONS = 200


def _whole(check: _Checker, value: Any, path: str) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        check.problem(path, f"must be a whole number, got {type(value).__name__} {value!r}")
        return None
    return value


def _scale(check: _Checker, value: Any, path: str) -> Scale | None:
    fields = check.entry(value, path, ("min", "max"), ("labels",))
    if fields is None:
        return None
    low = check.get(fields, "min", path, lambda v, p: _whole(check, v, p))
    high = check.get(fields, "max", path, lambda v, p: _whole(check, v, p))
    labels = [text for text, _ in check.get(fields, "labels", path, check.texts) or []]
    if low is None or high is None:
        return None
    if high <= low or high - low > 100:
        check.problem(path, f"max must be above min by 1..100, got {low}..{high}")
        return None
    if labels and len(labels) != high - low + 1:
        check.problem(
            child_path(path, "labels"),
            f"needs {high - low + 1} labels (one per value {low}..{high})",
        )
        return None
    return Scale(low, high, tuple(labels))


def _questions(
    check: _Checker, value: Any, path: str, seen: dict[str, str]
) -> tuple[FormQuestion, ...]:
    if not isinstance(value, list) or not value:
        check.problem(path, "must be a non-empty list of questions")
        return ()
    found: list[FormQuestion] = []
    for index, raw in enumerate(value):
        p = child_path(path, index)
        fields = check.entry(raw, p, ("id", "text"), ("weight", "critical"))
        if fields is None:
            continue
        qid = check.get(fields, "id", p, check.text)
        text = check.get(fields, "text", p, check.text)
        weight = check.get(fields, "weight", p, check.positive, 1)
        critical = bool(check.get(fields, "critical", p, check.flag, False))
        if qid is not None and qid in seen:
            check.problem(
                child_path(p, "id"), f"question id {qid!r} is used twice (first at {seen[qid]})"
            )
            continue
        if qid and text and weight:
            seen[qid] = p
            found.append(FormQuestion(qid, text, weight, critical))
    return tuple(found)


def evaluation_forms(check: _Checker, value: Any) -> dict[str, EvaluationForm]:
    """The ``evaluation_forms`` section: id -> form."""
    found: dict[str, EvaluationForm] = {}
    for fid, raw in (check.mapping(value, "evaluation_forms") or {}).items():
        p = child_path("evaluation_forms", fid)
        fields = check.entry(raw, p, ("title", "clause", "scale", "sections"), ("pass_mark",))
        if fields is None:
            continue
        scale = (
            _scale(check, fields.get("scale"), child_path(p, "scale"))
            if "scale" in fields
            else None
        )
        pass_mark = check.get(fields, "pass_mark", p, lambda v, q: _percent(check, v, q))
        sections: list[FormSection] = []
        seen_questions: dict[str, str] = {}
        seen_sections: set[str] = set()
        raw_sections = fields.get("sections")
        if "sections" in fields and (not isinstance(raw_sections, list) or not raw_sections):
            check.problem(child_path(p, "sections"), "must be a non-empty list of sections")
            raw_sections = []
        for index, raw_section in enumerate(raw_sections or []):
            sp = child_path(child_path(p, "sections"), index)
            sf = check.entry(raw_section, sp, ("id", "title", "weight", "questions"))
            if sf is None:
                continue
            sid = check.get(sf, "id", sp, check.text)
            if sid is not None and sid in seen_sections:
                check.problem(child_path(sp, "id"), f"section id {sid!r} is used twice")
                continue
            questions = _questions(
                check, sf.get("questions"), child_path(sp, "questions"), seen_questions
            )
            title = check.get(sf, "title", sp, check.text)
            weight = check.get(sf, "weight", sp, check.positive)
            if sid and title and weight and questions:
                seen_sections.add(sid)
                sections.append(FormSection(sid, title, weight, questions))
        if len(seen_questions) > _MAX_QUESTIONS:
            check.problem(p, f"at most {_MAX_QUESTIONS} questions per form")
        title = check.get(fields, "title", p, check.text)
        if title and scale and sections:
            found[fid] = EvaluationForm(
                id=fid,
                title=title,
                clause=check.clause_ref(fields, p),
                scale=scale,
                sections=tuple(sections),
                pass_mark=pass_mark,
            )
    return found


def _percent(check: _Checker, value: Any, path: str) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        check.problem(path, f"must be a percentage from 0 to 100, got {value!r}")
        return None
    return float(value)


def sampling_plans(
    check: _Checker,
    value: Any,
    *,
    forms: dict[str, EvaluationForm],
    purposes: dict[str, Purpose],
    roles: dict[str, Role],
    organisations: dict[str, Organisation],
) -> dict[str, SamplingPlan]:
    """The ``sampling_plans`` section: id -> plan (references checked)."""
    found: dict[str, SamplingPlan] = {}
    for plan_id, raw in (check.mapping(value, "sampling_plans") or {}).items():
        p = child_path("sampling_plans", plan_id)
        fields = check.entry(
            raw,
            p,
            ("description", "clause", "form", "count"),
            ("per", "period", "purpose", "due_days", "queues", "reviewer_role", "reviewers", "org"),
        )
        if fields is None:
            continue
        ok = True
        form = check.get(fields, "form", p, check.text)
        if form is not None and form not in forms:
            check.problem(child_path(p, "form"), f"unknown evaluation form {form!r}")
            ok = False
        per = check.get(fields, "per", p, check.text, "agent")
        if per is not None and per not in set(SamplePer):
            check.problem(child_path(p, "per"), f"must be one of {', '.join(SamplePer)}")
            ok = False
        period = check.get(fields, "period", p, check.text, "week")
        if period is not None and period not in set(SamplePeriod):
            check.problem(child_path(p, "period"), f"must be one of {', '.join(SamplePeriod)}")
            ok = False
        purpose = check.get(fields, "purpose", p, check.text, "quality-improvement")
        if purpose is not None and (purpose not in purposes or not purposes[purpose].tag_bound):
            check.problem(
                child_path(p, "purpose"), f"{purpose!r} is not a purpose recordings are tagged with"
            )
            ok = False
        reviewer_role = check.get(fields, "reviewer_role", p, check.text, "qa-reviewer")
        role = roles.get(reviewer_role or "")
        if reviewer_role is not None and role is None:
            check.problem(child_path(p, "reviewer_role"), f"unknown role {reviewer_role!r}")
            ok = False
        elif role is not None and (
            purpose not in role.purposes or Capability.EVALUATE not in role.capabilities
        ):
            check.problem(
                child_path(p, "reviewer_role"),
                f"role {reviewer_role!r} needs purpose {purpose!r} and capability 'evaluate'",
            )
            ok = False
        org = check.get(fields, "org", p, check.text)
        if org is not None and org not in organisations:
            check.problem(child_path(p, "org"), f"unknown entrusted organisation {org!r}")
            ok = False
        if role is not None and role.entrusted and org is None:
            check.problem(p, f"reviewers of entrusted role {reviewer_role!r} need 'org'")
            ok = False
        count = check.get(fields, "count", p, check.positive)
        due_days = check.get(fields, "due_days", p, check.positive, 7)
        queues = [q for q, _ in check.get(fields, "queues", p, check.texts) or []]
        reviewers = [r for r, _ in check.get(fields, "reviewers", p, check.texts) or []]
        description = check.get(fields, "description", p, check.text)
        if not (ok and form and count and due_days and description and purpose and reviewer_role):
            continue
        assert per is not None and period is not None  # checked above (ok)
        found[plan_id] = SamplingPlan(
            id=plan_id,
            description=description,
            clause=check.clause_ref(fields, p),
            form=form,
            count=count,
            per=SamplePer(per),
            period=SamplePeriod(period),
            purpose=purpose,
            due_days=due_days,
            queues=tuple(queues),
            reviewer_role=reviewer_role,
            reviewers=tuple(reviewers),
            org=org,
        )
    return found


def sso_section(check: _Checker, value: Any, roles: dict[str, Role]) -> dict[str, Any] | None:
    """The ``sso`` section as written, when its keys are known and its role map names
    policy roles (types and values are checked by ``SsoConfig.from_mapping``)."""
    fields = check.entry(value, "sso", ("issuer", "audience"), SSO_KEYS[2:])
    if fields is None:
        return None
    before = len(check.problems)
    for key in ("issuer", "audience"):
        check.get(fields, key, "sso", check.text)
    mapping = fields.get("roles", {})
    if check.mapping(mapping, "sso.roles") is not None:
        for idp_value, role in mapping.items():
            if role not in roles:
                check.problem(child_path("sso.roles", str(idp_value)), f"unknown role {role!r}")
    return dict(fields) if len(check.problems) == before else None
