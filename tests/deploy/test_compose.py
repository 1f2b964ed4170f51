"""deploy/docker-compose.yml, the Dockerfile and the init scripts: structure checks.

There is no Docker engine on the development machines, so the stack is never
started here; these tests check what can be checked without one (and
`docker compose config` when the compose plugin is installed).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from callvault.settings import FIELDS, load_settings
from policies import load_policy
from streams.app import TOPICS

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
SETTING_NAMES = {f"CALLVAULT_{f.name.upper()}" for f in FIELDS} | {"CALLVAULT_CONFIG"}
LONG_RUNNING = {"kafka", "minio", "postgres", "worker", "web", "prometheus", "grafana"}
ONE_SHOT = {"init-topics", "init-bucket"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def substitute(value: str, env: dict[str, str]) -> str:
    """Compose-style ${VAR}, ${VAR:-default}, ${VAR:?error} substitution."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if name in env:
            return env[name]
        if op == ":-":
            return arg
        raise AssertionError(f"{name} unset: {arg}")

    return re.sub(r"\$\{([A-Z0-9_]+)(?:(:-|:\?)([^}]*))?\}", one, value)


def example_env() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (DEPLOY / ".env.example").read_text().splitlines())
    return {
        k.strip(): v.strip() for k, v in (p for p in pairs if len(p) == 2) if not k.startswith("#")
    }


def test_the_stack_has_every_service(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == LONG_RUNNING | ONE_SHOT


def test_images_are_pinned_and_kafka_is_the_official_kraft_image(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and re.search(r"\d", tag), (name, image)
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert not any("zookeeper" in key.lower() for key in env)


def test_workers_scale_and_web_publishes_the_port(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("worker", "web"):
        service = services[name]
        assert "container_name" not in service, name
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (
            COMPOSE.parent / service["build"]["context"] / service["build"]["dockerfile"]
        ).is_file()
        assert service["command"] == ["worker"]
    assert "ports" not in services["worker"], "a fixed host port would break --scale worker=N"
    assert services["web"]["ports"] == ["8080:8080"]
    for service in services.values():
        assert "container_name" not in service


def test_dependencies_and_healthchecks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for target, spec in service.get("depends_on", {}).items():
            assert target in services, (name, target)
            condition = spec["condition"]
            if target in ONE_SHOT:
                assert condition == "service_completed_successfully", (name, target)
            elif "healthcheck" in services[target]:
                assert condition in {"service_healthy", "service_started"}, (name, target)
        if name in LONG_RUNNING:
            assert service["healthcheck"]["test"], name
        else:
            assert service["restart"] == "no", name
    worker_deps = services["worker"]["depends_on"]
    assert {"kafka", "postgres", "minio", "init-topics", "init-bucket"} <= set(worker_deps)
    assert worker_deps["kafka"]["condition"] == "service_healthy"


def test_worker_environment_is_valid_callvault_settings(compose: dict[str, Any]) -> None:
    env = compose["services"]["worker"]["environment"]
    assert env == compose["services"]["web"]["environment"]
    callvault_vars = {k for k in env if k.startswith("CALLVAULT_")}
    assert callvault_vars <= SETTING_NAMES, callvault_vars - SETTING_NAMES
    assert {
        "CALLVAULT_BROKER",
        "CALLVAULT_VAULT",
        "CALLVAULT_CATALOG",
        "CALLVAULT_KEYRING",
    } <= callvault_vars
    resolved = {k: substitute(str(v), example_env()) for k, v in env.items()}
    settings = load_settings({k: v for k, v in resolved.items() if k.startswith("CALLVAULT_")})
    assert settings.broker == "kafka://kafka:9092"
    assert settings.vault.startswith("s3://") and settings.s3_endpoint == "http://minio:9000"
    assert settings.catalog.startswith("postgresql://callvault:")
    assert settings.web_host == "0.0.0.0"
    # The secrets are required, not defaulted: compose refuses to start without them.
    with pytest.raises(AssertionError, match="POSTGRES_PASSWORD unset"):
        substitute(str(env["CALLVAULT_CATALOG"]), {})


def test_prometheus_and_grafana_mounts_match_their_configs(compose: dict[str, Any]) -> None:
    services = compose["services"]
    prom_mounts = dict(m.split(":")[:2] for m in services["prometheus"]["volumes"])
    assert prom_mounts["./prometheus"] == "/etc/prometheus"
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    rule_files = [
        p for pattern in prom["rule_files"] for p in (DEPLOY / "prometheus").glob(pattern)
    ]
    assert [p.name for p in rule_files] == ["callvault.rules.yml"]  # not the .test.yml
    worker_job = next(j for j in prom["scrape_configs"] if j["job_name"] == "callvault-worker")
    assert set(worker_job["dns_sd_configs"][0]["names"]) == {"worker", "web"}

    graf_mounts = dict(m.split(":")[:2] for m in services["grafana"]["volumes"])
    assert graf_mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "callvault.yaml").read_text()
    )["providers"][0]
    assert graf_mounts["./grafana/dashboards"] == provider["options"]["path"]
    datasource = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090" and datasource["type"] == "prometheus"


def test_init_creates_every_topic_and_the_versioned_bucket() -> None:
    topics = (DEPLOY / "init" / "topics.sh").read_text()
    created = set(re.findall(r"^create (\S+) ", topics, flags=re.M))
    assert created == set(TOPICS.values())
    bucket = (DEPLOY / "init" / "bucket.sh").read_text()
    assert 'mc version enable "local/$VAULT_BUCKET"' in bucket
    assert 'mc mb --ignore-existing "local/$LANDING_BUCKET"' in bucket


def test_lifecycle_safety_net_outlasts_every_retention_class() -> None:
    script = (DEPLOY / "init" / "bucket.sh").read_text().replace("\\\n", " ")
    rules = {
        cls: int(days)
        for cls, days in re.findall(
            r'mc ilm rule add --tags "retention-class=([a-z0-9-]+)&legal-hold=off" '
            r"--expire-days (\d+)",
            script,
        )
    }
    policy = load_policy(None)
    assert set(rules) == set(policy.retention_classes)
    for name, cls in policy.retention_classes.items():
        longest = max(cls.days, cls.max_days or 0)
        # A safety net, not the deletion mechanism: at least 30 days after the sweep's date.
        assert rules[name] >= longest + 30, (name, rules[name], longest)


def test_dockerfile() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11[\d.]*-slim", text, flags=re.M)
    assert "ffmpeg" in text
    users = re.findall(r"^USER (\S+)", text, flags=re.M)
    assert users and not users[-1].startswith(("root", "0"))
    assert 'ENTRYPOINT ["callvault"]' in text and 'CMD ["worker"]' in text
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text()
    assert "!callvault/" in ignore and "!pyproject.toml" in ignore


def _compose_plugin() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    probe = subprocess.run(
        [docker, "compose", "version"], capture_output=True, timeout=30, check=False
    )
    return probe.returncode == 0


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    if not _compose_plugin():
        pytest.skip(
            "docker compose plugin not installed (no Docker engine here); "
            "the structure tests above still ran"
        )
    env_file = tmp_path / ".env"
    env_file.write_text((DEPLOY / ".env.example").read_text())
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "--env-file", str(env_file), "config", "--quiet"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
