"""``callvault qa``: run a sampling plan, list assignments, read summaries; ``policy
check`` also checks the ``sso:`` section."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import yaml
from click.testing import CliRunner

from callvault.cli import cli
from callvault.services import build_services
from callvault.settings import load_settings
from policies import default_policy_path, period_of
from streams.metrics import Metrics
from tests.streams.qa_support import NOW, Clock, ingest


def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


def test_sample_list_and_summarize(tmp_path: Path) -> None:
    env = {"CALLVAULT_DATA_DIR": str(tmp_path / "data")}
    clock = Clock(NOW)  # a Wednesday: every call below is in its ISO week
    services = build_services(load_settings(env), clock=clock)
    calls = {
        f"rec-cli-{i}": {"agent": f"agent-{i % 2}", "ended": clock() - timedelta(minutes=5 + i)}
        for i in range(5)
    }
    try:
        ingest(services, Metrics(), calls, clock)
    finally:
        services.close()
    week = period_of("week", NOW)
    code, out = run(env, "qa", "sample", "weekly-per-agent", "--reviewer", "rita", "--period", week)
    assert code == 0, out
    assert f"weekly-per-agent {week}: 4 assigned, 0 already" in out
    code, again = run(
        env, "qa", "sample", "weekly-per-agent", "--reviewer", "rita", "--period", week, "--json"
    )
    assert code == 0 and json.loads(again)["assigned"] == []
    code, listed = run(env, "qa", "assignments", "--status", "open", "--json")
    assert code == 0
    items = json.loads(listed)
    assert len(items) == 4 and {i["reviewer"] for i in items} == {"rita"}
    code, summary = run(env, "qa", "summary", "--by", "queue")
    assert code == 0 and summary == ""
    code, out = run(env, "qa", "sample", "weekly-per-agent", "--period", week)
    assert code == 2 and "names no reviewers" in out
    code, out = run(env, "qa", "sample", "nope", "--reviewer", "rita")
    assert code == 2 and "unknown sampling plan 'nope'" in out


def test_policy_check_checks_the_sso_section(tmp_path: Path) -> None:
    data = yaml.safe_load(default_policy_path().read_text(encoding="utf-8"))
    data["sso"] = {"issuer": "http://idp.example.com", "audience": "urn:callvault:api"}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    code, out = run({"CALLVAULT_DATA_DIR": str(tmp_path)}, "policy", "check", str(path))
    assert code == 1 and "sso: sso.issuer must be an https URL" in out
