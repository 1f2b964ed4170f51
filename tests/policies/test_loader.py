"""The policy loader: the shipped policy is valid, and every problem of a broken
file is reported with its file, line and YAML path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from policies import (
    BUILTIN_RULES,
    PolicyFileError,
    Problem,
    check_policy,
    default_policy_path,
    load_policy,
    parse_policy,
)
from policies.loader import MAX_POLICY_BYTES

BUILTINS = ", ".join(BUILTIN_RULES)

# A small valid policy; each case below breaks one thing in it.
MINIMAL = f"""\
version: 1
purposes:
  qa:
    description: QA review.
    clause: c-use
    requires_justification: true
  legal-disclosure:
    description: Legal disclosure.
    clause: c-use
    tag_bound: false
    requires_legal_basis: true
    requires_reference: true
    overrides_restriction: true
default_purposes: [qa]
roles:
  qa-reviewer:
    description: QA staff.
    clause: c-use
    purposes: [qa]
    capabilities: [list-recordings]
  qa-vendor:
    description: External QA.
    clause: c-use
    entrusted: true
    purposes: [qa]
    capabilities: [list-recordings]
  compliance-officer:
    description: Privacy office.
    clause: c-use
    purposes: [legal-disclosure]
    capabilities: [read-audit, manage-holds]
  operator:
    description: Ops.
    clause: c-use
    capabilities: [view-metrics]
retention_classes:
  short:
    description: 30 days.
    clause: c-keep
    anchor: call-end
    days: 30
  eoc:
    description: End of contract.
    clause: c-keep
    anchor: contract-termination
    days: 10
    max_days: 365
retention_rules:
  - purpose: qa
    class: short
    clause: c-keep
legal_bases:
  consent:
    description: Agreed.
    clause: c-use
entrusted_organisations:
  vendor-1:
    name: Vendor One
    clause: c-use
    contract_start: 2026-01-01
    contract_end: 2027-01-01
    confidentiality_contract: NDA-1
rate_limits:
  qa-reviewer:
    recordings_per_hour: 10
    clause: c-use
  qa-vendor:
    recordings_per_hour: 5
    clause: c-use
  compliance-officer:
    recordings_per_hour: 5
    clause: c-use
clauses:
  - id: c-use
    heading: Use
    excerpt: use
    mechanism: access rules
    rules: [{BUILTINS}]
  - id: c-keep
    heading: Keep
    excerpt: keep
    mechanism: retention
  - id: c-org
    heading: Org
    excerpt: org
    organizational: true
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, marker: str) -> int:
    """1-based line where ``marker`` first occurs (it must occur exactly once)."""
    assert text.count(marker) == 1, marker
    return text.count("\n", 0, text.index(marker)) + 1


def test_minimal_policy_is_valid(tmp_path: Path) -> None:
    assert check_policy(write(tmp_path, MINIMAL)) == []
    policy = load_policy(write(tmp_path, MINIMAL))
    assert list(policy.purposes) == ["qa", "legal-disclosure"]
    assert policy.organisations["vendor-1"].contract_start.tzinfo is not None


def test_shipped_policy_is_valid() -> None:
    assert check_policy() == []
    assert check_policy(default_policy_path()) == []
    policy = load_policy()
    assert policy.source.endswith("policy.yaml")
    assert set(policy.purposes) >= {
        "customer-response",
        "quality-improvement",
        "legal-disclosure",
        "customer-disclosure",
    }
    assert set(policy.roles) >= {
        "qa-reviewer",
        "qa-vendor",
        "compliance-officer",
        "telephony",
        "operator",
    }
    assert set(policy.legal_bases) == {"consent", "protect-life-body-property", "legal-requirement"}


@pytest.mark.clause("collection.call-recording")
def test_shipped_policy_defaults_to_the_two_operational_purposes() -> None:
    policy = load_policy()
    assert policy.default_purposes == ("customer-response", "quality-improvement")
    for purpose in policy.default_purposes:
        assert policy.purposes[purpose].tag_bound
        assert policy.purposes[purpose].clause in policy.clauses


def test_rate_limits_exist_for_every_role_with_audio() -> None:
    policy = load_policy()
    audio_roles = {role.id for role in policy.roles.values() if role.purposes}
    assert audio_roles == set(policy.rate_limits)
    assert all(policy.rate_limit_for(role) for role in audio_roles)


# (case id, old text, new text, YAML path, message fragment, line marker in the new text)
CASES = [
    (
        "unknown-storage-codec",
        "    days: 30\n",
        "    days: 30\n    storage_codec: mp3-8k\n",
        "retention_classes.short.storage_codec",
        "unknown storage codec 'mp3-8k' (known: as-sent, opus-16k, flac)",
        "storage_codec: mp3-8k",
    ),
    (
        "unknown-top-level-key",
        "version: 1\n",
        "version: 1\nsharing: everyone\n",
        "sharing",
        "unknown key 'sharing'",
        "sharing:",
    ),
    (
        "missing-top-level-key",
        "legal_bases:\n  consent:\n    description: Agreed.\n    clause: c-use\n",
        "",
        "",
        "missing key 'legal_bases'",
        "version: 1",
    ),
    (
        "unknown-purpose-in-role",
        "    purposes: [qa]\n    capabilities: [list-recordings]\n  qa-vendor",
        "    purposes: [qa, gossip]\n    capabilities: [list-recordings]\n  qa-vendor",
        "roles.qa-reviewer.purposes[1]",
        "unknown purpose 'gossip'",
        "[qa, gossip]",
    ),
    (
        "unknown-role-in-rate-limits",
        "  qa-reviewer:\n    recordings_per_hour: 10",
        "  qa-reviewr:\n    recordings_per_hour: 10",
        "rate_limits.qa-reviewr",
        "unknown role 'qa-reviewr'",
        "qa-reviewr:",
    ),
    (
        "unknown-retention-class",
        "    class: short",
        "    class: forever",
        "retention_rules[0].class",
        "unknown retention class 'forever'",
        "class: forever",
    ),
    (
        "unknown-legal-basis",
        "legal_bases:\n  consent:",
        "legal_bases:\n  national-interest:",
        "legal_bases.national-interest",
        "unknown legal basis 'national-interest'",
        "national-interest:",
    ),
    (
        "unknown-capability",
        "capabilities: [view-metrics]",
        "capabilities: [view-metrics, root]",
        "roles.operator.capabilities[1]",
        "unknown capability 'root'",
        "[view-metrics, root]",
    ),
    (
        "zero-period",
        "    days: 30",
        "    days: 0",
        "retention_classes.short.days",
        "must be greater than zero, got 0",
        "days: 0",
    ),
    (
        "negative-period",
        "    max_days: 365",
        "    max_days: -5",
        "retention_classes.eoc.max_days",
        "must be greater than zero, got -5",
        "max_days: -5",
    ),
    (
        "period-not-a-number",
        "    days: 30",
        "    days: thirty",
        "retention_classes.short.days",
        "must be a whole number",
        "days: thirty",
    ),
    (
        "zero-rate-limit",
        "recordings_per_hour: 5\n    clause: c-use\n  compliance",
        "recordings_per_hour: 0\n    clause: c-use\n  compliance",
        "rate_limits.qa-vendor.recordings_per_hour",
        "must be greater than zero",
        "recordings_per_hour: 0",
    ),
    (
        "malformed-date",
        "contract_start: 2026-01-01",
        "contract_start: 2026-13-01",
        "entrusted_organisations.vendor-1.contract_start",
        "malformed date '2026-13-01'",
        "2026-13-01",
    ),
    (
        "malformed-date-text",
        "contract_end: 2027-01-01",
        "contract_end: next spring",
        "entrusted_organisations.vendor-1.contract_end",
        "malformed date 'next spring'",
        "next spring",
    ),
    (
        "contract-ends-before-it-starts",
        "contract_end: 2027-01-01",
        "contract_end: 2025-06-30",
        "entrusted_organisations.vendor-1.contract_end",
        "contract ends (2025-06-30) before or when it starts (2026-01-01)",
        "2025-06-30",
    ),
    (
        "no-confidentiality-contract",
        "    confidentiality_contract: NDA-1\n",
        "",
        "entrusted_organisations.vendor-1",
        "missing key 'confidentiality_contract'",
        "vendor-1:",
    ),
    (
        "two-retention-rules-for-one-purpose",
        "retention_rules:\n  - purpose: qa\n    class: short\n    clause: c-keep\n",
        "retention_rules:\n  - purpose: qa\n    class: short\n    clause: c-keep\n"
        "  - purpose: qa\n    class: eoc\n    clause: c-keep\n",
        "retention_rules[1].purpose",
        "second retention rule for purpose 'qa' (first at retention_rules[0])",
        "purpose: qa\n    class: eoc",
    ),
    (
        "taggable-purpose-without-retention",
        "default_purposes: [qa]",
        "default_purposes: [qa]\n# no rule for 'extra'",
        "retention_rules",
        "no retention rule for purpose 'extra'",
        "retention_rules:",
    ),
    (
        "duplicate-clause-id",
        "  - id: c-org\n",
        "  - id: c-keep\n",
        "clauses[2].id",
        "duplicate clause id 'c-keep'",
        "id: c-keep\n    heading: Org",
    ),
    (
        "duplicate-key",
        "  short:\n    description: 30 days.",
        "  short:\n    description: 30 days.\n    description: 31 days.",
        "retention_classes.short.description",
        "duplicate key 'description'",
        "31 days",
    ),
    (
        "operator-granted-audio",
        "    capabilities: [view-metrics]",
        "    purposes: [qa]\n    capabilities: [view-metrics]",
        "roles.operator.purposes[0]",
        "role 'operator' must never be granted audio",
        "purposes: [qa]\n    capabilities: [view-metrics]",
    ),
    (
        "disclosure-for-qa",
        "    purposes: [qa]\n    capabilities: [list-recordings]\n  qa-vendor",
        "    purposes: [qa, legal-disclosure]\n    capabilities: [list-recordings]\n  qa-vendor",
        "roles.qa-reviewer.purposes[1]",
        "only compliance-officer may use disclosure purpose 'legal-disclosure'",
        "[qa, legal-disclosure]",
    ),
    (
        "entrusted-role-with-audit",
        "    entrusted: true\n    purposes: [qa]\n    capabilities: [list-recordings]",
        "    entrusted: true\n    purposes: [qa]\n    capabilities: [list-recordings, read-audit]",
        "roles.qa-vendor.capabilities",
        "entrusted role 'qa-vendor' must not have capability 'read-audit'",
        "[list-recordings, read-audit]",
    ),
    (
        "vendor-not-entrusted",
        "    entrusted: true\n",
        "",
        "roles.qa-vendor",
        "must be 'entrusted: true'",
        "qa-vendor:\n    description: External QA.",
    ),
    (
        "audio-role-without-rate-limit",
        "  compliance-officer:\n    recordings_per_hour: 5\n    clause: c-use\n",
        "",
        "rate_limits",
        "role 'compliance-officer' has audio purposes but no rate limit",
        "rate_limits:",
    ),
    (
        "clause-without-mechanism",
        "    mechanism: retention\n",
        "",
        "clauses[1]",
        "clause 'c-keep' has no mechanism and is not organizational",
        "- id: c-keep",
    ),
    (
        "rule-names-unknown-clause",
        "    clause: c-keep\n    anchor: call-end",
        "    clause: c-storage\n    anchor: call-end",
        "retention_classes.short.clause",
        "unknown clause 'c-storage'",
        "clause: c-storage",
    ),
    (
        "clause-lists-unknown-rule",
        "    mechanism: retention\n",
        "    mechanism: retention\n    rules: [retention:forever]\n",
        "clauses[1].rules[0]",
        "unknown rule 'retention:forever'",
        "rules: [retention:forever]",
    ),
    (
        "builtin-rule-unclaimed",
        "rules: [access:default-deny, ",
        "rules: [",
        "clauses",
        "built-in rule 'access:default-deny' is not claimed by any clause",
        "clauses:",
    ),
    (
        "default-purpose-is-a-disclosure",
        "default_purposes: [qa]",
        "default_purposes: [qa, legal-disclosure]",
        "default_purposes[1]",
        "'legal-disclosure' is a disclosure purpose, not a recording tag",
        "default_purposes:",
    ),
    (
        "unknown-anchor",
        "anchor: call-end",
        "anchor: call-start",
        "retention_classes.short.anchor",
        "unknown anchor 'call-start'",
        "anchor: call-start",
    ),
    (
        "flag-not-boolean",
        "    requires_justification: true",
        "    requires_justification: sometimes",
        "purposes.qa.requires_justification",
        "must be true or false",
        "sometimes",
    ),
    (
        "unknown-entry-key",
        "    description: QA review.",
        "    description: QA review.\n    retention: 90d",
        "purposes.qa.retention",
        "unknown key 'retention'",
        "retention: 90d",
    ),
    (
        "unsupported-version",
        "version: 1",
        "version: 2",
        "version",
        "unsupported policy version 2",
        "version: 2",
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "yaml_path", "fragment", "marker"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_each_problem_is_reported_with_its_location(
    tmp_path: Path, old: str, new: str, yaml_path: str, fragment: str, marker: str
) -> None:
    assert old in MINIMAL
    text = MINIMAL.replace(old, new, 1)
    if "no rule for 'extra'" in new:
        text = text.replace(
            "purposes:\n  qa:\n",
            "purposes:\n  extra:\n    description: x\n    clause: c-use\n  qa:\n",
        )
    path = write(tmp_path, text)
    problems = check_policy(path)
    matching = [p for p in problems if p.path == yaml_path and fragment in p.message]
    assert matching, f"no problem at {yaml_path!r} containing {fragment!r}; got:\n" + "\n".join(
        map(str, problems)
    )
    problem = matching[0]
    assert problem.line == line_of(text, marker), str(problem)
    assert problem.file == str(path)
    assert str(problem).startswith(f"{path}:{problem.line}: {yaml_path}")
    with pytest.raises(PolicyFileError) as raised:
        load_policy(path)
    assert str(problem) in raised.value.problems
    assert str(problem) in str(raised.value)


@pytest.mark.clause("entrustment.selection")
def test_organisation_problems_are_located(tmp_path: Path) -> None:
    text = MINIMAL.replace("contract_end: 2027-01-01", "contract_end: 2025-12-31").replace(
        "    confidentiality_contract: NDA-1\n", ""
    )
    problems = [str(p) for p in check_policy(write(tmp_path, text))]
    assert any(
        "entrusted_organisations.vendor-1.contract_end: contract ends (2025-12-31)" in p
        for p in problems
    )
    assert any("vendor-1: missing key 'confidentiality_contract'" in p for p in problems)


@pytest.mark.clause("third-party")
def test_disclosure_purpose_for_another_role_is_a_problem(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "    capabilities: [view-metrics]",
        "    capabilities: [view-metrics]\n  auditor:\n"
        "    description: External auditor.\n    clause: c-use\n    purposes: [legal-disclosure]\n",
    )
    problems = check_policy(write(tmp_path, text))
    assert [p.path for p in problems if "disclosure purpose" in p.message] == [
        "roles.auditor.purposes[0]"
    ]


@pytest.mark.clause("management.safety")
def test_audio_for_operator_or_telephony_is_a_problem(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "    capabilities: [view-metrics]",
        "    capabilities: [view-metrics]\n  telephony:\n"
        "    description: PBX.\n    clause: c-use\n"
        "    purposes: [qa]\n    capabilities: [ingest]\n",
    ).replace(
        "  operator:\n    description: Ops.\n",
        "  operator:\n    description: Ops.\n    purposes: [qa]\n",
    )
    messages = {p.path: p.message for p in check_policy(write(tmp_path, text))}
    assert "must never be granted audio" in messages["roles.operator.purposes[0]"]
    assert "must never be granted audio" in messages["roles.telephony.purposes[0]"]


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    text = MINIMAL.replace("days: 30", "days: 0").replace("class: short", "class: forever")
    problems = check_policy(write(tmp_path, text))
    assert {p.path for p in problems} >= {
        "retention_classes.short.days",
        "retention_rules[0].class",
    }


def test_malformed_yaml_gives_a_clear_error(tmp_path: Path) -> None:
    text = MINIMAL.replace("default_purposes: [qa]", "default_purposes: [qa")
    path = write(tmp_path, text)
    problems = check_policy(path)
    assert len(problems) == 1
    assert "YAML syntax error" in problems[0].message
    assert problems[0].line is not None and problems[0].line >= line_of(text, "default_purposes")
    with pytest.raises(PolicyFileError, match="YAML syntax error"):
        load_policy(path)


@pytest.mark.parametrize(
    "nesting", ["[" * 5000 + "]" * 5000, "{a: " * 3000 + "b" + "}" * 3000, "[" * 100_000]
)
def test_a_deeply_nested_policy_is_a_syntax_error_not_a_crash(tmp_path: Path, nesting: str) -> None:
    """libyaml caps nesting at 1000 levels: a hostile policy gets a located problem
    (never a RecursionError from walking 5000 levels)."""
    problems = check_policy(write(tmp_path, f"purposes: {nesting}\n"))
    assert len(problems) == 1
    assert "YAML syntax error" in problems[0].message
    assert "maximum nesting depth" in problems[0].message and problems[0].line == 1


def test_self_referential_aliases_and_alias_bombs_are_problems_not_crashes(
    tmp_path: Path,
) -> None:
    loop = check_policy(write(tmp_path, "purposes: &p {qa: *p}\n"))
    assert any("an alias refers to a value that contains it" in p.message for p in loop)
    bomb = "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)
    )  # 10**9 values once expanded
    problems = check_policy(write(tmp_path, bomb))
    assert any("more than 100000 values" in p.message for p in problems)


def test_a_lone_surrogate_is_a_problem_not_a_crash() -> None:
    from policies._yaml import read_located

    located = read_located("purposes: \ud800\n")
    assert located.data is None
    assert [m for _, _, m in located.problems] == [
        "YAML error: not valid text (surrogates not allowed)"
    ]


def test_tab_indentation_is_a_syntax_error(tmp_path: Path) -> None:
    text = MINIMAL.replace("  qa:\n    description: QA review.", "  qa:\n\tdescription: QA review.")
    problems = check_policy(write(tmp_path, text))
    assert problems and "YAML syntax error" in problems[0].message
    assert problems[0].line == line_of(text, "\tdescription")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "the policy file is empty"),
        ("# only a comment\n", "the policy file is empty"),
        ("- a\n- list\n", "must be a mapping, got a list"),
        ("just text\n", "must be a mapping"),
    ],
)
def test_files_that_are_not_a_policy(tmp_path: Path, text: str, fragment: str) -> None:
    problems = check_policy(write(tmp_path, text))
    assert any(fragment in p.message for p in problems), problems


@pytest.mark.parametrize("kind", ["fifo", "device", "too-large", "not-utf8"])
def test_a_policy_that_is_no_text_file_is_a_problem_at_once(tmp_path: Path, kind: str) -> None:
    """A FIFO as CALLVAULT_POLICY would hang every process that loads it, /dev/zero fill
    its memory: only a regular UTF-8 file of at most MAX_POLICY_BYTES is read."""
    path = tmp_path / "policy.yaml"
    if kind == "fifo":
        os.mkfifo(path)
        expected = "is not a regular file"
    elif kind == "device":
        path = Path("/dev/zero")
        expected = "is not a regular file"
    elif kind == "too-large":
        with path.open("wb") as handle:
            handle.truncate(MAX_POLICY_BYTES + 1)  # sparse: nothing is written
        expected = f"more than the {MAX_POLICY_BYTES} allowed"
    else:
        path.write_bytes(b"purposes:\n  - \xff\xfe\n")
        expected = "not UTF-8"
    (problem,) = check_policy(path)
    assert problem.file == str(path) and expected in problem.message, problem
    with pytest.raises(PolicyFileError, match=expected):
        load_policy(path)


@pytest.mark.parametrize(
    "text",
    [
        "purposes: " + "[" * 900 + "]" * 900 + "\n",  # flow nesting libyaml accepts
        "".join(" " * i + "k:\n" for i in range(990)) + " " * 990 + "v\n",  # block nesting
    ],
)
def test_a_policy_nested_past_pythons_recursion_is_one_problem(tmp_path: Path, text: str) -> None:
    """libyaml nests up to 1000 levels; building 900 of them in Python raised
    RecursionError (a traceback from 'callvault policy check', a worker that would not
    start with a reason)."""
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    deep = [p for p in check_policy(path) if "nested deeper than 32 levels" in p.message]
    assert len(deep) == 1, check_policy(path)[:3]
    with pytest.raises(PolicyFileError, match="nested deeper than 32 levels"):
        load_policy(path)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    problems = check_policy(missing)
    assert problems == [Problem(str(missing), None, "", problems[0].message)]
    assert "cannot read the policy file" in problems[0].message
    with pytest.raises(PolicyFileError, match="cannot read the policy file"):
        load_policy(missing)


def test_parse_policy_names_its_source() -> None:
    with pytest.raises(PolicyFileError) as raised:
        parse_policy(MINIMAL.replace("days: 30", "days: -1"), "inline.yaml")
    assert raised.value.path == "inline.yaml"
    assert raised.value.problems[0].startswith("inline.yaml:")


def test_an_invalid_class_is_not_reported_again_where_it_is_used(tmp_path: Path) -> None:
    problems = check_policy(write(tmp_path, MINIMAL.replace("days: 30", "days: 0")))
    assert [p.path for p in problems] == ["retention_classes.short.days"]


def test_a_retention_class_may_choose_its_storage_codec(tmp_path: Path) -> None:
    text = MINIMAL.replace("    days: 30\n", "    days: 30\n    storage_codec: opus-16k\n", 1)
    policy = load_policy(write(tmp_path, text))
    assert policy.retention_classes["short"].storage_codec == "opus-16k"
    assert policy.retention_classes["eoc"].storage_codec == "as-sent"  # the default


def test_tenancy_and_request_sla_sections_are_checked(tmp_path: Path) -> None:
    import yaml

    data = yaml.safe_load(default_policy_path().read_text(encoding="utf-8"))
    data["tenancy"]["default_tenant"] = "Not A Tenant"
    data["privacy_requests"]["sla_days"]["gossip"] = 3
    data["privacy_requests"]["sla_days"]["erase"] = 0
    data["roles"]["qa-reviewer"]["spans_tenants"] = True
    path = write(tmp_path, yaml.safe_dump(data, sort_keys=False))
    problems = {p.path: p.message for p in check_policy(path)}
    assert "must match" in problems["tenancy.default_tenant"], problems
    assert "unknown request kind 'gossip'" in problems["privacy_requests.sla_days.gossip"]
    assert "greater than zero" in problems["privacy_requests.sla_days.erase"]
    assert "must not span tenants" in problems["roles.qa-reviewer.spans_tenants"]

    data = yaml.safe_load(default_policy_path().read_text(encoding="utf-8"))
    data["privacy_requests"]["sla_days"]["erase"] = 5
    variant = parse_policy(yaml.safe_dump(data, sort_keys=False), "v.yaml")
    assert variant.request_days("erase") == 5
    assert variant.request_days("correct") == variant.request_response_days == 14
