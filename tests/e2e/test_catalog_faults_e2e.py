"""A 20 s PostgreSQL cut under a real worker process (issue 17), its catalog behind the
fault proxy and its event loop in asyncio debug mode:

- ``/healthz`` (liveness) answers at once all along; ``/readyz`` goes 503
  ``catalog-unreachable`` (and ``ingest-stalled`` while events wait, logged once);
- from the cut on, no callback on the event loop takes 100 ms or more (asyncio's
  slow-callback warning, ``slow_callback_duration`` 0.1 s, is a test failure; on a machine with more
  runnable processes than cores, where the scheduler alone can hold a callback past
  100 ms, a callback of a second or more, or one name slow three times, still is);
  the worker's start (faust declaring topics, starting its services) comes before the
  cut and is not what this test measures;
- recovery: every recording produced during the cut is stored within 5 s of the
  database coming back; ``/readyz`` is 200 again."""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from callvault.broker import EmbeddedBroker
from tests.e2e.faults_support import pbx_calls
from tests.e2e.harness import WorkerProcess, e2e_settings, open_services, wait_until
from tests.fixtures.faults import FaultProxy

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(300)]

CUT_SECONDS = 20.0
SLOW = re.compile(
    r"Executing <(?:Task \w+ name='[^']*' coro=<)?([^ >(]+).* took (\d+\.\d+) seconds"
)


@pytest.fixture
def schema_url(postgres_schema_url: str) -> str:
    return postgres_schema_url


def _get(url: str) -> tuple[int, dict[str, object], float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    return status, json.loads(body), time.monotonic() - started


def test_a_catalog_cut_turns_readiness_red_blocks_nothing_and_recovers_within_5s(
    tmp_path: Path, kafka_broker: EmbeddedBroker, schema_url: str
) -> None:
    port = psycopg.conninfo.conninfo_to_dict(schema_url).get("port") or 5432
    proxy = FaultProxy(int(port)).start()
    proxied = schema_url.replace(f":{port}/", f":{proxy.port}/", 1)
    data = tmp_path / "data"
    direct_env = e2e_settings(data, kafka_broker.url, CALLVAULT_CATALOG=schema_url)
    env = dict(
        direct_env,
        CALLVAULT_CATALOG=proxied,
        CALLVAULT_READY_STALL_SECONDS="3",
        CALLVAULT_METRICS_INTERVAL_SECONDS="1",
        PYTHONASYNCIODEBUG="1",  # slow callbacks (>= 100 ms) are logged by asyncio
    )
    services = open_services(direct_env)  # the test's own view, around the proxy
    bootstrap = kafka_broker.url.removeprefix("kafka://")
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        worker.start()
        before, first = pbx_calls(services, bootstrap, 20, "before")
        first.start()
        first.join()
        wait_until(
            lambda: len(services.catalog.recording_ids_present(before)) == 20, 60, "first calls"
        )
        wait_until(lambda: _get(f"{worker.web_url}/readyz")[0] == 200, 30, "ready")

        load = [os.getloadavg()[0]]
        log_at_cut = worker.log_path.stat().st_size
        proxy.cut()
        cut_at = time.monotonic()
        during, second = pbx_calls(services, bootstrap, 20, "during")
        second.start()
        reasons: set[str] = set()
        slowest_health = 0.0
        while time.monotonic() - cut_at < CUT_SECONDS:
            load.append(os.getloadavg()[0])
            status, body, took = _get(f"{worker.web_url}/healthz")
            assert status == 200 and body["status"] == "ok"
            slowest_health = max(slowest_health, took)
            status, body, _ = _get(f"{worker.web_url}/readyz")
            if status == 503:
                reasons.update(str(r) for r in body["reasons"])  # type: ignore[attr-defined]
            time.sleep(0.5)
        second.join()
        assert "catalog-unreachable" in reasons, reasons
        assert "ingest-stalled" in reasons, reasons
        assert slowest_health < 0.5
        assert not services.catalog.recording_ids_present(during)  # nothing went through

        proxy.heal()
        healed_at = time.monotonic()
        wait_until(
            lambda: len(services.catalog.recording_ids_present(during)) == 20,
            30,
            "the calls of the cut",
            0.05,
        )
        recovery = time.monotonic() - healed_at
        wait_until(lambda: _get(f"{worker.web_url}/readyz")[0] == 200, 20, "ready again")
    finally:
        worker.stop()
        proxy.stop()
        services.close()
    with worker.log_path.open("rb") as f:
        f.seek(log_at_cut)
        log = f.read().decode(errors="replace")
    slow = [(m.group(1), float(m.group(2))) for m in SLOW.finditer(log)]
    loaded = max(load) > (os.cpu_count() or 1)
    if loaded:
        # more runnable processes than cores (other work on a shared machine): a
        # callback may be descheduled past 100 ms without blocking anything; what no
        # preemption explains still fails: a second or more, or one that keeps coming
        names = Counter(name for name, _ in slow)
        blocking = [(n, s) for n, s in slow if s >= 1.0 or names[n] >= 3]
    else:
        blocking = slow
    assert not blocking, f"slow callbacks on the event loop: {slow} (load {max(load):.1f})"
    assert log.count("ingest stalled: no batch finished since") == 1
    assert recovery <= 5.0, f"recovered {recovery:.1f}s after the database came back"
    print(
        f"\nreadiness reasons during the cut: {sorted(reasons)}; slowest /healthz "
        f"{slowest_health * 1000:.0f} ms; recovered {recovery:.2f}s after the database "
        f"came back; slow callbacks {slow} (load up to {max(load):.1f} on "
        f"{os.cpu_count()} cores)"
    )
