"""Load and validate the policy file.

- :func:`load_policy` returns a validated :class:`~policies.model.Policy` or raises
  :class:`~policies.errors.PolicyFileError` listing *every* problem found.
- :func:`check_policy` returns the problems instead (``callvault policy check``).
- :func:`parse_policy` does the same as ``load_policy`` for text in memory.

Each :class:`Problem` is located: the file, the line (from PyYAML's marks; the
nearest enclosing value's line when the value is missing) and the YAML path,
e.g. ``policy.yaml:57: roles.qa-vendor.purposes[1]: unknown purpose 'sales'``.

What is checked (beyond types and unknown/missing keys): references to unknown
purposes, roles, capabilities, retention classes, legal bases and clauses;
zero or negative periods and limits; malformed dates; a contract ending before it
starts; duplicate ids and keys; two retention rules for one purpose; a taggable
purpose without retention rule; audio purposes for ``operator`` or ``telephony``;
a disclosure purpose (not tag-bound, or overriding restrictions) for a role other
than ``compliance-officer``; an entrusted role with capabilities beyond
``list-recordings`` and ``evaluate``; an audio role without rate limit; a clause that
is neither organizational nor has a mechanism; a clause listing an unknown rule; a
built-in rule no clause claims. The QA sections (``evaluation_forms``,
``sampling_plans``, ``sso``) are checked by :mod:`policies._load_qa`: scales, unique
question ids, positive weights, plans naming known forms, purposes, roles able to
evaluate, organisations; ``sso`` keys and its role map.
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, TypeVar

from callvault.errors import InputFileError
from callvault.inputfiles import read_input_text
from policies import _load_qa
from policies._yaml import child_path, read_located
from policies.errors import PolicyFileError
from policies.model import (
    BUILTIN_RULES,
    DEFAULT_REFERENCE_PATTERN,
    LEGAL_BASES,
    Anchor,
    Capability,
    Clause,
    LegalBasis,
    Organisation,
    Policy,
    Purpose,
    RateLimit,
    RetentionClass,
    RetentionRule,
    Role,
    StorageCodec,
)

__all__ = ["Problem", "load_policy", "check_policy", "parse_policy", "default_policy_path"]

T = TypeVar("T")

#: The largest policy file read (the shipped one has a few kB; a file of many MB is a
#: mistake, or an attempt to exhaust the worker that loads it).
MAX_POLICY_BYTES = 4 << 20

#: Roles that may never receive audio, whatever the file says.
NO_AUDIO_ROLES = frozenset({"operator", "telephony"})
#: The only role that may hold disclosure purposes.
DISCLOSURE_ROLE = "compliance-officer"
#: Disclosure purposes named by the brief; any purpose that is not tag-bound or
#: overrides restrictions counts as a disclosure too.
DISCLOSURE_PURPOSES = frozenset({"legal-disclosure", "customer-disclosure"})

#: A tenant id (the same shape tokens and events use).
_TENANT = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
#: The privacy request kinds an SLA may name (streams.privacy.kinds.RequestKind).
REQUEST_KINDS = (
    "disclose",
    "restrict",
    "lift-restriction",
    "erase",
    "correct",
    "contract-terminated",
)

_TOP_LEVEL_REQUIRED = (
    "version",
    "purposes",
    "default_purposes",
    "roles",
    "retention_classes",
    "retention_rules",
    "legal_bases",
    "clauses",
)
_TOP_LEVEL_OPTIONAL = (
    "entrusted_organisations",
    "rate_limits",
    "privacy_requests",
    "tenancy",
    "evaluation_forms",
    "sampling_plans",
    "sso",
    "justifications",
    "exports",
)
#: Capabilities an entrusted role may hold (it acts only through its contract).
ENTRUSTED_CAPABILITIES = frozenset({Capability.LIST_RECORDINGS, Capability.EVALUATE})


@dataclass(frozen=True)
class Problem:
    """One located problem in a policy file."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


def default_policy_path() -> Path:
    """The policy file shipped inside the package (``policies/data/policy.yaml``)."""
    return Path(str(importlib.resources.files("policies").joinpath("data/policy.yaml")))


def load_policy(path: Path | None = None) -> Policy:
    """Read and validate a policy file; ``None`` reads the packaged default.

    Raises:
        PolicyFileError: the file cannot be read, is not YAML, or has any problem.
    """
    policy, problems = _load(path)
    if policy is None:
        raise PolicyFileError(str(path or default_policy_path()), [str(p) for p in problems])
    return policy


def check_policy(path: Path | None = None) -> list[Problem]:
    """Every problem of a policy file (empty when it is valid). Never raises for a bad file."""
    return _load(path)[1]


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Validate policy text held in memory; ``source`` names it in problems.

    Raises:
        PolicyFileError: the text is not YAML or has any problem.
    """
    checker = _Checker(source)
    policy = checker.run(text)
    if policy is None:
        raise PolicyFileError(source, [str(p) for p in checker.problems])
    return policy


def _load(path: Path | None) -> tuple[Policy | None, list[Problem]]:
    path = path or default_policy_path()
    checker = _Checker(str(path))
    try:
        text = read_input_text(path, max_bytes=MAX_POLICY_BYTES, what="the policy file")
    except InputFileError as exc:
        return None, [Problem(str(path), None, "", str(exc))]
    policy = checker.run(text)
    return policy, checker.problems


class _Checker:
    """Builds a Policy from located data, collecting every problem on the way."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []
        self.lines: dict[str, int] = {}
        self.clause_paths: dict[str, str] = {}
        self.declared_classes: set[str] = set()

    # ------------------------------------------------------------------ helpers

    def problem(self, path: str, message: str) -> None:
        probe = path
        while probe and probe not in self.lines:
            probe = probe.rsplit("[", 1)[0] if probe.endswith("]") else probe.rpartition(".")[0]
        self.problems.append(Problem(self.source, self.lines.get(probe), path, message))

    def mapping(self, value: Any, path: str) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.problem(path, f"must be a mapping, got {_kind(value)}")
            return None
        return value

    def entry(
        self, value: Any, path: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
    ) -> dict[str, Any] | None:
        """A mapping with known keys: reports missing and unknown keys."""
        fields = self.mapping(value, path)
        if fields is None:
            return None
        for key in required:
            if key not in fields:
                self.problem(path, f"missing key {key!r}")
        for key in fields:
            if key not in required and key not in optional:
                allowed = ", ".join(required + optional)
                self.problem(child_path(path, key), f"unknown key {key!r} (allowed: {allowed})")
        return fields

    def get(
        self,
        fields: dict[str, Any],
        key: str,
        path: str,
        check: Callable[[Any, str], T | None],
        default: T | None = None,
    ) -> T | None:
        if key not in fields:
            return default
        return check(fields[key], child_path(path, key))

    def text(self, value: Any, path: str) -> str | None:
        if not isinstance(value, str) or not value.strip():
            self.problem(path, f"must be a non-empty string, got {_kind(value)}")
            return None
        return value.strip()

    def flag(self, value: Any, path: str) -> bool | None:
        if not isinstance(value, bool):
            self.problem(path, f"must be true or false, got {_kind(value)}")
            return None
        return value

    def reference_pattern(self, value: Any) -> str:
        """``justifications.reference_pattern``: a regular expression (full match)."""
        if value is None:
            return DEFAULT_REFERENCE_PATTERN
        fields = self.entry(value, "justifications", ("reference_pattern",))
        pattern = fields and self.get(fields, "reference_pattern", "justifications", self.text)
        if not pattern:
            return DEFAULT_REFERENCE_PATTERN
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            self.problem("justifications.reference_pattern", f"not a regular expression: {exc}")
            return DEFAULT_REFERENCE_PATTERN
        if compiled.fullmatch("") is not None:
            self.problem("justifications.reference_pattern", "must not match the empty text")
        return pattern

    def positive(self, value: Any, path: str) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(path, f"must be a whole number, got {_kind(value)}")
            return None
        if value <= 0:
            self.problem(path, f"must be greater than zero, got {value}")
            return None
        return value

    def texts(self, value: Any, path: str) -> list[tuple[str, str]] | None:
        """A list of strings, with each item's path; duplicates reported."""
        if not isinstance(value, list):
            self.problem(path, f"must be a list, got {_kind(value)}")
            return None
        items: list[tuple[str, str]] = []
        seen: set[str] = set()
        for index, item in enumerate(value):
            item_path = child_path(path, index)
            checked = self.text(item, item_path)
            if checked is None:
                continue
            if checked in seen:
                self.problem(item_path, f"{checked!r} is listed twice")
                continue
            seen.add(checked)
            items.append((checked, item_path))
        return items

    def moment(self, value: Any, path: str) -> datetime | None:
        """A date (midnight UTC) or a timezone-aware datetime."""
        if isinstance(value, datetime):
            parsed: datetime | None = value
        elif isinstance(value, date):
            parsed = datetime.combine(value, time(0), UTC)
        elif isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                parsed = None
            if parsed is not None and len(value.strip()) == 10:
                parsed = parsed.replace(tzinfo=UTC)
        else:
            parsed = None
        if parsed is None:
            self.problem(path, f"malformed date {value!r} (use YYYY-MM-DD or ISO 8601 with offset)")
            return None
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            self.problem(path, f"datetime {value!r} needs a UTC offset")
            return None
        return parsed

    def clause_ref(self, fields: dict[str, Any], path: str) -> str:
        return self.get(fields, "clause", path, self.text) or ""

    # ------------------------------------------------------------------ sections

    def run(self, text: str) -> Policy | None:
        located = read_located(text)
        self.lines = located.lines
        for path, line, message in located.problems:
            self.problems.append(Problem(self.source, line, path, message))
        if located.data is None:
            return None
        top = self.entry(located.data, "", _TOP_LEVEL_REQUIRED, _TOP_LEVEL_OPTIONAL)
        if top is None:
            return None

        version = self.get(top, "version", "", self.positive)
        if version is not None and version != 1:
            self.problem("version", f"unsupported policy version {version} (this code reads 1)")
        purposes = self.purposes(top.get("purposes"), "purposes") if "purposes" in top else {}
        roles = self.roles(top.get("roles"), "roles", purposes) if "roles" in top else {}
        default_purposes = self.default_purposes(top.get("default_purposes"), purposes)
        classes = (
            self.retention_classes(top.get("retention_classes"))
            if "retention_classes" in top
            else {}
        )
        rules = self.retention_rules(top.get("retention_rules"), purposes, classes)
        legal_bases = self.legal_bases(top.get("legal_bases")) if "legal_bases" in top else {}
        organisations = self.organisations(top.get("entrusted_organisations", {}))
        rate_limits = self.rate_limits(top.get("rate_limits", {}), roles)
        clauses = self.clauses(top.get("clauses"))
        response_days, response_clause = 30, ""
        sla_days: dict[str, int] = {}
        if "privacy_requests" in top:
            requests = self.entry(
                top.get("privacy_requests"),
                "privacy_requests",
                ("response_days", "clause"),
                ("sla_days",),
            )
            if requests is not None:
                response_days = (
                    self.get(requests, "response_days", "privacy_requests", self.positive) or 30
                )
                response_clause = self.clause_ref(requests, "privacy_requests")
                sla_days = self.sla_days(requests.get("sla_days", {}))
        default_tenant, tenancy_clause = "default", ""
        if "tenancy" in top:
            tenancy = self.entry(top.get("tenancy"), "tenancy", ("default_tenant", "clause"))
            if tenancy is not None:
                name = self.get(tenancy, "default_tenant", "tenancy", self.text)
                if name is not None and not _TENANT.match(name):
                    self.problem("tenancy.default_tenant", f"{name!r} must match {_TENANT.pattern}")
                default_tenant = name or default_tenant
                tenancy_clause = self.clause_ref(tenancy, "tenancy")
        reference_pattern = self.reference_pattern(top.get("justifications"))
        export_days = 7
        if "exports" in top:
            exports = self.entry(top.get("exports"), "exports", ("expiry_days",))
            if exports is not None:
                export_days = self.get(exports, "expiry_days", "exports", self.positive) or 7
        forms = _load_qa.evaluation_forms(self, top.get("evaluation_forms", {}))
        plans = _load_qa.sampling_plans(
            self,
            top.get("sampling_plans", {}),
            forms=forms,
            purposes=purposes,
            roles=roles,
            organisations=organisations,
        )
        sso = _load_qa.sso_section(self, top["sso"], roles) if "sso" in top else None

        policy = Policy(
            source=self.source,
            version=version or 1,
            purposes=purposes,
            default_purposes=default_purposes,
            roles=roles,
            retention_classes=classes,
            retention_rules=tuple(rules),
            legal_bases=legal_bases,
            organisations=organisations,
            rate_limits=rate_limits,
            clauses=clauses,
            request_response_days=response_days,
            request_sla_days=sla_days,
            default_tenant=default_tenant,
            evaluation_forms=forms,
            sampling_plans=plans,
            sso=sso,
            justification_reference_pattern=reference_pattern,
            export_expiry_days=export_days,
        )
        self.known_clause(policy, response_clause, "privacy_requests.clause")
        if tenancy_clause:
            self.known_clause(policy, tenancy_clause, "tenancy.clause")
        self.cross_checks(policy)
        return None if self.problems else policy

    def purposes(self, value: Any, path: str) -> dict[str, Purpose]:
        found: dict[str, Purpose] = {}
        section = self.mapping(value, path)
        for pid, raw in (section or {}).items():
            p = child_path(path, pid)
            fields = self.entry(
                raw,
                p,
                ("description", "clause"),
                (
                    "tag_bound",
                    "requires_justification",
                    "requires_legal_basis",
                    "requires_reference",
                    "overrides_restriction",
                ),
            )
            if fields is None:
                continue
            flags = {
                key: self.get(fields, key, p, self.flag, default)
                for key, default in (
                    ("tag_bound", True),
                    ("requires_justification", False),
                    ("requires_legal_basis", False),
                    ("requires_reference", False),
                    ("overrides_restriction", False),
                )
            }
            found[pid] = Purpose(
                id=pid,
                description=self.get(fields, "description", p, self.text) or "",
                clause=self.clause_ref(fields, p),
                **{key: bool(v) for key, v in flags.items()},
            )
        if section is not None and not found:
            self.problem(path, "at least one purpose is needed")
        return found

    def default_purposes(self, value: Any, purposes: dict[str, Purpose]) -> tuple[str, ...]:
        if value is None:
            return ()
        items = self.texts(value, "default_purposes") or []
        if isinstance(value, list) and not value:
            self.problem("default_purposes", "must name at least one purpose")
        for pid, item_path in items:
            if pid not in purposes:
                self.problem(item_path, f"unknown purpose {pid!r}")
            elif not purposes[pid].tag_bound:
                self.problem(item_path, f"{pid!r} is a disclosure purpose, not a recording tag")
        return tuple(pid for pid, _ in items)

    def roles(self, value: Any, path: str, purposes: dict[str, Purpose]) -> dict[str, Role]:
        found: dict[str, Role] = {}
        for rid, raw in (self.mapping(value, path) or {}).items():
            p = child_path(path, rid)
            fields = self.entry(
                raw,
                p,
                ("description", "clause"),
                ("purposes", "capabilities", "entrusted", "requires_assignment", "spans_tenants"),
            )
            if fields is None:
                continue
            role_purposes = self.get(fields, "purposes", p, self.texts) or []
            for pid, item_path in role_purposes:
                self.role_purpose(rid, pid, item_path, purposes)
            capabilities: list[Capability] = []
            for name, item_path in self.get(fields, "capabilities", p, self.texts) or []:
                if name not in set(Capability):
                    known = ", ".join(Capability)
                    self.problem(item_path, f"unknown capability {name!r} (known: {known})")
                else:
                    capabilities.append(Capability(name))
            entrusted = bool(self.get(fields, "entrusted", p, self.flag, False))
            if rid == "qa-vendor" and not entrusted:
                self.problem(p, "qa-vendor is an external company: it must be 'entrusted: true'")
            if entrusted:
                for cap in capabilities:
                    if cap not in ENTRUSTED_CAPABILITIES:
                        self.problem(
                            child_path(p, "capabilities"),
                            f"entrusted role {rid!r} must not have capability {cap.value!r}",
                        )
            spans = bool(self.get(fields, "spans_tenants", p, self.flag, False))
            if spans and (entrusted or role_purposes):
                self.problem(
                    child_path(p, "spans_tenants"),
                    f"role {rid!r} hears audio or is entrusted: it must not span tenants",
                )
            found[rid] = Role(
                id=rid,
                description=self.get(fields, "description", p, self.text) or "",
                clause=self.clause_ref(fields, p),
                purposes=tuple(pid for pid, _ in role_purposes),
                capabilities=tuple(capabilities),
                entrusted=entrusted,
                requires_assignment=bool(
                    self.get(fields, "requires_assignment", p, self.flag, False)
                ),
                spans_tenants=spans,
            )
        return found

    def sla_days(self, value: Any) -> dict[str, int]:
        """``privacy_requests.sla_days``: days per request kind."""
        found: dict[str, int] = {}
        for kind, raw in (self.mapping(value, "privacy_requests.sla_days") or {}).items():
            p = child_path("privacy_requests.sla_days", kind)
            if kind not in REQUEST_KINDS:
                self.problem(
                    p, f"unknown request kind {kind!r} (known: {', '.join(REQUEST_KINDS)})"
                )
                continue
            days = self.positive(raw, p)
            if days is not None:
                found[kind] = days
        return found

    def role_purpose(self, rid: str, pid: str, path: str, purposes: dict[str, Purpose]) -> None:
        if pid not in purposes:
            self.problem(path, f"unknown purpose {pid!r}")
            return
        if rid in NO_AUDIO_ROLES:
            self.problem(path, f"role {rid!r} must never be granted audio (purpose {pid!r})")
            return
        purpose = purposes[pid]
        disclosure = (
            pid in DISCLOSURE_PURPOSES or not purpose.tag_bound or purpose.overrides_restriction
        )
        if disclosure and rid != DISCLOSURE_ROLE:
            self.problem(path, f"only {DISCLOSURE_ROLE} may use disclosure purpose {pid!r}")

    def retention_classes(self, value: Any) -> dict[str, RetentionClass]:
        found: dict[str, RetentionClass] = {}
        section = self.mapping(value, "retention_classes") or {}
        self.declared_classes = set(section)
        for cid, raw in section.items():
            p = child_path("retention_classes", cid)
            fields = self.entry(
                raw, p, ("description", "clause", "anchor", "days"), ("max_days", "storage_codec")
            )
            if fields is None:
                continue
            anchor_text = self.get(fields, "anchor", p, self.text)
            anchor: Anchor | None = None
            if anchor_text is not None:
                if anchor_text in set(Anchor):
                    anchor = Anchor(anchor_text)
                else:
                    self.problem(
                        child_path(p, "anchor"),
                        f"unknown anchor {anchor_text!r} (known: {', '.join(Anchor)})",
                    )
            days = self.get(fields, "days", p, self.positive)
            max_days = self.get(fields, "max_days", p, self.positive)
            if anchor is Anchor.CONTRACT_TERMINATION and "max_days" not in fields:
                self.problem(p, "a contract-termination class needs 'max_days' (bound while live)")
            if anchor is Anchor.CALL_END and "max_days" in fields:
                self.problem(child_path(p, "max_days"), "only a contract-termination class has it")
            codec = StorageCodec.AS_SENT
            codec_text = self.get(fields, "storage_codec", p, self.text)
            if codec_text is not None:
                if codec_text in set(StorageCodec):
                    codec = StorageCodec(codec_text)
                else:
                    self.problem(
                        child_path(p, "storage_codec"),
                        f"unknown storage codec {codec_text!r} (known: {', '.join(StorageCodec)})",
                    )
            if anchor is None or days is None:
                continue
            found[cid] = RetentionClass(
                id=cid,
                description=self.get(fields, "description", p, self.text) or "",
                clause=self.clause_ref(fields, p),
                anchor=anchor,
                days=days,
                max_days=max_days,
                storage_codec=codec,
            )
        terminations = [c for c in found.values() if c.anchor is Anchor.CONTRACT_TERMINATION]
        if value is not None and len(terminations) != 1:
            self.problem(
                "retention_classes",
                "exactly one class must have anchor 'contract-termination', "
                f"found {len(terminations)}",
            )
        return found

    def retention_rules(
        self, value: Any, purposes: dict[str, Purpose], classes: dict[str, RetentionClass]
    ) -> list[RetentionRule]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem("retention_rules", f"must be a list, got {_kind(value)}")
            return []
        rules: list[RetentionRule] = []
        first_path: dict[str, str] = {}
        for index, raw in enumerate(value):
            p = child_path("retention_rules", index)
            fields = self.entry(raw, p, ("purpose", "class", "clause"))
            if fields is None:
                continue
            pid = self.get(fields, "purpose", p, self.text)
            cid = self.get(fields, "class", p, self.text)
            if pid is not None:
                if pid in first_path:
                    self.problem(
                        child_path(p, "purpose"),
                        f"second retention rule for purpose {pid!r} (first at {first_path[pid]})",
                    )
                    continue
                first_path[pid] = p
                if pid not in purposes:
                    self.problem(child_path(p, "purpose"), f"unknown purpose {pid!r}")
                elif not purposes[pid].tag_bound:
                    self.problem(
                        child_path(p, "purpose"),
                        f"{pid!r} is a disclosure purpose: recordings are never tagged with it",
                    )
            # a class that is declared but invalid was reported already: no cascade
            if cid is not None and cid not in classes and cid not in self.declared_classes:
                self.problem(child_path(p, "class"), f"unknown retention class {cid!r}")
            if pid and cid:
                rules.append(RetentionRule(pid, cid, self.clause_ref(fields, p)))
        for purpose in purposes.values():
            if purpose.tag_bound and purpose.id not in first_path:
                self.problem("retention_rules", f"no retention rule for purpose {purpose.id!r}")
        return rules

    def legal_bases(self, value: Any) -> dict[str, LegalBasis]:
        found: dict[str, LegalBasis] = {}
        for bid, raw in (self.mapping(value, "legal_bases") or {}).items():
            p = child_path("legal_bases", bid)
            if bid not in LEGAL_BASES:
                closed = ", ".join(LEGAL_BASES)
                self.problem(
                    p, f"unknown legal basis {bid!r} (the privacy policy allows: {closed})"
                )
            fields = self.entry(raw, p, ("description", "clause"))
            if fields is None or bid not in LEGAL_BASES:
                continue
            found[bid] = LegalBasis(
                bid, self.get(fields, "description", p, self.text) or "", self.clause_ref(fields, p)
            )
        return found

    def organisations(self, value: Any) -> dict[str, Organisation]:
        found: dict[str, Organisation] = {}
        for oid, raw in (self.mapping(value, "entrusted_organisations") or {}).items():
            p = child_path("entrusted_organisations", oid)
            fields = self.entry(
                raw,
                p,
                ("name", "clause", "contract_start", "contract_end", "confidentiality_contract"),
            )
            if fields is None:
                continue
            start = self.get(fields, "contract_start", p, self.moment)
            end = self.get(fields, "contract_end", p, self.moment)
            confidentiality = self.get(fields, "confidentiality_contract", p, self.text)
            name = self.get(fields, "name", p, self.text)
            if start and end and end <= start:
                self.problem(
                    child_path(p, "contract_end"),
                    f"contract ends ({end.date()}) before or when it starts ({start.date()})",
                )
                continue
            if start and end and confidentiality and name:
                found[oid] = Organisation(
                    oid, name, self.clause_ref(fields, p), start, end, confidentiality
                )
        return found

    def rate_limits(self, value: Any, roles: dict[str, Role]) -> dict[str, RateLimit]:
        found: dict[str, RateLimit] = {}
        for rid, raw in (self.mapping(value, "rate_limits") or {}).items():
            p = child_path("rate_limits", rid)
            if rid not in roles:
                self.problem(p, f"unknown role {rid!r}")
            fields = self.entry(raw, p, ("recordings_per_hour", "clause"))
            if fields is None:
                continue
            per_hour = self.get(fields, "recordings_per_hour", p, self.positive)
            if per_hour is not None and rid in roles:
                found[rid] = RateLimit(rid, per_hour, self.clause_ref(fields, p))
        for role in roles.values():
            if role.purposes and role.id not in found and value is not None:
                self.problem(
                    "rate_limits", f"role {role.id!r} has audio purposes but no rate limit"
                )
        return found

    def clauses(self, value: Any) -> dict[str, Clause]:
        found: dict[str, Clause] = {}
        if value is None:
            return found
        if not isinstance(value, list):
            self.problem("clauses", f"must be a list, got {_kind(value)}")
            return found
        for index, raw in enumerate(value):
            p = child_path("clauses", index)
            fields = self.entry(
                raw,
                p,
                ("id", "heading", "excerpt"),
                ("mechanism", "organizational", "rules", "tests"),
            )
            if fields is None:
                continue
            cid = self.get(fields, "id", p, self.text)
            organizational = bool(self.get(fields, "organizational", p, self.flag, False))
            mechanism = self.get(fields, "mechanism", p, self.text) or ""
            if not organizational and not mechanism:
                self.problem(p, f"clause {cid!r} has no mechanism and is not organizational")
            tests = self.get(fields, "tests", p, self.texts) or []
            for test, test_path in tests:
                if "::" not in test or not test.startswith("tests/"):
                    self.problem(test_path, f"test id {test!r} must read tests/...py::test_name")
            if cid is None:
                continue
            if cid in found:
                self.problem(child_path(p, "id"), f"duplicate clause id {cid!r}")
                continue
            self.clause_paths[cid] = p
            found[cid] = Clause(
                id=cid,
                heading=self.get(fields, "heading", p, self.text) or "",
                excerpt=self.get(fields, "excerpt", p, self.text) or "",
                mechanism=mechanism,
                organizational=organizational,
                rules=tuple(r for r, _ in self.get(fields, "rules", p, self.texts) or []),
                tests=tuple(t for t, _ in tests),
            )
        return found

    def cross_checks(self, policy: Policy) -> None:
        """Clause references in both directions."""
        sections: list[tuple[str, Mapping[str, Any]]] = [
            ("purposes", policy.purposes),
            ("roles", policy.roles),
            ("retention_classes", policy.retention_classes),
            ("legal_bases", policy.legal_bases),
            ("entrusted_organisations", policy.organisations),
            ("rate_limits", policy.rate_limits),
            ("evaluation_forms", policy.evaluation_forms),
            ("sampling_plans", policy.sampling_plans),
        ]
        for section, items in sections:
            for key, item in items.items():
                self.known_clause(
                    policy, item.clause, child_path(child_path(section, key), "clause")
                )
        for index, retention_rule in enumerate(policy.retention_rules):
            path = child_path(child_path("retention_rules", index), "clause")
            self.known_clause(policy, retention_rule.clause, path)

        known_rules = set(BUILTIN_RULES) | set(policy.policy_rules())
        claimed: set[str] = set()
        for clause in policy.clauses.values():
            claimed.update(clause.rules)
            for rule_index, rule in enumerate(clause.rules):
                if rule not in known_rules:
                    path = child_path(child_path(self.clause_paths[clause.id], "rules"), rule_index)
                    self.problem(path, f"unknown rule {rule!r}")
        for rule in BUILTIN_RULES:
            if rule not in claimed:
                self.problem("clauses", f"built-in rule {rule!r} is not claimed by any clause")

    def known_clause(self, policy: Policy, clause: str, path: str) -> None:
        if clause and clause not in policy.clauses:
            self.problem(path, f"unknown clause {clause!r}")


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"
