"""End to end on S3: a real ``callvault worker`` process with its vault in a versioned
SeaweedFS bucket (what deploy/ runs), through the real tansu broker; killed mid-batch
and restarted, then everything swept by ``callvault retention sweep``."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from callvault.broker import EmbeddedBroker
from callvault.cli import cli
from callvault.synth import call_wav
from storage.vault import S3Vault
from storage.vaultcheck import VaultCheck
from tests.e2e.harness import (
    WorkerProcess,
    e2e_settings,
    landed_call,
    open_services,
    produce,
    wait_until,
)

pytestmark = [pytest.mark.e2e]


def test_a_worker_killed_mid_batch_on_seaweedfs_leaves_no_orphan_and_no_version(
    tmp_path: Path,
    kafka_broker: EmbeddedBroker,
    seaweed_env: None,
    seaweed_endpoint: str,
    seaweed_bucket: str,
    seaweed_client: Any,
) -> None:
    env = e2e_settings(
        tmp_path / "data",
        kafka_broker.url,
        CALLVAULT_VAULT=f"s3://{seaweed_bucket}",
        CALLVAULT_S3_ENDPOINT=seaweed_endpoint,
    )
    services = open_services(env)
    count = 200
    clip = call_wav(10.0, codec="mulaw", seed=11)
    ids = [f"s3kill-{i:04d}" for i in range(count)]
    events = [
        json.dumps(landed_call(services, rid, clip + bytes([i % 250]), customer=f"c{i % 9}"))
        for i, rid in enumerate(ids)
    ]
    produce(
        kafka_broker.url.removeprefix("kafka://"), "callvault.recordings", map(str.encode, events)
    )

    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        worker.start()
        wait_until(
            lambda: seaweed_client.list_objects_v2(Bucket=seaweed_bucket).get("KeyCount", 0),
            90,
            "the first vault write",
            0.02,
        )
        worker.kill()
        rows_at_kill = len(services.catalog.recording_ids_present(ids))
        assert rows_at_kill < count, "the kill came too late to interrupt anything"
        worker.start()
        wait_until(
            lambda: len(services.catalog.recording_ids_present(ids)) == count,
            240,
            "every recording after the restart",
        )
    finally:
        worker.stop()

    stored = Counter(
        e.recording_id for e in services.audit.iter_entries(action_prefix="ingest.stored")
    )
    assert stored == Counter(ids)  # exactly once each
    check = VaultCheck(services.catalog, services.vault, actor="test").run()
    assert (check.orphans, check.missing, check.objects) == ([], [], count)
    rows = services.endoflife.rows_by_id(ids)
    assert all(row.object_version for row in rows.values())
    assert not list(services.settings.landing_dir.glob("s3kill-*.wav"))
    assert isinstance(services.vault, S3Vault)

    # every version goes with its recording: the kill's second puts included
    latest = max(row.retain_until for row in rows.values())
    swept = CliRunner().invoke(
        cli, ["retention", "sweep", "--now", (latest + timedelta(seconds=1)).isoformat()], env=env
    )
    assert swept.exit_code == 0, swept.output
    assert f"expired {count} recording(s)" in swept.output
    left = seaweed_client.list_object_versions(Bucket=seaweed_bucket)
    assert left.get("Versions") is None and left.get("DeleteMarkers") is None
    assert all(len(services.receipts.for_recording(rid)) == 1 for rid in ids)
    assert services.audit.verify().ok
    services.close()
