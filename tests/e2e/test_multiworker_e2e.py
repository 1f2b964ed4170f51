"""Two workers against one PostgreSQL catalog: the retention sweep and the landing
reconciler run in one of them at a time (catalog leases), so no recording gets two
deletion receipts and no landing file is announced twice, while both consume the
ingest topic."""

from __future__ import annotations

import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from callvault.broker import EmbeddedBroker, free_port
from callvault.synth import call_wav
from storage.catalog.leases import RECONCILER_LEASE, SWEEP_LEASE
from storage.types import RecordingState
from tests.e2e.harness import (
    WorkerProcess,
    e2e_settings,
    landed_call,
    open_services,
    wait_until,
)
from tests.fixtures.postgres import fresh_schema
from tests.streams.lifecycle_support import store_call

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

DUE = 12
LOST = 12


@pytest.fixture
def pg_catalog(postgres_url: str) -> Iterator[str]:
    with fresh_schema(postgres_url, "mw") as url:
        yield url


def _metric(worker: WorkerProcess, name: str) -> float:
    with urllib.request.urlopen(f"{worker.web_url}/metrics", timeout=2) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_two_workers_on_one_postgres_catalog_run_each_singleton_once(
    tmp_path: Path, kafka_broker: EmbeddedBroker, pg_catalog: str
) -> None:
    common = {"CALLVAULT_CATALOG": pg_catalog, "CALLVAULT_RECONCILE_AFTER_SECONDS": "1"}
    env_a = e2e_settings(tmp_path / "data", kafka_broker.url, **common, CALLVAULT_WORKER_ID="mw-a")
    env_b = {**env_a, "CALLVAULT_WEB_PORT": str(free_port()), "CALLVAULT_WORKER_ID": "mw-b"}
    services = open_services(env_a)
    try:
        long_ago = datetime.now(UTC) - timedelta(days=3650)
        for i in range(DUE):  # past every retention class: the first sweep expires them
            store_call(services, f"mw-due-{i:02d}", customer=f"c{i}", ended_at=long_ago)
        audio = call_wav(2.0, codec="mulaw", seed=11)
        for i in range(LOST):  # landing audio whose event was lost: a sidecar, no event
            event = landed_call(services, f"mw-lost-{i:02d}", audio + bytes([i]), seconds=2)
            services.landing.write_sidecar(event["audio"]["uri"], event)
        time.sleep(1.2)  # older than CALLVAULT_RECONCILE_AFTER_SECONDS

        workers = [
            WorkerProcess(env_a, tmp_path / "worker-a.log"),
            WorkerProcess(env_b, tmp_path / "worker-b.log"),
        ]
        for worker in workers:  # both start (and sweep on start) at the same time
            worker.spawn()
        try:
            for worker in workers:
                worker.wait_healthy()
            due = [f"mw-due-{i:02d}" for i in range(DUE)]
            lost = [f"mw-lost-{i:02d}" for i in range(LOST)]
            wait_until(
                lambda: all(
                    (row := services.catalog.get_recording(rid)) is not None
                    and row.state is RecordingState.EXPIRED
                    for rid in due
                ),
                60,
                "the due recordings to expire",
            )
            wait_until(
                lambda: len(services.catalog.recording_ids_present(lost)) == LOST,
                60,
                "the re-announced recordings",
            )
            reannounced = sum(_metric(w, "callvault_landing_reannounced_total") for w in workers)
            leases = {
                name: services.catalog.database.fetch_one(
                    "SELECT holder FROM leases WHERE name = ?", (name,)
                )
                for name in (SWEEP_LEASE, RECONCILER_LEASE)
            }
        finally:
            for worker in workers:
                worker.stop()

        receipts = Counter(
            str(row[0])
            for row in services.catalog.database.fetch_all(
                "SELECT recording_id FROM deletion_receipts"
            )
        )
        assert receipts == Counter(due), receipts  # one receipt per recording, no double
        expired_by = Counter(
            e.actor for e in services.audit.iter_entries() if e.action == "retention.expired"
        )
        assert sum(expired_by.values()) == DUE and len(expired_by) == 1, expired_by
        announcements = services.catalog.database.fetch_all(
            "SELECT announcements FROM landing_announcements"
        )
        assert sorted(int(row[0]) for row in announcements) == [1] * LOST  # no double
        assert reannounced == LOST  # every publish is counted, in the catalog and here
        stored = Counter(
            e.actor
            for e in services.audit.iter_entries()
            if e.action == "ingest.stored" and e.recording_id in lost
        )
        assert sum(stored.values()) == LOST, stored  # each re-announced call stored once
        # After a clean stop the leases are handed back at once.
        assert all(row is not None for row in leases.values()), leases
        assert services.catalog.database.fetch_all("SELECT name FROM leases") == []
        assert services.audit.verify().ok
    finally:
        services.close()
