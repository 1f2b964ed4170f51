"""A real Prometheus (Debian's `prometheus`) scrapes a real `callvault worker` after a
known batch went through the real broker; the series and values are checked through
Prometheus's HTTP API, the alert rules are loaded and evaluated, and every dashboard
query runs.

One worker start, one Prometheus start; both are stopped at the end.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from callvault.broker import EmbeddedBroker, free_port
from callvault.synth import call_wav
from tests.e2e.harness import (
    WorkerProcess,
    e2e_settings,
    landed_call,
    open_services,
    produce,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMETHEUS = shutil.which("prometheus")
CUSTOMERS = [
    "+4915112345678",
    "cust-secret-0042",
    "cust-secret-0043",
    "cust-secret-0044",
    "cust-secret-0045",
]


#: Dashboard panels that must show data after the batch (others may be empty, e.g. access).
WITH_DATA = {
    "Ingest rate by outcome",
    "Bytes in / out",
    "Recordings stored by retention class",
    "Overdue deletions",
    "Master key age",
    "Consumer lag",
    "Workers up",
}


class PrometheusServer:
    """`prometheus` on a free port with a generated config; stopped by :meth:`stop`."""

    def __init__(self, workdir: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(DEPLOY / "prometheus" / "rules" / "callvault.rules.yml")],
            "scrape_configs": [
                {
                    "job_name": "callvault-worker",
                    "scrape_interval": "1s",
                    "static_configs": [{"targets": [target]}],
                }
            ],
        }
        self.config = workdir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        assert PROMETHEUS is not None
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--web.enable-lifecycle",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wait_until(self._ready, 60, f"prometheus ready (log: {self.log_path})")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{self.log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=5) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read())
        assert body["status"] == "success", (path, params, body)
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return data["result"]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def number(self, expr: str) -> float:
        value = self.value(expr)
        assert value is not None, f"no result for {expr}"
        return value

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def env(tmp_path: Path, kafka_broker: EmbeddedBroker) -> dict[str, str]:
    return e2e_settings(tmp_path / "data", kafka_broker.url, CALLVAULT_METRICS_INTERVAL_SECONDS="1")


@pytest.fixture
def worker(env: dict[str, str], tmp_path: Path) -> Iterator[WorkerProcess]:
    proc = WorkerProcess(env, tmp_path / "worker.log")
    yield proc
    proc.stop()


@pytest.fixture
def prometheus(env: dict[str, str], tmp_path: Path) -> Iterator[PrometheusServer]:
    if PROMETHEUS is None:
        pytest.skip("prometheus not installed (Debian package prometheus; make system-deps)")
    server = PrometheusServer(tmp_path / "prometheus", f"127.0.0.1:{env['CALLVAULT_WEB_PORT']}")
    yield server
    server.stop()


def dashboard_queries() -> list[tuple[str, str]]:
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "callvault.json").read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dash["panels"]
        for target in panel.get("targets", [])
    ]


def test_prometheus_scrapes_the_known_batch(
    env: dict[str, str],
    worker: WorkerProcess,
    kafka_broker: EmbeddedBroker,
    prometheus: PrometheusServer,
) -> None:
    services = open_services(env)
    audio = [call_wav(4.0, codec="mulaw", seed=seed) for seed in range(5)]
    events = [
        landed_call(services, "prom-good-1", audio[0], customer=CUSTOMERS[0]),
        landed_call(services, "prom-good-2", audio[1], customer=CUSTOMERS[1]),
        landed_call(services, "prom-good-3", audio[2], customer=CUSTOMERS[2]),
        landed_call(services, "prom-declined", audio[3], customer=CUSTOMERS[3], consent="declined"),
        landed_call(services, "prom-badsum", audio[4], customer=CUSTOMERS[4], sha256="0" * 64),
    ]
    produce(
        kafka_broker.url.removeprefix("kafka://"),
        "callvault.recordings",
        [json.dumps(e).encode() for e in events],
    )
    worker.start()

    def counted(outcome: str) -> float | None:
        return prometheus.value(f'sum(callvault_ingest_events_total{{outcome="{outcome}"}})')

    wait_until(
        lambda: counted("stored") == 3 and counted("declined") == 1 and counted("dlq") == 1,
        90,
        "prometheus to see the batch",
        interval=0.5,
    )
    assert (
        prometheus.value('callvault_ingest_events_total{outcome="dlq",reason="sha256-mismatch"}')
        == 1
    )
    assert prometheus.value('sum(callvault_ingest_events_total{outcome="duplicate"})') in (None, 0)
    assert prometheus.value('up{job="callvault-worker"}') == 1
    assert prometheus.number('callvault_ingest_bytes_total{direction="in"}') >= sum(
        len(a) for a in audio[:3]
    )
    assert prometheus.number('callvault_ingest_bytes_total{direction="out"}') > 0
    # WAV is read, silenced, encrypted and written in one pass (issue 11): stage "stream",
    # timed for the three stored calls and the one whose sha256 failed at its end.
    assert prometheus.value('sum(callvault_ingest_stage_seconds_count{stage="stream"})') == 4

    # Governance gauges, refreshed from the catalog every second by the worker's timer.
    wait_until(
        lambda: (
            prometheus.value('callvault_recordings_stored{retention_class="standard-90d"}') == 3
        ),
        30,
        "recordings stored by class",
        interval=0.5,
    )
    assert prometheus.value('callvault_recordings_stored{retention_class="end-of-contract"}') == 0
    assert prometheus.value("callvault_recordings_overdue_deletion") == 0
    key_age = prometheus.number("callvault_master_key_age_seconds")
    assert 0 <= key_age < 3600  # the key file was created by this test
    assert prometheus.number("time() - callvault_governance_refresh_timestamp_seconds") < 30

    # Consumer lag: everything was processed and committed.
    wait_until(
        lambda: prometheus.value('sum(callvault_consumer_lag{topic="callvault.recordings"})') == 0,
        30,
        "consumer lag to reach 0",
        interval=0.5,
    )
    partitions = prometheus.query('callvault_consumer_lag{topic="callvault.recordings"}')
    assert sorted(int(s["metric"]["partition"]) for s in partitions) == [0, 1, 2, 3]
    assert prometheus.value("callvault_ingest_oldest_event_age_seconds") == 0  # nothing waits

    # No label of any callvault series carries a customer identifier or recording id.
    series = prometheus.api("series", **{"match[]": '{__name__=~"callvault_.*"}'})
    assert series
    values = {value for labels in series for value in labels.values()}
    for secret in CUSTOMERS + [e["recording_id"] for e in events] + [e["call_id"] for e in events]:
        assert not any(secret in value for value in values), secret

    # The alert rules load and evaluate against real data; none fires on a healthy batch.
    wait_until(
        lambda: all(
            rule.get("lastEvaluation", "").startswith("2") and rule["health"] == "ok"
            for group in prometheus.api("rules")["groups"]
            for rule in group["rules"]
        ),
        30,
        "every alert rule evaluated",
        interval=0.5,
    )
    groups = prometheus.api("rules")["groups"]
    assert {g["name"] for g in groups} == {
        "callvault-governance",
        "callvault-access",
        "callvault-ingest",
    }
    states = {rule["name"]: rule["state"] for group in groups for rule in group["rules"]}
    assert len(states) == 12
    assert [name for name, state in states.items() if state == "firing"] == []
    assert states["CallvaultOverdueDeletions"] == "inactive"
    assert states["CallvaultWorkerDown"] == "inactive"

    # Every dashboard query is valid PromQL and returns data where the batch made some.
    for title, expr in dashboard_queries():
        concrete = expr.replace("$__rate_interval", "1m").replace("$__range", "5m")
        result = prometheus.query(concrete)
        if title in WITH_DATA:
            assert result, (title, concrete)
    services.close()
