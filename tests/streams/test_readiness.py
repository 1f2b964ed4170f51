"""Readiness tells the truth (issue 17): each failing dependency is named, a stall is
counted only while events wait and logged once, a full disk (free space, or a write
that failed with EFBIG/ENOSPC) is not ready; ``/healthz`` needs no I/O and ``/readyz``
answers the last report."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from callvault.errors import CallvaultError
from callvault.services import Services, build_services
from callvault.settings import load_settings
from storage.errors import VaultUnavailable
from storage.vault import S3Vault
from streams.http import WebContext, build_web_app
from streams.metrics import Metrics
from streams.readiness import Readiness


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    built = build_services(load_settings({"CALLVAULT_DATA_DIR": str(tmp_path / "data")}))
    yield built
    built.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _broker_down() -> None:
    raise ConnectionRefusedError("broker down")


def _gauge(metrics: Metrics, text: str) -> float:
    for line in metrics.exposition().decode().splitlines():
        if line.startswith(text + " "):
            return float(line.split()[1])
    raise AssertionError(f"{text} not exposed")


def test_each_failing_dependency_is_named(services: Services) -> None:
    metrics = Metrics()
    ready = Readiness(services, metrics, probe_timeout=1.0)
    assert ready.report()["reasons"] == ["not-checked"]
    assert asyncio.run(ready.refresh()) == {"ready": True, "reasons": [], "checks": {}}
    assert _gauge(metrics, "callvault_ready") == 1

    # a vault whose S3 endpoint refuses connections, a broker that does not answer,
    # a catalog that is gone
    vault = S3Vault("nowhere", client=_refusing_client())
    down = replace(services, vault=vault)
    broken = Readiness(down, metrics, broker_probe=_broker_down, probe_timeout=3.0)
    services.catalog.database.close()
    report = asyncio.run(broken.refresh())
    assert report["ready"] is False
    assert report["reasons"] == ["catalog-unreachable", "vault-unreachable", "broker-unreachable"]
    assert report["checks"]["catalog"] == "CatalogUnavailable"
    assert report["checks"]["vault"] == VaultUnavailable.__name__
    assert _gauge(metrics, "callvault_ready") == 0
    assert _gauge(metrics, 'callvault_not_ready{reason="broker-unreachable"}') == 1
    broken.close()
    ready.close()


def _refusing_client() -> Any:
    from storage._aws import make_client

    return make_client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{_closed_port()}",
        connect_timeout=0.5,
        read_timeout=0.5,
        max_attempts=1,
    )


def test_a_hanging_catalog_is_a_timeout_and_probes_never_pile_up(services: Services) -> None:
    release = threading.Event()
    calls = []

    def hang() -> None:
        calls.append(1)
        release.wait(30)

    ready = Readiness(services, Metrics(), probe_timeout=0.3)
    ready._catalog.call = hang  # a blackholed database: the call never returns

    async def scenario() -> list[dict[str, Any]]:
        reports = [await ready.refresh() for _ in range(3)]
        release.set()
        return reports

    reports = asyncio.run(scenario())
    assert all(r["reasons"] == ["catalog-timeout"] for r in reports)
    assert len(calls) == 1  # one probe in flight, not one per refresh
    ready.close()


def test_a_stall_counts_only_while_events_wait_and_is_logged_once(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    services = replace(services, config=replace(services.config, ready_stall_seconds=1))
    lag: list[int | None] = [0]
    metrics = Metrics()
    ready = Readiness(services, metrics, lag=lambda: lag[-1])
    ready.last_progress -= 5  # nothing finished for 5 s ...
    caplog.set_level(logging.WARNING, "streams.readiness")
    assert asyncio.run(ready.refresh())["ready"]  # ... but nothing waits: not a stall
    lag.append(12)
    for _ in range(3):
        report = asyncio.run(ready.refresh())
        assert report["reasons"] == ["ingest-stalled"]
    lag.append(None)  # the lag query failed: the last known lag still counts
    assert asyncio.run(ready.refresh())["reasons"] == ["ingest-stalled"]
    assert _gauge(metrics, "callvault_ingest_stalled_seconds") >= 5
    stalls = [r for r in caplog.records if "ingest stalled" in r.getMessage()]
    assert len(stalls) == 1 and "while 12 events wait" in stalls[0].getMessage()
    ready.progressed()
    assert asyncio.run(ready.refresh())["ready"]
    assert _gauge(metrics, "callvault_ingest_stalled_seconds") == 0
    assert any("ingest moves again" in r.getMessage() for r in caplog.records)
    ready.close()


def test_a_full_disk_is_not_ready(services: Services) -> None:
    full = replace(services, config=replace(services.config, ready_min_free_bytes=1 << 62))
    ready = Readiness(full, Metrics())
    report = asyncio.run(ready.refresh())
    assert report["reasons"] == ["disk-full"] and "bytes free" in report["checks"]["disk"]
    ready.close()

    ready = Readiness(services, Metrics())
    try:
        raise CallvaultError("vault write failed") from OSError(errno.EFBIG, "File too large")
    except CallvaultError as exc:
        ready.write_failed(exc)
    report = asyncio.run(ready.refresh())
    assert report["reasons"] == ["disk-full"] and "EFBIG" in report["checks"]["disk"]
    ready.progressed()  # a batch went through: the disk takes writes again
    assert asyncio.run(ready.refresh())["ready"]
    ready.close()


def test_readyz_answers_the_last_report_and_healthz_needs_no_io(services: Services) -> None:
    metrics = Metrics()
    ready = Readiness(services, metrics)

    async def scenario() -> list[tuple[int, Any]]:
        ctx = WebContext.over(
            services,
            metrics=metrics,
            publish_recording=_nothing,
            health=lambda: {"status": "ok"},
            readiness=ready.report,
        )
        answers = []
        async with TestClient(TestServer(build_web_app(ctx))) as client:
            for path in ("/readyz", None, "/readyz", "/healthz"):
                if path is None:
                    await ready.refresh()
                    services.catalog.database.close()  # /healthz does not notice
                    continue
                resp = await client.get(path)
                answers.append((resp.status, await resp.json()))
        return answers

    answers = asyncio.run(scenario())
    assert answers[0] == (503, {"ready": False, "reasons": ["not-checked"], "checks": {}})
    assert answers[1] == (200, {"ready": True, "reasons": [], "checks": {}})
    assert answers[2] == (200, {"status": "ok"})
    ready.close()


async def _nothing(event: bytes, recording_id: str) -> None:
    return None
