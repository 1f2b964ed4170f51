"""The command line: exit codes and messages a user relies on."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from callvault.cli import cli
from callvault.cli.config import config_table
from callvault.settings import load_settings
from storage import open_catalog
from storage.catalog.audit import AuditDraft


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"CALLVAULT_DATA_DIR": str(tmp_path / "data")}


def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


def test_token_issue_prints_a_token_that_verifies(env: dict[str, str]) -> None:
    from callvault.services import build_services
    from streams.http.auth import LocalTokens

    code, out = run(
        env, "token", "issue", "--user", "alice", "--role", "qa-reviewer", "--ttl", "1h"
    )
    assert code == 0
    token = out.strip().splitlines()[-1]
    services = build_services(load_settings(env))
    principal = LocalTokens(services.keyring, frozenset(services.policy.roles)).verify(
        token, datetime.now(UTC)
    )
    assert (principal.user, principal.role) == ("alice", "qa-reviewer")


def test_token_issue_names_the_tenant(env: dict[str, str]) -> None:
    from callvault.services import build_services
    from streams.http.auth import local_tokens

    services = build_services(load_settings(env))
    tokens = local_tokens(services.keyring, services.policy)
    try:
        for args, tenant in (
            (["--role", "qa-reviewer", "--tenant", "globex"], "globex"),
            (["--role", "operator", "--tenant", "*"], "*"),
            (["--role", "qa-reviewer"], None),  # the policy's default tenant
        ):
            code, out = run(env, "token", "issue", "--user", "alice", *args)
            assert code == 0, out
            principal = tokens.verify(out.strip().splitlines()[-1], datetime.now(UTC))
            assert principal.tenant == tenant
    finally:
        services.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "qa-reviewer", "--tenant", "*"], "may not span tenants"),
        (["--role", "qa-reviewer", "--tenant", "Bad Tenant"], "tenant 'Bad Tenant' must match"),
        (["--role", "admin"], "unknown role 'admin'"),
        (["--role", "qa-reviewer", "--ttl", "forever"], "must look like 30m, 8h or 2d"),
        (["--role", "qa-reviewer", "--ttl", "90d"], "longer than 30 days"),
    ],
)
def test_token_issue_refuses_bad_input(env: dict[str, str], args: list[str], message: str) -> None:
    code, out = run(env, "token", "issue", "--user", "alice", *args)
    assert code == 2
    assert message in out


def test_policy_check_accepts_the_shipped_policy(env: dict[str, str]) -> None:
    code, out = run(env, "policy", "check")
    assert code == 0 and "ok" in out


def test_policy_check_reports_located_problems(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text("purposes: [\n")
    code, out = run(env, "policy", "check", str(bad))
    assert code == 1
    assert str(bad) in out


def test_audit_verify_names_the_first_broken_record(env: dict[str, str]) -> None:
    settings = load_settings(env)
    settings.data_dir.mkdir(parents=True)
    catalog = open_catalog(settings.catalog, migrate=True)
    for i in range(3):
        catalog.audit.append(
            AuditDraft(actor="test", action="test.event", outcome="ok", reason=str(i))
        )
    code, out = run(env, "audit", "verify")
    assert code == 0 and "3 records verified" in out
    with catalog.database.transaction() as tx:
        tx.execute("UPDATE audit_log SET reason = ? WHERE seq = ?", ("forged", 2))
    catalog.close()
    code, out = run(env, "audit", "verify")
    assert code == 1
    assert "BROKEN at record 2" in out


def test_bad_setting_is_a_usage_error(env: dict[str, str]) -> None:
    code, out = run({**env, "CALLVAULT_VAULT": "ftp://nope"}, "policy", "check")
    assert code == 2 and "CALLVAULT_VAULT" in out


def test_config_reference_lists_every_variable(env: dict[str, str]) -> None:
    code, out = run(env, "config", "reference")
    assert code == 0
    assert out.strip() == config_table()
    for name in (
        "CALLVAULT_BROKER",
        "CALLVAULT_VAULT",
        "CALLVAULT_CATALOG",
        "CALLVAULT_KEYRING",
        "CALLVAULT_POLICY",
        "CALLVAULT_WEB_PORT",
        "CALLVAULT_DATA_DIR",
        "CALLVAULT_LANDING_ROOTS",
    ):
        assert f"`{name}`" in out


def test_policy_clauses_prints_status_mechanism_and_tests_per_clause(env: dict[str, str]) -> None:
    code, out = run(env, "policy", "clauses")
    assert code == 0
    block = out.split("[management.safety]")[1].split("\n\n")[0]
    assert block.splitlines()[0].endswith("(enforced)")
    assert "mechanism: Against unauthorized access" in block
    assert "    tests/storage/test_envelope.py::test_every_single_bit_flip_is_detected" in block
    assert (
        "    tests/storage/test_audit.py::test_forged_row_inserted_in_the_middle_is_named" in block
    )
    assert "[contact] Contact information (organizational)" in out
    assert out.strip().splitlines()[-1] == "30 clauses: 25 enforced, 5 organizational"


BYTES = "a\udced\udca0\udc80"  # what Python makes of argv bytes ED A0 80 (not UTF-8)


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["hold", "place", "--scope", "call", "--tenant", BYTES, "--target", "c1",
          "--reason", "litigation", "--reference", "m-1", "--by", "amy"], "'--tenant'"),
        (["qa", "assignments", "--reviewer", BYTES], "'--reviewer'"),
        (["dlq", "list", "--reason", BYTES], "'--reason'"),
        (["privacy", "show", BYTES], "'REQUEST_ID'"),
        (["ref", "rec-1", BYTES], "'RECORDING_IDS...'"),
    ],
)  # fmt: skip
def test_text_that_is_not_utf8_is_a_usage_error_before_anything_runs(
    env: dict[str, str], args: list[str], name: str
) -> None:
    """Each raised UnicodeEncodeError (a traceback) deep inside: a catalog query, an
    audit record, a keyed hash."""
    code, output = run(env, *args)
    assert code == 2 and f"Invalid value for {name}: holds bytes that are not UTF-8" in output
