"""`callvault privacy list|show|verify|approve|refuse`: the privacy office's workflow on
the command line, human-readable and --json, over a real SQLite catalog and vault; and
`callvault dlq list --tenant`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from callvault.services import build_services
from callvault.settings import load_settings
from storage.types import RecordingState
from tests.callvault.test_cli import env, run
from tests.streams.lifecycle_support import store_call

__all__ = ["env"]  # the fixture, shared with test_cli


@pytest.mark.clause("requests.identity")
def test_the_workflow_on_the_command_line(env: dict[str, str], tmp_path: Path) -> None:
    services = build_services(load_settings(env))
    try:
        store_call(services, "r-cli")
    finally:
        services.close()
    request = tmp_path / "erase.json"
    request.write_text(
        json.dumps({"type": "erase", "tenant": "acme", "customer_ref": "C-1001",
                    "request_id": "PR-CLI"})
    )  # fmt: skip
    code, out = run(env, "privacy", "submit", str(request), "--by", "clerk-1")
    assert code == 0 and "status     received" in out, out
    (tmp_path / "other.json").write_text(
        json.dumps({"type": "disclose", "tenant": "acme", "customer_ref": "C-9",
                    "request_id": "PR-NO"})
    )  # fmt: skip
    assert run(env, "privacy", "submit", str(tmp_path / "other.json"), "--by", "clerk-1")[0] == 0

    code, out = run(env, "privacy", "list")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split()[:4] == ["request", "type", "tenant", "status"]
    assert sorted(row.split()[0] for row in rows) == ["PR-CLI", "PR-NO"]
    code, out = run(env, "privacy", "list", "--status", "received", "--json")
    assert {r["request_id"] for r in json.loads(out)["requests"]} == {"PR-CLI", "PR-NO"}
    assert run(env, "privacy", "list", "--status", "nonsense")[0] == 2

    code, out = run(env, "privacy", "approve", "PR-CLI", "--by", "officer-7")
    assert code == 1 and "wrong-status" in out  # not verified yet
    code, out = run(
        env, "privacy", "verify", "PR-CLI", "--method", "id-document", "--by", "officer-2"
    )
    assert code == 0 and "status     verified" in out, out
    code, out = run(env, "privacy", "approve", "PR-CLI", "--by", "officer-7", "--json")
    body = json.loads(out)
    assert code == 0 and body["status"] == "completed" and body["result"]["erased"] == ["r-cli"]
    assert [s["step"] for s in body["timeline"]] == [
        "received", "verified", "approved", "executing", "completed",
    ]  # fmt: skip
    code, out = run(env, "privacy", "show", "PR-CLI")
    assert code == 0
    assert "timeline" in out and "verified" in out and "by officer-2" in out
    assert "approved" in out and "by officer-7" in out and "(SLA 14 days)" in out

    code, out = run(
        env, "privacy", "refuse", "PR-NO", "--reason", "manifestly-unfounded",
        "--note", "the same request was answered last week", "--by", "officer-7",
    )  # fmt: skip
    assert code == 0 and "refused    manifestly-unfounded: the same request" in out, out
    code, out = run(env, "privacy", "refuse", "PR-NO", "--reason", "whim", "--note", "x",
                    "--by", "o")  # fmt: skip
    assert code == 2 and "identity-unverified" in out  # the closed list is shown
    code, out = run(env, "privacy", "refuse", "PR-NO", "--reason", "legal-obligation",
                    "--note", "ask jane@example.com", "--by", "o")  # fmt: skip
    assert code == 2 and "personal-data" in out
    assert run(env, "privacy", "show", "PR-MISSING")[0] == 1

    services = build_services(load_settings(env))
    try:
        erased = services.catalog.get_recording("r-cli")
        assert erased is not None and erased.state is RecordingState.ERASED
    finally:
        services.close()


def test_help_texts_show_examples_not_source_files(env: dict[str, str]) -> None:
    for command in ("submit", "list", "show", "verify", "approve", "refuse"):
        code, out = run(env, "privacy", command, "--help")
        assert code == 0 and "Examples:" in out, command
        assert ".py" not in out, command
    code, out = run(env, "privacy", "submit", "--help")
    assert '"type": "erase"' in out and "identity_verification" in out


def test_dlq_list_shows_one_tenant(env: dict[str, str]) -> None:
    from storage.catalog.deadletters import DeadLetterDraft, DeadLetterStore

    services = build_services(load_settings(env))
    try:
        DeadLetterStore(services.catalog.database).record(
            [
                DeadLetterDraft(
                    entry_id=f"dlq-{tenant or 'none'}",
                    reason="landing-missing",
                    detail="",
                    source_topic="callvault.recordings",
                    source_partition=0,
                    source_offset=n,
                    original_key=None,
                    sealed_value=b"x",
                    blob_key=None,
                    value_size=1,
                    tenant=tenant,
                )  # fmt: skip
                for n, tenant in enumerate(("acme", "globex", None))
            ]
        )
    finally:
        services.close()
    code, out = run(env, "dlq", "list", "--tenant", "globex", "--json")
    assert code == 0 and [json.loads(line)["id"] for line in out.splitlines()] == ["dlq-globex"]
    code, out = run(env, "dlq", "list", "--json")
    assert sorted(json.loads(line)["id"] for line in out.splitlines()) == [
        "dlq-acme", "dlq-globex", "dlq-none",
    ]  # fmt: skip
