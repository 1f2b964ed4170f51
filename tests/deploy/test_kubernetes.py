"""deploy/kubernetes: every manifest parses, kinds and selectors line up, probes and
scrape configuration are there, settings are real callvault settings, no secret
values are committed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from callvault.settings import FIELDS, load_settings

K8S = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
SETTING_NAMES = {f"CALLVAULT_{f.name.upper()}" for f in FIELDS}


def documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                doc["__file__"] = path.name
                docs.append(doc)
    return docs


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in documents() if d["kind"] == kind]


def one(kind: str) -> dict[str, Any]:
    found = by_kind(kind)
    assert len(found) == 1, (kind, found)
    return found[0]


def test_kinds_and_kustomization_lists_every_manifest() -> None:
    kinds = {d["kind"] for d in documents()}
    assert {"Deployment", "Service", "ConfigMap", "ServiceMonitor", "ServiceAccount"} <= kinds
    assert "Secret" not in kinds, "secrets are referenced, never committed"
    kustomization = one("Kustomization")
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    for doc in documents():
        if doc["kind"] not in {"Kustomization", "Namespace"}:
            assert doc["metadata"]["namespace"] == "callvault", doc["__file__"]
            assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "callvault"


def test_selectors_match_the_pod_labels() -> None:
    deployment = one("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    service = one("Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    pdb = one("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    monitor = one("ServiceMonitor")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    port_names = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= port_names
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert (
        deployment["spec"]["template"]["spec"]["serviceAccountName"]
        == one("ServiceAccount")["metadata"]["name"]
    )


def test_worker_deployment_probes_resources_and_scrape_annotations() -> None:
    deployment = one("Deployment")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080}
    for probe in ("startupProbe", "livenessProbe"):  # liveness: the loop answers
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe
    # readiness: catalog, vault, broker, ingest progress, disk (streams/readiness.py)
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8080"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert 1 <= deployment["spec"]["replicas"] <= 12  # <= partitions of callvault.recordings


def test_environment_names_are_callvault_settings_and_load() -> None:
    configmap = one("ConfigMap")
    deployment = one("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["envFrom"] == [{"configMapRef": {"name": configmap["metadata"]["name"]}}]
    names = set(configmap["data"]) | {e["name"] for e in container["env"]}
    assert names <= SETTING_NAMES, names - SETTING_NAMES
    catalog = next(e for e in container["env"] if e["name"] == "CALLVAULT_CATALOG")
    assert catalog["valueFrom"]["secretKeyRef"] == {
        "name": "callvault-secrets",
        "key": "catalog-url",
    }
    env = dict(configmap["data"], CALLVAULT_CATALOG="postgresql://u:p@db/callvault")
    settings = load_settings(env)
    assert settings.keyring.startswith("kms://")
    assert settings.web_port == 8080 and settings.web_host == "0.0.0.0"


@pytest.mark.parametrize("path", sorted(K8S.glob("*.yaml")), ids=lambda p: p.name)
def test_no_secret_values(path: Path) -> None:
    text = path.read_text().lower()
    for needle in ("password:", "secret_access_key", "aws_access_key_id", "postgresql://"):
        assert needle not in text, (path.name, needle)
