"""deploy/prometheus: promtool accepts the config and the rules, and the rule unit
tests (callvault.rules.test.yml) pass; a broken rule makes them fail."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES_DIR = DEPLOY / "prometheus" / "rules"
RULES = RULES_DIR / "callvault.rules.yml"
RULE_TESTS = RULES_DIR / "callvault.rules.test.yml"

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian package prometheus; make system-deps)"
)

REQUIRED_ALERTS = {
    "CallvaultOverdueDeletions",
    "CallvaultDLQGrowing",
    "CallvaultIntegrityFailure",
    "CallvaultRateGuardTrip",
    "CallvaultConsumerLagHigh",
    "CallvaultPrivacyRequestOverdue",
    "CallvaultWorkerDown",
    "CallvaultMasterKeyOld",
    "CallvaultIngestStalled",
    "CallvaultWorkerNotReady",
}


PROMQL_WORDS = {"max", "sum", "increase", "rate", "absent", "time", "by", "without", "and", "or"}


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def alerts() -> dict[str, dict]:
    doc = yaml.safe_load(RULES.read_text())
    return {
        rule["alert"]: rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule
    }


@needs_promtool
def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", str(RULES), cwd=RULES_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


@needs_promtool
def test_promtool_check_config() -> None:
    result = promtool("check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"), cwd=DEPLOY)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", RULE_TESTS.name, cwd=RULES_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_required_alert_exists_and_is_tested_firing_and_silent() -> None:
    defined = alerts()
    assert set(defined) >= REQUIRED_ALERTS
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    firing: set[str] = set()
    silent: set[str] = set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else silent).add(check["alertname"])
    assert set(defined) <= firing, f"never shown firing: {set(defined) - firing}"
    assert set(defined) <= silent, f"never shown silent: {set(defined) - silent}"


def test_rules_use_only_callvault_series_or_up_and_carry_severity() -> None:
    for name, rule in alerts().items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", rule["expr"])
        bare = re.sub(r"\b(by|without)\s*\([^)]*\)", " ", bare)
        names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare)) - PROMQL_WORDS
        assert names, name
        for metric in names:
            assert metric.startswith("callvault_") or metric == "up", (name, metric)
    overdue = alerts()["CallvaultOverdueDeletions"]
    assert overdue["for"] == "1h" and "> 0" in overdue["expr"]


@needs_promtool
@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("for: 1h", "for: 5m"),  # overdue deletions would page too early
        ("> 365 * 86400", "> 400 * 86400"),  # key-age threshold moved
        ('up{job="callvault-worker"} == 0', 'up{job="callvault-worker"} == 2'),
        ("(callvault_ingest_stalled_seconds) > 0", "(callvault_ingest_stalled_seconds) > 600"),
    ],
)
def test_a_broken_rule_fails_the_unit_tests(tmp_path: Path, old: str, new: str) -> None:
    text = RULES.read_text()
    assert old in text
    (tmp_path / RULES.name).write_text(text.replace(old, new, 1))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr
