"""Faults survived (R2): callvault talks to SeaweedFS through a fault-injecting proxy
(tests/fixtures/faults.py) that answers 10 % of the requests with a 500 or a 503,
holds them past the client's read timeout, or resets the connection. The vault, the
landing area (both S3 buckets behind the proxy) and every S3 client are built by the
composition root from the settings, with the retries and timeouts
``CALLVAULT_S3_*`` names.

150 recordings are ingested batch by batch, a batch that raises being retried whole
(what the worker does: its offsets are not committed); then a customer is erased and
the rest expire, both under the same faults. Counted: recordings lost, stored twice,
orphan objects, landing files left or consumed twice, receipts per deletion, object
versions left behind."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from callvault.demo import demo_event
from callvault.errors import CallvaultError
from callvault.services import Services, build_services
from callvault.settings import load_settings
from callvault.synth import call_wav
from storage.checkpoints import AUDIT_PREFIX
from storage.errors import StorageError
from storage.types import RecordingState
from storage.vault import S3Vault
from storage.vaultcheck import VaultCheck
from streams.ingest import IngestPipeline, object_key_for
from tests.fixtures.faults import FaultProxy
from tests.fixtures.seaweedfs import BucketFactory
from tests.streams.lifecycle_support import Clock, lifecycle_of, verification

# about 40 s alone (each stalled request waits out the read timeout); more on a busy machine
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

# 150 recordings here (about 40 s); bench/faults.py runs the S3 scenario at scale.
RECORDINGS = 150
BATCH = 10
ERASED_CUSTOMER = "C-ERASE"
FAULT_RATE = 0.10
FAULT_KINDS = ("500", "503", "reset", "stall")
STALL_SECONDS = 2.5  # past the read timeout below
READ_TIMEOUT = 1  # seconds: a stalled request times out, botocore retries it


@pytest.fixture
def proxy(seaweed_endpoint: str) -> Iterator[Any]:
    port = urlsplit(seaweed_endpoint).port
    assert port is not None
    started = FaultProxy(port, http=True).start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def faulty(
    tmp_path: Path,
    proxy: Any,
    seaweed_env: None,
    seaweed_buckets: BucketFactory,
) -> Iterator[tuple[Services, Clock]]:
    vault_bucket = seaweed_buckets.make("cv-faults")  # versioned, as deploy/ runs it
    landing_bucket = seaweed_buckets.make("cv-landing", versioning=False)
    env = {
        "CALLVAULT_DATA_DIR": str(tmp_path / "data"),
        "CALLVAULT_CATALOG": f"sqlite:///{tmp_path}/catalog.sqlite3",
        "CALLVAULT_VAULT": f"s3://{vault_bucket}",
        "CALLVAULT_LANDING_ROOTS": f"s3://{landing_bucket}/in/",
        "CALLVAULT_S3_ENDPOINT": f"http://{proxy.address}",
        "CALLVAULT_S3_CONNECT_TIMEOUT_SECONDS": "1",
        "CALLVAULT_S3_READ_TIMEOUT_SECONDS": str(READ_TIMEOUT),
        # few attempts, so that some requests fail for good and whole batches, the
        # erasure and sweep batches are retried too, not only single requests
        "CALLVAULT_S3_MAX_ATTEMPTS": "2",
        "CALLVAULT_WORKER_ID": "faults",
    }
    clock = Clock(datetime.now(UTC))
    services = build_services(load_settings(env), clock=clock)
    try:
        yield services, clock
    finally:
        services.close()


def retried(call: Any, what: str, attempts: int = 40) -> Any:
    """``call()`` until it does not raise a storage failure (what a worker's next
    delivery, or the next sweep tick, does)."""
    for _ in range(attempts):
        try:
            return call()
        except CallvaultError as exc:
            last = exc
    raise AssertionError(f"{what} still failing after {attempts} attempts: {last}")


def test_ingest_erasure_and_sweep_survive_a_faulty_s3(
    faulty: tuple[Services, Clock], proxy: Any, seaweed_client: Any
) -> None:
    services, clock = faulty
    assert isinstance(services.vault, S3Vault)
    vault_bucket = services.vault.bucket
    clip = call_wav(1.0, codec="mulaw", seed=5)
    payloads: list[bytes] = []
    for i in range(RECORDINGS):
        rid = f"f-{i:04d}"
        audio = clip[:-2] + i.to_bytes(2, "big")
        customer = ERASED_CUSTOMER if i % 3 == 0 else f"C-{i % 7}"
        uri = services.landing.land(f"{rid}.wav", audio)
        event = demo_event(
            rid,
            audio=audio,
            uri=uri,
            seconds=1,
            customer=customer,
            sha256=hashlib.sha256(audio).hexdigest(),
            ended_at=clock.now.replace(microsecond=0) - timedelta(minutes=5),
        )
        services.landing.write_sidecar(uri, event)
        payloads.append(json.dumps(event).encode())
        if i % 30 == 7:  # a worker died after its put, before its commit: a stale version
            key = object_key_for(services.keys, "demo", rid)
            seaweed_client.put_object(Bucket=vault_bucket, Key=key, Body=b"stale attempt")

    pipeline = IngestPipeline.over(services, actor="worker:faults")
    proxy.http_faults(FAULT_RATE, FAULT_KINDS, stall_seconds=STALL_SECONDS, seed=12)
    statuses: Counter[str] = Counter()
    failed_batches = 0
    try:
        for start in range(0, RECORDINGS, BATCH):
            batch = payloads[start : start + BATCH]
            for _attempt in range(40):
                try:
                    outcomes = pipeline.process_batch(batch)
                    break
                except StorageError:
                    failed_batches += 1  # not committed: the broker redelivers the batch
            else:
                raise AssertionError(f"batch {start} never went through")
            statuses.update(outcome.status for outcome in outcomes)
    finally:
        pipeline.close()
    ingest_faults = Counter(proxy.stats)

    # -- what ingest left: 0 lost, 0 duplicated, 0 orphans, landing consumed once ----------
    ids = [f"f-{i:04d}" for i in range(RECORDINGS)]
    rows = services.endoflife.rows_by_id(ids)
    assert len(rows) == RECORDINGS and statuses["dlq"] == 0 and statuses["declined"] == 0
    stored_records = Counter(
        entry.recording_id for entry in services.audit.iter_entries(action_prefix="ingest.stored")
    )
    assert stored_records == Counter(ids)  # each recording stored exactly once
    assert statuses["stored"] + statuses["duplicate"] == RECORDINGS
    assert services.settings is not None
    landing_bucket = services.settings.landing_roots[0].removeprefix("s3://").split("/")[0]
    assert seaweed_client.list_objects_v2(Bucket=landing_bucket).get("KeyCount", 0) == 0
    direct = S3Vault(vault_bucket, client=seaweed_client)  # around the proxy
    check = VaultCheck(services.catalog, direct, actor="test").run()
    assert (check.orphans, check.missing, check.objects) == ([], [], RECORDINGS)
    for row in rows.values():  # each row names the version that holds its sealed bytes
        blob = seaweed_client.get_object(
            Bucket=vault_bucket, Key=row.object_key, VersionId=row.object_version
        )["Body"].read()
        assert hashlib.sha256(blob).hexdigest() == row.ciphertext_sha256

    # -- an erasure and a sweep under the same faults -----------------------------------
    lifecycle = lifecycle_of(services)
    request = {
        "type": "erase",
        "tenant": "demo",
        "customer_ref": ERASED_CUSTOMER,
        "request_id": "PR-FAULTS",
        "identity_verification": verification(),
    }
    with contextlib.suppress(CallvaultError):  # stored as failed: the sweep resumes it
        lifecycle.privacy.submit(request, requested_by="officer-7")

    def erased() -> bool:
        lifecycle.sweep_and_resume()
        return lifecycle.privacy.get("PR-FAULTS").status.value == "completed"

    for _ in range(40):
        if retried(erased, "the erasure"):
            break
    assert lifecycle.privacy.get("PR-FAULTS").status.value == "completed"

    clock.now += timedelta(days=400)

    def swept() -> bool:
        lifecycle.sweep_and_resume()
        left = services.endoflife.count_stored()
        return left == 0 and not services.endoflife.pending_intents()

    for _ in range(40):
        if retried(swept, "the sweep"):
            break
    proxy.heal()
    total_faults = Counter(proxy.stats)

    states = Counter(row.state for row in services.endoflife.rows_by_id(ids).values())
    erased_count = sum(1 for i in range(RECORDINGS) if i % 3 == 0)
    assert states == {
        RecordingState.ERASED: erased_count,
        RecordingState.EXPIRED: RECORDINGS - erased_count,
    }
    receipts = {rid: services.receipts.for_recording(rid) for rid in ids}
    assert all(len(found) == 1 for found in receipts.values())  # exactly one per deletion
    assert Counter(r[0].payload["reason"] for r in receipts.values()) == {
        "erasure-requested": erased_count,
        "retention-due": RECORDINGS - erased_count,
    }
    leftovers = seaweed_client.list_object_versions(Bucket=vault_bucket)
    # audit evidence (the erasure journal, checkpoints) stays under audit/ by design
    left = [
        item["Key"]
        for item in [*leftovers.get("Versions", []), *leftovers.get("DeleteMarkers", [])]
        if not item["Key"].startswith(AUDIT_PREFIX)
    ]
    assert left == []
    assert services.audit.verify().ok

    requests = total_faults["requests"]
    injected = {kind: total_faults[f"fault:{kind}"] for kind in FAULT_KINDS}
    assert all(injected.values()), injected
    assert sum(injected.values()) >= 0.05 * requests
    print(
        f"\nS3 requests {requests} (ingest {ingest_faults['requests']}), faults injected "
        f"{injected} = {sum(injected.values()) / requests:.1%}; ingest batches retried "
        f"{failed_batches}; outcomes {dict(statuses)}; lost 0, stored twice 0, orphan "
        f"objects 0, landing files left 0; receipts {len(receipts)} for {RECORDINGS} "
        f"deletions; object versions left 0"
    )
